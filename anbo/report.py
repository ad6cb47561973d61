"""``anbo report``: the 停播率 report from the outage ledger (table, CSV, XLSX, JSON, HTML).

The counting rules live in ONE place, :class:`CountingRules` (documented in
docs/ledger.md); everything else only formats what :func:`compute` returns.
"""

from __future__ import annotations

import bisect
import csv
import html
import io
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from monitor.ledger import (
    PRIORITY,
    IntervalClass,
    LedgerError,
    LedgerService,
    effective_segments,
)
from monitor.schedule import merge_spans

__all__ = [
    "BureauStation",
    "CountingRules",
    "SpanSource",
    "compute",
    "compute_bureau",
    "quarter_bounds",
    "render",
]

Span = tuple[str, str, IntervalClass, float, float | None, tuple[str, ...], tuple[str, ...]]


class SpanSource(Protocol):
    """Where the intervals come from: a station's SQLite ledger
    (:meth:`monitor.ledger.LedgerStore.spans`) or one station's rows in the bureau's
    PostgreSQL (:class:`bureau.store.StationSpans`). The same rows, the same report."""

    def spans(self, start: float, end: float, targets: Iterable[str] | None = None) -> list[Span]: ...


FORMATS = ("table", "csv", "xlsx", "json", "html")


@dataclass(frozen=True, slots=True)
class CountingRules:
    """How ledger seconds become the 停播率 (GY/T 264-2012 as far as it is known to us).

    * Only scheduled time counts (the denominator is scheduled seconds).
    * Where intervals overlap, :data:`monitor.ledger.PRIORITY` decides each second's class
      (maintenance, unmonitored, outage, wrong programme, filler, degraded).
    * Counted outage seconds = outage + wrong programme (错播 counts as outage, when
      ``wrong_programme_is_outage``) + ``filler_share`` × filler (垫播, 50 % by default).
    * Degraded time (劣播), unmonitored and maintenance time are reported separately and
      are not counted as outage (an outage that overruns maintenance counts from the
      window's end, by the priority).
    * 停播率 = counted seconds / scheduled seconds × 360 000 (seconds per 100 hours).
    * ``class_targets``: station class ("1"–"3") → service kind → limit in s/100 h. None
      is shipped: no published figure is at hand, the bureau sets them.
    """

    filler_share: float = 0.5
    wrong_programme_is_outage: bool = True
    class_targets: dict[str, dict[str, float]] = field(default_factory=dict)

    def counted(self, seconds: dict[IntervalClass, float]) -> float:
        total = seconds.get(IntervalClass.OUTAGE, 0.0)
        if self.wrong_programme_is_outage:
            total += seconds.get(IntervalClass.WRONG_PROGRAMME, 0.0)
        return total + self.filler_share * seconds.get(IntervalClass.FILLER, 0.0)

    @staticmethod
    def rate(counted: float, scheduled: float) -> float | None:
        return None if scheduled <= 0 else counted / scheduled * 360_000.0

    def target(self, station_class: int, kind: str) -> float | None:
        return self.class_targets.get(str(station_class), {}).get(kind)


def quarter_bounds(text: str, tz: str) -> tuple[float, float]:
    """``2026Q3`` → (start, end) UNIX seconds of that quarter in zone ``tz``."""
    t = text.strip().upper()
    if len(t) != 6 or t[4] != "Q" or not t[:4].isdigit() or t[5] not in "1234":
        raise LedgerError(f"--quarter {text!r}: expected YYYYQn, e.g. 2026Q3")
    year, q = int(t[:4]), int(t[5])
    zone = ZoneInfo(tz)
    start = datetime(year, 3 * (q - 1) + 1, 1, tzinfo=zone)
    end = datetime(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=zone)
    return start.timestamp(), end.timestamp()


def _iso(wall: float | None, tz: str) -> str | None:
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, ZoneInfo(tz)).isoformat(timespec="seconds")


def _zone_for(tz: str, start: float, end: float) -> tzinfo:
    """A fixed offset when the zone keeps one offset over the period (much faster to format)."""
    zone = ZoneInfo(tz)
    a = datetime.fromtimestamp(start, zone).utcoffset()
    b = datetime.fromtimestamp(end, zone).utcoffset()
    if a is not None and a == b and not _has_transitions(zone, start, end):
        return timezone(a)
    return zone


def _has_transitions(zone: ZoneInfo, start: float, end: float) -> bool:
    step = 86400.0 * 7
    first = datetime.fromtimestamp(start, zone).utcoffset()
    t = start
    while t < end:
        if datetime.fromtimestamp(t, zone).utcoffset() != first:
            return True
        t += step
    return False


def compute(
    store: SpanSource,
    services: Sequence[LedgerService],
    *,
    station: str,
    station_class: int,
    start: float,
    end: float,
    rules: CountingRules,
    tz: str = "UTC",
    now: float | None = None,
) -> dict[str, Any]:
    """The report as its JSON form (see docs/ledger.md for the fields)."""
    now = now if now is not None else datetime.now(UTC).timestamp()
    zone = _zone_for(tz, start, end)

    def iso(wall: float | None) -> str | None:
        return None if wall is None else datetime.fromtimestamp(wall, zone).isoformat(timespec="seconds")

    horizon = min(end, now)
    by_target: dict[str, list[Any]] = {}
    for r in store.spans(start, end, [s.target for s in services]):
        by_target.setdefault(r[1], []).append(r)
    out_services = []
    for svc in services:
        spans = (
            svc.schedule.spans(start, end)
            if svc.schedule is not None
            else ([(start, end)] if end > start else [])
        )
        scheduled = sum(b - a for a, b in spans)
        mine = by_target.get(svc.target, [])
        triples = [(r[3], r[4] if r[4] is not None else horizon, r[2]) for r in mine]
        seconds: dict[IntervalClass, float] = dict.fromkeys(PRIORITY, 0.0)
        # time after "now" in the period is not yet known: unmonitored, not on air
        future = merge_spans([(max(a, horizon), b) for a, b in spans if b > horizon])
        segments: dict[IntervalClass, list[tuple[float, float]]] = {c: [] for c in PRIORITY}
        for a, b, cls in effective_segments(triples, spans):
            if cls is not None:
                seconds[cls] += b - a
                segments[cls].append((a, b))
        for a, b, cls in effective_segments(triples, future):
            if cls is None:
                seconds[IntervalClass.UNMONITORED] += b - a
        starts = {c: [a for a, _ in segs] for c, segs in segments.items()}
        intervals = []
        counts: dict[IntervalClass, int] = dict.fromkeys(PRIORITY, 0)
        for eid, _, cls, a0, a1, causes, remarks in mine:
            e = a1 if a1 is not None else horizon
            # counted when some of its time is scheduled and its class wins there
            segs, st = segments[cls], starts[cls]
            j = max(bisect.bisect_right(st, a0) - 1, 0)
            while j < len(segs) and segs[j][0] < e:
                if segs[j][1] > a0:
                    counts[cls] += 1
                    break
                j += 1
            intervals.append(
                {
                    "id": eid,
                    "class": cls.value,
                    "start": iso(a0),
                    "end": iso(a1),
                    "duration_s": round(max(0.0, e - a0), 3),
                    "causes": list(causes),
                    "remarks": list(remarks),
                }
            )
        counted_s = rules.counted(seconds)
        rate = rules.rate(counted_s, scheduled)
        limit = rules.target(station_class, svc.kind)
        entry: dict[str, Any] = {
            "target": svc.target,
            "service": svc.service,
            "kind": svc.kind,
            "scheduled_s": round(scheduled, 3),
            "on_air_s": round(scheduled - sum(seconds.values()), 3),
            "outage_s": round(seconds[IntervalClass.OUTAGE], 3),
            "outage_count": counts[IntervalClass.OUTAGE],
            "degraded_s": round(seconds[IntervalClass.DEGRADED], 3),
            "degraded_count": counts[IntervalClass.DEGRADED],
            "wrong_programme_s": round(seconds[IntervalClass.WRONG_PROGRAMME], 3),
            "wrong_programme_count": counts[IntervalClass.WRONG_PROGRAMME],
            "filler_s": round(seconds[IntervalClass.FILLER], 3),
            "unmonitored_s": round(seconds[IntervalClass.UNMONITORED], 3),
            "maintenance_s": round(seconds[IntervalClass.MAINTENANCE], 3),
            "counted_outage_s": round(counted_s, 3),
            "rate_s_per_100h": None if rate is None else round(rate, 3),
            "target_s_per_100h": limit,
            "met": None if limit is None or rate is None else rate <= limit,
            "intervals": intervals,
        }
        out_services.append(entry)
    return {
        "station": station,
        "station_class": station_class,
        "from": _iso(start, tz),
        "to": _iso(end, tz),
        "services": out_services,
        "totals": _sum_totals(out_services, rules),
        "counting": _counting(rules),
    }


def _counting(rules: CountingRules) -> dict[str, Any]:
    return {
        "filler_share": rules.filler_share,
        "wrong_programme_is_outage": rules.wrong_programme_is_outage,
        "priority": [c.value for c in PRIORITY],
    }


@dataclass(frozen=True, slots=True)
class BureauStation:
    """One station as the bureau knows it (from PostgreSQL, see bureau/store.py)."""

    name: str
    station_class: int
    county: str
    services: Sequence[LedgerService]
    #: the station's events are all at the bureau up to this time (None: never heard)
    complete_until: float | None
    source: SpanSource


def _sum_totals(parts: Iterable[dict[str, Any]], rules: CountingRules) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for t in parts:
        for k, v in t.items():
            if k.endswith(("_s", "_count")):
                totals[k] = totals.get(k, 0) + v
    rate = rules.rate(totals.get("counted_outage_s", 0.0), totals.get("scheduled_s", 0.0))
    return {
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in totals.items()},
        "rate_s_per_100h": None if rate is None else round(rate, 3),
    }


def compute_bureau(
    stations: Sequence[BureauStation],
    *,
    start: float,
    end: float,
    rules: CountingRules,
    tz: str = "UTC",
    now: float | None = None,
) -> dict[str, Any]:
    """The city-wide report: :func:`compute` per station, on the bureau's copy of its ledger.

    A station's time after its ``complete_until`` (what the bureau does not have yet) is
    unmonitored, exactly as a station report treats the time after "now";
    ``completeness`` is the share of the period so far that the bureau has the station's
    record for (0 for a station never heard from), so a missing station never looks perfect.
    Per county and per station class: the sums, their rate, and the lowest completeness.
    """
    now = now if now is not None else datetime.now(UTC).timestamp()
    elapsed_end = min(end, now)
    elapsed = max(0.0, elapsed_end - start)
    out: list[dict[str, Any]] = []
    for st in stations:
        known = st.complete_until if st.complete_until is not None else start
        horizon = min(now, known)
        r = compute(
            st.source,
            st.services,
            station=st.name,
            station_class=st.station_class,
            start=start,
            end=end,
            rules=rules,
            tz=tz,
            now=horizon,
        )
        covered = max(0.0, min(elapsed_end, horizon) - start)
        completeness = 0.0 if not st.services else (1.0 if elapsed <= 0 else covered / elapsed)
        out.append(
            {
                "station": st.name,
                "station_class": st.station_class,
                "county": st.county,
                "completeness": round(completeness, 6),
                "complete_until": _iso(st.complete_until, tz),
                "services": r["services"],
                "totals": r["totals"],
            }
        )

    def groups(key: str) -> list[dict[str, Any]]:
        by: dict[Any, list[dict[str, Any]]] = {}
        for s in out:
            by.setdefault(s[key], []).append(s)
        return [
            {
                key: k,
                "stations": [s["station"] for s in members],
                "completeness": min(s["completeness"] for s in members),
                "totals": _sum_totals((s["totals"] for s in members), rules),
            }
            for k, members in sorted(by.items())
        ]

    return {
        "from": _iso(start, tz),
        "to": _iso(end, tz),
        "stations": out,
        "counties": groups("county"),
        "classes": groups("station_class"),
        "totals": _sum_totals((s["totals"] for s in out), rules),
        "counting": _counting(rules),
    }


# --------------------------------------------------------------------------- rendering

HEADERS = {
    "en": {
        "station": "Station",
        "target": "Target",
        "service": "Programme",
        "scheduled_s": "Scheduled (s)",
        "outage_s": "Outage (s)",
        "outage_count": "Outages",
        "wrong_programme_s": "Wrong programme (s)",
        "filler_s": "Filler (s)",
        "degraded_s": "Degraded (s)",
        "degraded_count": "Degradations",
        "unmonitored_s": "Unmonitored (s)",
        "maintenance_s": "Maintenance (s)",
        "rate_s_per_100h": "Outage rate (s/100 h)",
        "target_s_per_100h": "Target (s/100 h)",
        "met": "Met",
        "causes": "Causes",
    },
    "zh": {
        "station": "台站",
        "target": "频率/频道",
        "service": "节目",
        "scheduled_s": "应播时长(秒)",
        "outage_s": "停播时长(秒)",
        "outage_count": "停播次数",
        "wrong_programme_s": "错播时长(秒)",
        "filler_s": "垫播时长(秒)",
        "degraded_s": "劣播时长(秒)",
        "degraded_count": "劣播次数",
        "unmonitored_s": "未监测时长(秒)",
        "maintenance_s": "检修时长(秒)",
        "rate_s_per_100h": "停播率 (秒/百小时)",
        "target_s_per_100h": "指标 (秒/百小时)",
        "met": "达标",
        "causes": "原因",
    },
}
COLUMNS = [k for k in HEADERS["en"] if k != "station"]


def _services(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(station, service object) of a station report or of every station of a bureau report."""
    if "stations" in report:
        return [(st["station"], s) for st in report["stations"] for s in st["services"]]
    return [(report["station"], s) for s in report["services"]]


def _title(report: dict[str, Any], lang: str) -> str:
    if "stations" in report:
        return "全市" if lang == "zh" else "Bureau"
    return str(report["station"])


def _rows(report: dict[str, Any], lang: str) -> list[list[Any]]:
    yes, no = ("是", "否") if lang == "zh" else ("yes", "no")
    out = []
    for station, s in _services(report):
        row: list[Any] = [station]
        for k in COLUMNS:
            if k == "causes":
                causes = sorted(
                    {c for i in s["intervals"] for c in i["causes"] if i["class"] != "unmonitored"}
                )
                row.append(", ".join(causes))
            elif k == "met":
                row.append("" if s["met"] is None else (yes if s["met"] else no))
            else:
                v = s.get(k)
                row.append("" if v is None else v)
        out.append(row)
    return out


def _header(lang: str) -> list[str]:
    h = HEADERS[lang]
    return [h["station"], *(h[k] for k in COLUMNS)]


def render(report: dict[str, Any], fmt: str, lang: str = "en") -> bytes:
    if fmt == "json":
        return (json.dumps(report, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(_header(lang))
        w.writerows(_rows(report, lang))
        return ("\ufeff" + buf.getvalue()).encode("utf-8")  # BOM: Excel reads it as UTF-8
    if fmt == "xlsx":
        return _xlsx(report, lang)
    if fmt == "html":
        return _html(report, lang).encode("utf-8")
    return _table(report, lang).encode("utf-8")


def _table(report: dict[str, Any], lang: str) -> str:
    header = _header(lang)
    rows = [[str(x) for x in r] for r in _rows(report, lang)]
    widths = [
        max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
        for i in range(len(header))
    ]
    lines = [f"{_title(report, lang)}  {report['from']} → {report['to']}"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines) + "\n"


def _xlsx(report: dict[str, Any], lang: str) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "停播统计" if lang == "zh" else "Outage report"
    ws.append(_header(lang))
    for r in _rows(report, lang):
        ws.append(r)
    iv = wb.create_sheet("停播明细" if lang == "zh" else "Intervals")
    iv.append(["station", "target", "id", "class", "start", "end", "duration_s", "causes", "remarks"])
    for station, s in _services(report):
        for i in s["intervals"]:
            iv.append(
                [
                    station,
                    s["target"],
                    i["id"],
                    i["class"],
                    i["start"],
                    i["end"] or "",
                    i["duration_s"],
                    ", ".join(i["causes"]),
                    "; ".join(i["remarks"]),
                ]
            )
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


_COLOURS = {
    "outage": "#d62728",
    "wrong_programme": "#9467bd",
    "filler": "#ff7f0e",
    "degraded": "#e7ba52",
    "unmonitored": "#7f7f7f",
    "maintenance": "#1f77b4",
}


def _html(report: dict[str, Any], lang: str) -> str:
    e = html.escape
    name = "停播统计" if lang == "zh" else "outage report"
    title = f"{_title(report, lang)} {name} {report['from']} – {report['to']}"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px}</style></head><body>",
        f"<h1>{e(title)}</h1><table><thead><tr>",
        *(f"<th>{e(h)}</th>" for h in _header(lang)),
        "</tr></thead><tbody>",
    ]
    for r in _rows(report, lang):
        parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>")
    parts.append("</tbody></table>")
    start = datetime.fromisoformat(report["from"])
    end = datetime.fromisoformat(report["to"])
    span = max(1.0, (end - start).total_seconds())
    for station, s in _services(report):
        # bar chart: counted outage seconds per day
        days: dict[str, float] = {}
        day = start
        while day < end:
            days[day.date().isoformat()] = 0.0
            day += timedelta(days=1)
        for i in s["intervals"]:
            if i["class"] not in ("outage", "wrong_programme"):
                continue
            a = datetime.fromisoformat(i["start"])
            b = datetime.fromisoformat(i["end"]) if i["end"] else a + timedelta(seconds=i["duration_s"])
            while a < b:
                nxt = min(b, datetime.combine(a.date() + timedelta(days=1), datetime.min.time(), a.tzinfo))
                if a.date().isoformat() in days:
                    days[a.date().isoformat()] += (nxt - a).total_seconds()
                a = nxt
        peak = max([1.0, *days.values()])
        n = max(1, len(days))
        bw = 800 / n
        bars = "".join(
            f"<rect class='day' x='{k * bw:.2f}' y='{100 - 100 * v / peak:.2f}' "
            f"width='{max(bw - 1, 0.5):.2f}' height='{100 * v / peak:.2f}' fill='#d62728'>"
            f"<title>{e(d)}: {v:.0f} s</title></rect>"
            for k, (d, v) in enumerate(days.items())
        )
        parts.append(f"<h2>{e(station)} {e(s['target'])} {e(s['service'])}</h2>")
        parts.append(
            f"<svg class='bars' width='800' height='100' xmlns='http://www.w3.org/2000/svg'>{bars}</svg>"
        )
        lanes = "".join(
            f"<rect class='interval' x='{_x(i['start'], start, span):.2f}'"
            f" y='0' width='{max(0.5, 800 * i['duration_s'] / span):.2f}' height='20'"
            f" fill='{_COLOURS.get(i['class'], '#000')}'><title>{e(i['class'])} {e(i['start'])} "
            f"{i['duration_s']:.0f} s {e(', '.join(i['causes']))}</title></rect>"
            for i in s["intervals"]
        )
        parts.append(
            f"<svg class='timeline' width='800' height='20' xmlns='http://www.w3.org/2000/svg'>{lanes}</svg>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def _x(iso: str, start: datetime, span: float) -> float:
    return 800 * (datetime.fromisoformat(iso) - start).total_seconds() / span


def write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        output.write_bytes(data)
