"""``anbo report`` and ``anbo ledger``: counting rules, every format read back, --lang zh."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from anbo.cli import main
from anbo.report import CountingRules, compute, quarter_bounds
from monitor.ledger import IntervalClass, Ledger, LedgerService, LedgerStore
from monitor.schedule import Schedule, ScheduleWindow

ZONE = ZoneInfo("Asia/Shanghai")
Q3 = datetime(2026, 7, 1, tzinfo=ZONE).timestamp()
Q4 = datetime(2026, 10, 1, tzinfo=ZONE).timestamp()

CONFIG = """
state_directory = "{state}"
[station]
name = "qingshan"
station_class = 2
[ledger]
report_tz = "Asia/Shanghai"
class_targets = {{"2" = {{fm = 50.0}}}}
[[targets]]
name = "fm-91.5"
kind = "fm"
service = "青山新闻"
frequency_mhz = 91.5
[targets.schedule]
tz = "Asia/Shanghai"
windows = [{{start = "06:00", end = "24:00"}}]
[[targets]]
name = "fm-97.5"
kind = "fm"
service = "Music"
frequency_mhz = 97.5
"""


def at(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    return datetime(2026, month, day, hour, minute, second, tzinfo=ZONE).timestamp()


@pytest.fixture
def station(tmp_path: Path) -> Path:
    cfg = tmp_path / "anbo.toml"
    cfg.write_text(CONFIG.format(state=tmp_path / "state"), encoding="utf-8")
    services = [
        LedgerService(
            "fm-91.5",
            "青山新闻",
            "fm",
            Schedule(tz="Asia/Shanghai", windows=[ScheduleWindow(start="06:00", end="24:00")]),
        ),
        LedgerService("fm-97.5", "Music", "fm"),
    ]
    led = Ledger(tmp_path / "state" / "ledger.sqlite3", "qingshan", services, wall=lambda: Q3)
    led.store.open()
    add = led.add_manual
    # fm-91.5: 100 s outage at 10:00; a night outage (off schedule) at 03:00; 60 s wrong
    # programme; 40 s filler; 300 s degraded with a 30 s outage inside it
    add(
        "fm-91.5",
        IntervalClass.OUTAGE,
        at(7, 2, 10),
        at(7, 2, 10, 1, 40),
        author="t",
        reason="r",
        causes=["DeadAir"],
    )
    add("fm-91.5", IntervalClass.OUTAGE, at(7, 3, 3), at(7, 3, 4), author="t", reason="r", causes=["DeadAir"])
    add(
        "fm-91.5",
        IntervalClass.WRONG_PROGRAMME,
        at(7, 4, 12),
        at(7, 4, 12, 1),
        author="t",
        reason="r",
        causes=["RdsPiMismatch"],
    )
    add("fm-91.5", IntervalClass.FILLER, at(7, 5, 12), at(7, 5, 12, 0, 40), author="t", reason="r")
    add(
        "fm-91.5",
        IntervalClass.DEGRADED,
        at(8, 1, 8),
        at(8, 1, 8, 5),
        author="t",
        reason="r",
        causes=["Overmodulation"],
    )
    add(
        "fm-91.5",
        IntervalClass.OUTAGE,
        at(8, 1, 8, 1),
        at(8, 1, 8, 1, 30),
        author="t",
        reason="r",
        causes=["CarrierLoss"],
    )
    # fm-97.5: an outage across the quarter boundary: only its Q3 part counts
    add(
        "fm-97.5",
        IntervalClass.OUTAGE,
        at(9, 30, 23, 59),
        at(10, 1, 0, 2),
        author="t",
        reason="r",
        causes=["CarrierLoss"],
    )
    voided = add("fm-97.5", IntervalClass.OUTAGE, at(8, 2, 1), at(8, 2, 2), author="t", reason="r")
    led.amend(voided.event_id, author="t", reason="false alarm", void=True)
    led.store.close()
    return cfg


def test_counting_rules_and_schedule(station: Path) -> None:
    store = LedgerStore(station.parent / "state" / "ledger.sqlite3", readonly=True)
    store.open()
    services = [
        LedgerService(
            "fm-91.5",
            "x",
            "fm",
            Schedule(tz="Asia/Shanghai", windows=[ScheduleWindow(start="06:00", end="24:00")]),
        ),
        LedgerService("fm-97.5", "y", "fm"),
    ]
    rules = CountingRules(class_targets={"2": {"fm": 50.0}})
    r = compute(
        store,
        services,
        station="qs",
        station_class=2,
        start=Q3,
        end=Q4,
        rules=rules,
        tz="Asia/Shanghai",
        now=Q4 + 1,
    )
    a, b = r["services"]
    assert a["scheduled_s"] == 92 * 18 * 3600
    assert a["outage_s"] == 130 and a["outage_count"] == 2  # the night one is off schedule
    assert a["wrong_programme_s"] == 60 and a["filler_s"] == 40
    assert a["degraded_s"] == 270  # the outage inside wins
    assert a["counted_outage_s"] == 130 + 60 + 20
    assert a["rate_s_per_100h"] == pytest.approx(210 / (92 * 18 * 3600) * 360_000, abs=1e-3)
    assert a["target_s_per_100h"] == 50.0 and a["met"] is True
    assert a["on_air_s"] == a["scheduled_s"] - 130 - 60 - 40 - 270
    assert b["scheduled_s"] == 92 * 24 * 3600 and b["outage_s"] == 60 and b["outage_count"] == 1
    assert r["totals"]["outage_s"] == 190
    assert quarter_bounds("2026Q3", "Asia/Shanghai") == (Q3, Q4)


FIELDS = {
    "target",
    "service",
    "scheduled_s",
    "outage_s",
    "outage_count",
    "degraded_s",
    "wrong_programme_s",
    "filler_s",
    "unmonitored_s",
    "maintenance_s",
    "rate_s_per_100h",
    "target_s_per_100h",
    "met",
    "intervals",
}


def test_every_format_reads_back(station: Path, tmp_path: Path) -> None:
    def run(fmt: str, lang: str = "en") -> Path:
        out = tmp_path / f"r-{lang}.{fmt}"
        assert (
            main(
                [
                    "report",
                    "-c",
                    str(station),
                    "--quarter",
                    "2026Q3",
                    "--format",
                    fmt,
                    "--lang",
                    lang,
                    "-o",
                    str(out),
                ]
            )
            == 0
        )
        return out

    data = json.loads(run("json").read_text(encoding="utf-8"))
    assert {"station", "from", "to", "services"} <= set(data)
    assert data["from"] == "2026-07-01T00:00:00+08:00"
    for s in data["services"]:
        assert set(s) >= FIELDS
        for i in s["intervals"]:
            assert set(i) == {"id", "class", "start", "end", "duration_s", "causes", "remarks"}
    raw = run("csv", "zh").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:4] == ["台站", "频率/频道", "节目", "应播时长(秒)"]
    assert "停播率 (秒/百小时)" in rows[0] and "停播次数" in rows[0] and "原因" in rows[0]
    assert rows[1][2] == "青山新闻" and float(rows[1][rows[0].index("停播时长(秒)")]) == 130
    wb = load_workbook(run("xlsx", "zh"))
    ws = wb.worksheets[0]
    assert ws.cell(1, 1).value == "台站" and ws.cell(2, 3).value == "青山新闻"
    assert wb.worksheets[1].max_row == 1 + sum(len(s["intervals"]) for s in data["services"])

    class Parser(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[tuple[str, dict[str, str | None]]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append((tag, dict(attrs)))

    page = run("html").read_text(encoding="utf-8")
    p = Parser()
    p.feed(page)
    assert not any(t in ("link", "script", "img") for t, _ in p.tags)  # self-contained
    assert sum(1 for t, a in p.tags if t == "svg" and a.get("class") == "bars") == 2
    assert sum(1 for t, a in p.tags if t == "rect" and a.get("class") == "day") == 2 * 92
    assert sum(1 for t, a in p.tags if t == "svg" and a.get("class") == "timeline") == 2
    table = run("table").read_text(encoding="utf-8")
    assert "fm-91.5" in table and "Outage rate" in table


def test_ledger_commands(station: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(station)
    assert (
        main(
            [
                "ledger",
                "-c",
                cfg,
                "add",
                "--target",
                "fm-97.5",
                "--from",
                "2026-08-10T10:00",
                "--to",
                "2026-08-10T10:05",
                "--cause",
                "listener report",
                "--author",
                "zhang",
                "--reason",
                "phoned in",
            ]
        )
        == 0
    )
    eid = capsys.readouterr().out.split()[0]
    assert (
        main(
            [
                "ledger",
                "-c",
                cfg,
                "annotate",
                eid[:8],
                "--remark",
                "供电中断",
                "--author",
                "li",
                "--reason",
                "cause",
            ]
        )
        == 0
    )
    assert main(["ledger", "-c", cfg, "show", eid, "--json"]) == 0
    capsys.readouterr()
    assert main(["ledger", "-c", cfg, "show", eid, "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [h["author"] for h in history] == ["zhang", "li"] and history[-1]["remarks"] == ["供电中断"]
    assert main(["ledger", "-c", cfg, "list", "--target", "fm-97.5", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert eid in {x["id"] for x in listed}
    assert main(["ledger", "-c", cfg, "void", eid, "--author", "li", "--reason", "duplicate"]) == 0
    capsys.readouterr()
    assert main(["ledger", "-c", cfg, "list", "--target", "fm-97.5", "--json"]) == 0
    assert eid not in {x["id"] for x in json.loads(capsys.readouterr().out)}
    assert (
        main(
            [
                "ledger",
                "-c",
                cfg,
                "add",
                "--target",
                "nope",
                "--from",
                "2026-08-10",
                "--to",
                "2026-08-11",
                "--author",
                "a",
                "--reason",
                "b",
            ]
        )
        == 1
    )
    assert "not a configured" in capsys.readouterr().err
    assert main(["report", "-c", cfg, "--quarter", "2026Q5"]) == 1
