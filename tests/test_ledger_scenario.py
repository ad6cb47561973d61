"""A scenario with known faults through anbo's own pipeline and rules (accelerated):
the ledger's and the report's seconds match the injected fault times within 2 s."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from anbo.report import CountingRules, compute
from monitor.ledger import Ledger, ledger_debounce, ledger_services
from simulator.accelerated import run_accelerated
from simulator.scenario import parse_scenario
from simulator.station import SimOptions
from tests.simulator.helpers import START, station

pytestmark = pytest.mark.slow

SCENARIO = """\
name: ledger
duration: 330s
timeline:
  - {at: 30s, for: 20s, target: fm-a, fault: dead_air}
  - {at: 90s, for: 30s, target: fm-a, fault: carrier_loss}
  - {at: 100s, for: 10s, target: fm-a, fault: dead_air}
  - {at: 150s, for: 60s, target: fm-a, fault: overmodulation, percent: 112}
  - {at: 240s, for: 60s, target: fm-a, fault: wrong_rds_pi, pi: C2FF}
"""


def test_scenario_seconds_match_the_injected_faults(tmp_path: Path) -> None:
    settings = station(tmp_path)
    ledger = Ledger(
        tmp_path / "ledger.sqlite3",
        settings.station.name,
        ledger_services(settings),
        debounce=ledger_debounce(settings),
        wall=lambda: START,
    )
    ledger.start()
    sc = parse_scenario(SCENARIO, "ledger.yml")
    asyncio.run(
        run_accelerated(
            settings,
            sc,
            SimOptions(start=START, audio_rate=8000, audio_channels=1, audio_targets=frozenset({"fm-a"})),
            ledger=ledger,
            eb_inventory=False,
        )
    )
    svc = [s for s in ledger_services(settings) if s.target == "fm-a"]
    report = compute(
        ledger.store,
        svc,
        station="sim",
        station_class=3,
        start=START,
        end=START + 330,
        rules=CountingRules(),
        now=START + 330,
    )
    s = report["services"][0]
    by_class: dict[str, list[tuple[float, float, list[str]]]] = {}
    for i in s["intervals"]:
        by_class.setdefault(i["class"], []).append((i["duration_s"], 0, i["causes"]))
    # dead air 20 s + carrier loss 30 s (its dead air inside merged into it)
    assert s["outage_count"] == 2, s["intervals"]
    assert s["outage_s"] == pytest.approx(50, abs=2 * 2)
    outages = sorted(d for d, _, _ in by_class["outage"])
    assert outages[0] == pytest.approx(20, abs=2) and outages[1] == pytest.approx(30, abs=2)
    assert s["degraded_s"] == pytest.approx(60, abs=2)
    assert s["wrong_programme_s"] == pytest.approx(60, abs=2)
    assert s["wrong_programme_count"] == 1
    parts = (
        "on_air_s",
        "outage_s",
        "degraded_s",
        "wrong_programme_s",
        "filler_s",
        "unmonitored_s",
        "maintenance_s",
    )
    assert sum(s[k] for k in parts) == pytest.approx(330, abs=0.01)


def test_off_schedule_dead_air_neither_pages_nor_counts(tmp_path: Path) -> None:
    """fm-a is scheduled 12:00–24:00 Beijing time; the run starts at 11:00 (sign-off)."""
    station(tmp_path)  # writes station.toml, which we edit
    body = (
        (tmp_path / "station.toml")
        .read_text()
        .replace(
            'params = { rds_pi = "C201", rf_reference_dbuv = 66.0 }',
            'params = { rds_pi = "C201", rf_reference_dbuv = 66.0 }\n'
            'schedule = { tz = "Asia/Shanghai", windows = [{ start = "12:00", end = "24:00" }] }',
            1,
        )
    )
    settings = station(tmp_path, text=body)
    ledger = Ledger(tmp_path / "l.sqlite3", "sim", ledger_services(settings), wall=lambda: START)
    ledger.start()
    sc = parse_scenario(
        "name: night\nduration: 80s\ntimeline:\n  - {at: 20s, for: 30s, target: fm-a, fault: dead_air}\n",
        "night.yml",
    )
    result = asyncio.run(
        run_accelerated(
            settings,
            sc,
            SimOptions(start=START, audio_rate=8000, audio_channels=1, audio_targets=frozenset({"fm-a"})),
            ledger=ledger,
            eb_inventory=False,
        )
    )
    dead = [e for e in result.episodes if e.alert == "DeadAir"]
    assert dead and all(not e.notified and e.reason == "maintenance" for e in dead)
    svc = [s for s in ledger_services(settings) if s.target == "fm-a"]
    report = compute(
        ledger.store,
        svc,
        station="sim",
        station_class=3,
        start=START,
        end=START + 80,
        rules=CountingRules(),
        now=START + 80,
    )
    s = report["services"][0]
    assert s["scheduled_s"] == 0 and s["outage_s"] == 0 and s["rate_s_per_100h"] is None
    assert ledger.outage_seconds == {}  # the metric does not advance off schedule either
