"""The bureau tier end to end, every part real: three stations (each its own Mosquitto, `anbo run`
fed by `anbo simulate` with carrier losses), their bridges (config/mosquitto/station-bridge.conf,
TLS with each station's client certificate) over links the test can cut, the bureau's Mosquitto
(config/mosquitto/bureau.conf and its ACL), `anbo bureau` and a PostgreSQL cluster of the test's own.

Faults while outages open and close, each with its figures printed (run with ``-s``):

1. qingshan's link cut for ``CUT_S`` seconds: StationUnreachable (``anbo_bureau_station_up`` 0)
   for qingshan only, then up again; and during the cut
2. qingshan's Mosquitto killed (SIGKILL: its bridge queue lost) and started again;
3. `anbo bureau` killed with SIGKILL and started again;
4. the bureau's PostgreSQL restarted.

After each: every ledger row of the stations is at the bureau (events lost: 0), exactly once
(one row per event id and revision; replays counted, not stored twice), and the quarter's
bureau report equals each station's own report for the same quarter, to the second.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from anbo.report import BureauStation, CountingRules, compute, compute_bureau, quarter_bounds
from bureau.store import BureauReader
from monitor.ledger import LedgerStore, ledger_services
from monitor.settings import load_settings
from tests.bureau_rig import Rig, Station, wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CUT_S = 20.0
TZ = "Asia/Shanghai"
SCENARIO = """\
name: bureau
duration: 200s
timeline:
  - {at: 4s, for: 6s, target: fm-97.5, fault: carrier_loss}
  - {at: 16s, for: 6s, target: fm-97.5, fault: carrier_loss}
  - {at: 28s, for: 6s, target: fm-97.5, fault: carrier_loss}
  - {at: 40s, for: 6s, target: fm-97.5, fault: carrier_loss}
  - {at: 52s, for: 6s, target: fm-97.5, fault: carrier_loss}
  - {at: 64s, for: 6s, target: fm-97.5, fault: carrier_loss}
  - {at: 10s, for: 8s, target: fm-101.8, fault: carrier_loss}
  - {at: 34s, for: 8s, target: fm-101.8, fault: carrier_loss}
  - {at: 58s, for: 8s, target: fm-101.8, fault: carrier_loss}
"""


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    r = Rig(tmp_path, [("qingshan", "Qingshan", 3), ("baiyun", "Baiyun", 2), ("lijiang", "Baiyun", 3)])
    try:
        yield r
    finally:
        r.close()


def caught_up(rig: Rig, stations: list[Station]) -> bool:
    """Every row the stations have now is at the bureau."""
    return all(s.rows() <= rig.bureau_rows(s.name) for s in stations)


def recover(rig: Rig, stations: list[Station], limit: float = 40.0) -> dict[str, object]:
    """From now: the events waiting in the stations' outboxes, the seconds until all of them
    are acknowledged by the bureau and every ledger row the stations had is stored there,
    and the rows lost."""
    wanted = {s.name: s.rows() for s in stations}
    waiting = {s.name: s.waiting() for s in stations}
    t = wait(
        lambda: all(
            wanted[s.name] <= rig.bureau_rows(s.name) and not (waiting[s.name] & s.waiting())
            for s in stations
        ),
        limit,
        "the bureau has every row the stations had, every waiting event acknowledged",
    )
    lost = sum(len(wanted[s.name] - rig.bureau_rows(s.name)) for s in stations)
    return {
        "waiting": sum(len(w) for w in waiting.values()),
        "recovered_s": round(t, 1),
        "rows": sum(len(w) for w in wanted.values()),
        "lost": lost,
    }


def test_bureau_end_to_end_with_faults(rig: Rig, tmp_path: Path) -> None:
    a, b, c = rig.stations
    wait(lambda: all(rig.station_up(s.name) == 1.0 for s in rig.stations), 30, "every station up")
    scenario = tmp_path / "scenario.yml"
    scenario.write_text(SCENARIO)
    t0 = time.monotonic()
    for s in rig.stations:
        s.simulate(scenario)
    figures: dict[str, object] = {}

    def at(second: float) -> None:
        time.sleep(max(0.0, t0 + second - time.monotonic()))

    # 1 + 2: qingshan's link cut; during the cut its broker is killed and started again
    at(6)
    a.link.cut()
    down = wait(lambda: rig.station_up("qingshan") == 0.0, 15, "StationUnreachable for the cut station")
    assert rig.station_up("baiyun") == 1.0
    # the link, not the station: the bridge's will says so
    wait(lambda: rig.gauge("anbo_bureau_station_link_up", "qingshan") == 0.0, 15, "link down")
    assert rig.gauge("anbo_bureau_station_link_up", "baiyun") == 1.0
    view = {v["station"]: v for v in rig.view()["stations"]}
    assert (view["qingshan"]["up"], view["qingshan"]["link_up"]) == (False, False)
    assert (view["baiyun"]["up"], view["baiyun"]["link_up"], view["baiyun"]["county"]) == (
        True,
        True,
        "Baiyun",
    )
    assert "qingshan" in rig.page("/") and "class='down'" in rig.page("/")
    figures["unreachable_after_s"] = round(down, 1)
    at(6 + CUT_S / 2)
    rows_before_kill = a.rows()
    a.broker.stop(kill=True)
    time.sleep(1.0)
    a.broker.start()
    at(6 + CUT_S)
    a.link.restore()
    fig = recover(rig, [a, b, c])
    up = wait(lambda: rig.station_up("qingshan") == 1.0, 15, "StationUnreachable resolved")
    wait(lambda: rig.gauge("anbo_bureau_station_link_up", "qingshan") == 1.0, 15, "link up again")
    figures["cut"] = {"cut_s": CUT_S, **fig, "up_again_s": round(up, 1)}
    assert rows_before_kill <= rig.bureau_rows("qingshan") and fig["lost"] == 0
    assert isinstance(fig["waiting"], int) and fig["waiting"] > 0  # the cut held events back

    # 3: anbo bureau killed (SIGKILL) and started again
    at(33)
    rig.bureau.stop(kill=True)
    time.sleep(6.0)
    rig.bureau.start()
    fig = recover(rig, [a, b, c])
    figures["bureau_sigkill"] = {"down_s": 6.0, **fig}
    assert fig["lost"] == 0

    # 4: PostgreSQL restarted
    at(47)
    rig.pg.stop()
    time.sleep(6.0)
    rig.pg.start()
    fig = recover(rig, [a, b, c])
    figures["postgres_restart"] = {"down_s": 6.0, **fig}
    assert fig["lost"] == 0

    # the faults are over at 66 s + clear: a quiet moment to compare the reports
    at(80)
    now = time.time()
    wait(
        lambda: all(s.outbox() == 0 for s in rig.stations) and caught_up(rig, rig.stations),
        40,
        "every outbox empty",
    )

    def complete() -> bool:
        with BureauReader(rig.pg.url) as r:
            return all((s.complete_until or 0) >= now for s in r.stations())

    wait(complete, 20, "the bureau has every station's record up to now")

    # exactly once: one row per (event id, revision), the same set as the stations'. A
    # station may still revise an interval (a clear confirmed late): its new revision
    # reaches the bureau a moment later, so the two are compared once they agree, or
    # as they stand after 20 s.
    def snapshot() -> tuple[dict[str, set[tuple[str, int]]], dict[str, set[tuple[str, int]]], int]:
        local = {s.name: s.rows() for s in rig.stations}
        with BureauReader(rig.pg.url) as r:
            total = r.counts()["interval_revisions"]
        return local, {s.name: rig.bureau_rows(s.name) for s in rig.stations}, total

    def agree() -> bool:
        local, central, total = snapshot()
        return local == central and total == sum(len(v) for v in local.values())

    with contextlib.suppress(AssertionError):
        wait(agree, 20, "the bureau's rows are the stations' rows")
    all_rows, central, total = snapshot()
    for s in rig.stations:
        assert central[s.name] == all_rows[s.name]
    assert total == sum(len(v) for v in all_rows.values())
    with BureauReader(rig.pg.url) as r:
        counts = r.counts()
        alerts = r.conn.execute(
            "SELECT station, COUNT(*) FROM alert_history WHERE alertname = 'CarrierLoss' "
            "AND to_state = 'firing' GROUP BY station"
        ).fetchall()
    dup = float(
        next(
            line.split()[1]
            for line in rig.metrics().splitlines()
            if line.startswith("anbo_bureau_events_duplicate_total")
        )
    )
    figures["events"] = {
        "rows": counts["interval_revisions"],
        "intervals": counts["intervals"],
        "duplicates_absorbed": dup,
    }

    # the quarter's report: the bureau's equals each station's own
    local = datetime.fromtimestamp(now, ZoneInfo(TZ))
    start, end = quarter_bounds(f"{local.year}Q{(local.month - 1) // 3 + 1}", TZ)
    rules = CountingRules()
    station_reports = {}
    for s in rig.stations:
        store = LedgerStore(s.ledger, readonly=True)
        store.open()
        settings = load_settings(s.config).settings
        station_reports[s.name] = compute(
            store,
            ledger_services(settings),
            station=s.name,
            station_class=s.cls,
            start=start,
            end=end,
            rules=rules,
            tz=TZ,
            now=now,
        )
        store.close()
    with BureauReader(rig.pg.url) as r:
        sources = r.sources(start, end)
        bureau = compute_bureau(
            [
                BureauStation(
                    x.name, x.station_class, x.county, x.services, x.complete_until, sources[x.name]
                )
                for x in r.stations()
            ],
            start=start,
            end=end,
            rules=rules,
            tz=TZ,
            now=now,
        )
    by_name = {x["station"]: x for x in bureau["stations"]}
    for name, mine in station_reports.items():
        theirs = by_name[name]
        assert theirs["completeness"] == 1.0
        assert theirs["services"] == mine["services"]
        assert theirs["totals"] == mine["totals"]
    # 6 + 3 carrier losses (fm-101.8's count only while on its schedule, 05:00-01:00)
    outages = {n: r["totals"]["outage_count"] for n, r in station_reports.items()}
    assert all(n in (6, 9) for n in outages.values()), outages
    assert dict(alerts) == {"qingshan": 9, "baiyun": 9, "lijiang": 9}
    # two stations in Baiyun county: its totals are their sums
    (baiyun,) = [x for x in bureau["counties"] if x["county"] == "Baiyun"]
    assert sorted(baiyun["stations"]) == ["baiyun", "lijiang"]
    assert baiyun["totals"]["outage_s"] == pytest.approx(
        station_reports["baiyun"]["totals"]["outage_s"] + station_reports["lijiang"]["totals"]["outage_s"],
        abs=1e-6,
    )
    total = bureau["totals"]
    for key in ("scheduled_s", "outage_s", "counted_outage_s", "unmonitored_s"):
        assert total[key] == pytest.approx(sum(r["totals"][key] for r in station_reports.values()), abs=1e-6)
    figures["report"] = {
        n: {"outage_s": r["totals"]["outage_s"], "outage_count": r["totals"]["outage_count"]}
        for n, r in station_reports.items()
    }
    print("\nbureau e2e figures:", json.dumps(figures))
