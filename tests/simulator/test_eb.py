"""The emergency-broadcast fleet: the message contract issue 5 consumes."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from monitor.settings import Settings, load_settings
from monitor.wire import MAX_INFO_LEN, EndpointTopic, Readings, TopicParser
from simulator import cli
from simulator.accelerated import run_accelerated, verify
from simulator.eb import endpoint_id
from simulator.scenario import bundled_scenarios, load_scenario
from simulator.station import Message, SimOptions
from tests.simulator.helpers import START, STATION, decoded, simulate, station

ID_RE = re.compile(r"eb-r\d{2}-\d{5}")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return station(tmp_path_factory.mktemp("eb"))


def eb_messages(settings: Settings, text: str) -> list[Message]:
    return [m for m in simulate(settings, text, audio_targets=frozenset()) if m.topic.startswith("anbo/eb/")]


def test_heartbeats_every_minute_staggered(settings: Settings) -> None:
    msgs = eb_messages(settings, "name: eb\nduration: 180s\neb: {endpoints: 120, regions: 4}\n")
    parser = TopicParser("anbo")
    seen: dict[str, list[float]] = defaultdict(list)
    for m in msgs:
        where = parser.parse(m.topic)
        assert isinstance(where, EndpointTopic) and where.stream == "status" and where.endpoint == m.target
        assert ID_RE.fullmatch(where.endpoint)
        p = decoded(m)
        assert isinstance(p, Readings)
        assert p.values == {"online": 1.0, "playing": 0.0, "fault_amplifier": 0.0, "fault_speaker_line": 0.0}
        assert p.info == {"region": where.endpoint[3:6]}
        assert p.ts == pytest.approx(START + m.t)
        seen[where.endpoint].append(m.t)
    assert len(seen) == 120
    assert Counter(e[3:6] for e in seen) == {"r01": 30, "r02": 30, "r03": 30, "r04": 30}
    for times in seen.values():
        assert len(times) == 3 and np.allclose(np.diff(times), 60.0)
    # Staggered: about two a second, never a burst.
    firsts = np.sort([t[0] for t in seen.values()])
    assert firsts[-1] < 60.0 and np.histogram(firsts, bins=60, range=(0, 60))[0].max() <= 4
    # Sequence numbers +1 per endpoint and stream.
    seqs: dict[str, list[int]] = defaultdict(list)
    for m in msgs:
        seqs[m.topic].append(decoded(m).seq)
    assert all(s == list(range(s[0], s[0] + len(s))) for s in seqs.values())
    assert endpoint_id(1, 7) == "eb-r02-00007"


def test_offline_endpoints_stop_and_come_back_at_once(settings: Settings) -> None:
    msgs = eb_messages(
        settings,
        """\
name: eb
duration: 300s
eb: {endpoints: 100, regions: 2}
timeline:
  - {at: 60s, for: 120s, fault: eb_offline, region: r02, share: 0.4}
""",
    )
    during = {m.target for m in msgs if 70 <= m.t < 180}
    r02 = {f"eb-r02-{i:05d}" for i in range(2, 101, 2)}
    silent = r02 - during
    assert len(silent) == 20  # 40 % of region r02's 50
    assert all(e.startswith("eb-r01") or e in r02 for e in during)
    back = [m for m in msgs if m.target in silent and m.t >= 180]
    first_back = {m.target: m.t for m in sorted(back, key=lambda m: -m.t)}
    assert set(first_back) == silent and max(first_back.values()) < 185.0  # at once, not a minute later


def test_endpoint_faults_are_reported_at_once(settings: Settings) -> None:
    msgs = eb_messages(
        settings,
        """\
name: eb
duration: 200s
eb: {endpoints: 60, regions: 3}
timeline:
  - {at: 30s, for: 100s, fault: eb_endpoint_fault, region: r03, share: 0.1, kind: speaker_line}
""",
    )
    faulty = {m.target for m in msgs if decoded(m).values.get("fault_speaker_line") == 1.0}  # type: ignore[union-attr]
    assert len(faulty) == 2 and all(e.startswith("eb-r03") for e in faulty)
    for e in faulty:
        times = [(m.t, decoded(m).values["fault_speaker_line"]) for m in msgs if m.target == e]  # type: ignore[union-attr]
        onset = [t for t, v in times if v == 1.0]
        assert 30 <= min(onset) < 32.5 and max(onset) < 130  # reported within 2 s, not at the next heartbeat
        assert any(v == 0.0 and 130 <= t < 132.5 for t, v in times)  # and the repair as well


def test_dispatch_and_playback_confirmations(settings: Settings) -> None:
    msgs = eb_messages(
        settings,
        """\
name: eb
duration: 300s
eb: {endpoints: 200, regions: 4}
timeline:
  - {at: 10s, for: 4m, fault: eb_offline, region: r02, share: 0.5}
  - {at: 60s, for: 90s, fault: eb_dispatch, regions: [r01, r02], confirm_share: 0.8, latency: [3s, 30s],
     deadline: 100s}
""",
    )
    dispatch = [m for m in msgs if m.topic == "anbo/eb/platform/dispatch"]
    assert len(dispatch) == 1 and dispatch[0].t == pytest.approx(60.0, abs=0.1)
    d = decoded(dispatch[0])
    assert isinstance(d, Readings) and d.values == {"deadline_s": 100.0}
    message_id = d.info["message_id"]
    assert re.fullmatch(r"M\d+", message_id) and d.info["regions"] == "r01,r02"
    assert all(len(v) <= MAX_INFO_LEN for v in d.info.values())
    plays = [m for m in msgs if m.stream == "playback"]
    assert plays and all(m.topic == f"anbo/eb/{m.target}/playback" for m in plays)
    for m in plays:
        p = decoded(m)
        assert isinstance(p, Readings) and p.values == {"playing": 1.0}
        assert p.info == {"message_id": message_id}
        assert 63.0 <= m.t <= 90.0
        assert m.target[3:6] in ("r01", "r02")
    confirmed = {m.target for m in plays}
    r01 = [e for e in confirmed if e.startswith("eb-r01")]
    r02 = [e for e in confirmed if e.startswith("eb-r02")]
    assert 30 <= len(r01) <= 48  # 80 % of 50
    assert 12 <= len(r02) <= 25  # 80 % of the 25 still online
    # While playing, heartbeats say so; offline endpoints never confirm.
    playing = {m.target for m in msgs if m.stream == "status" and decoded(m).values["playing"] == 1.0}  # type: ignore[union-attr]
    assert playing <= confirmed and len(playing) > len(confirmed) // 2
    silent_r02 = {f"eb-r02-{i:05d}" for i in range(2, 201, 4)} - {m.target for m in msgs if 20 < m.t < 240}
    assert len(silent_r02) == 25 and not silent_r02 & confirmed


def test_fleet_size_from_options(tmp_path: Path) -> None:
    settings = station(tmp_path)
    msgs = [
        m
        for m in simulate(
            settings, "name: eb\nduration: 61s\n", audio_targets=frozenset(), eb_endpoints=10, eb_regions=5
        )
        if m.topic.startswith("anbo/eb/")
    ]
    assert {m.target[3:6] for m in msgs} == {"r01", "r02", "r03", "r04", "r05"}
    assert len({m.target for m in msgs}) == 10


def test_the_written_inventory_lets_the_daemon_know_the_fleet(tmp_path: Path) -> None:
    """`anbo simulate --eb-inventory` writes what `[eb] inventory` reads; with it, anbo's
    own fleet monitoring raises the eb-faults scenario's alerts."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    config = tmp_path / "station.toml"
    config.write_text(STATION)
    assert (
        cli.run(
            parser.parse_args(
                [
                    "--config",
                    str(config),
                    "--scenario",
                    "eb-faults",
                    "--eb-inventory",
                    str(tmp_path / "endpoints.csv"),
                ]
            )
        )
        == 0
    )
    config.write_text('[eb]\ninventory = ["endpoints.csv"]\nregion_level = "county"\n\n' + STATION)
    settings = load_settings(config).settings
    scenario = load_scenario(bundled_scenarios()["eb-faults"])
    options = SimOptions(start=START, audio_targets=frozenset())
    result = asyncio.run(run_accelerated(settings, scenario, options, eb_inventory=False))
    assert result.evaluator.eb is not None and len(result.evaluator.eb.inventory) == 400
    verdict = verify(scenario, result.episodes, result.count)
    assert verdict.ok, verdict.format()
