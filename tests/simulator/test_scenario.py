"""Scenario files: schema, cross-references, errors with file and line, bundled scenarios."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.settings import Settings, load_settings
from simulator.scenario import (
    FAULT_KINDS,
    TARGET_FAULTS,
    DeadAir,
    EbDispatch,
    LowRF,
    Scenario,
    ScenarioError,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
    resolve_scenario,
    scenario_problems,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "anbo.example.toml"


@pytest.fixture(scope="module")
def example() -> Settings:
    return load_settings(EXAMPLE).settings


def errors_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(textwrap.dedent(text), "s.yml")
    return [str(e) for e in info.value.errors]


def test_minimal_scenario_and_defaults() -> None:
    sc = parse_scenario("name: calm\nduration: 90s\n", "calm.yml")
    assert sc.name == "calm" and sc.duration == 90.0 and sc.speed == 1.0 and sc.seed == 0
    assert sc.timeline == [] and sc.expect == [] and sc.eb.endpoints == 0
    assert sc.source == "calm.yml"


def test_timeline_entries_are_typed_by_fault_kind() -> None:
    sc = parse_scenario(
        textwrap.dedent("""\
        name: t
        duration: 10m
        timeline:
          - {id: a, at: 30s, for: 1m30s, target: fm-news-97.5, fault: dead_air}
          - {at: 2m, for: 60, target: fm-news-97.5, fault: low_rf, drop_db: 12}
          - {at: 1m, for: 2m, fault: eb_dispatch, regions: [r01, r02], latency: [1s, 20s]}
        expect:
          - {alert: DeadAir, target: fm-news-97.5, fault: a, fire_within: 20s, resolve_within: 10s}
        """)
    )
    dead, low, dispatch = sc.timeline
    assert isinstance(dead, DeadAir) and dead.at == 30.0 and dead.for_ == 90.0 and dead.end == 120.0
    assert dead.level_dbfs == -70.0 and dead.active(30.0) and not dead.active(120.0)
    assert isinstance(low, LowRF) and low.drop_db == 12.0 and low.for_ == 60.0
    assert isinstance(dispatch, EbDispatch) and dispatch.latency == (1.0, 20.0) and dispatch.deadline == 120.0
    assert sc.fault_of(sc.expect[0]) is dead


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, target: x, fault: smoke}\n",
            "s.yml:4: timeline[0].fault: unknown fault 'smoke'",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, target: x}\n",
            "s.yml:4: timeline[0]: missing `fault`",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - at: 1s\n    for: 2s\n    target: x\n    fault: low_rf\n"
            "    drop_db: -3\n",
            "s.yml:8: timeline[0].drop_db: Input should be greater than 0",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - at: 1s\n    for: 2s\n    target: x\n"
            "    fault: pilot_loss\n    level: 3\n",
            "s.yml:8: timeline[0].level: unknown field",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: soon, for: 2s, target: x, fault: pilot_loss}\n",
            "s.yml:4: timeline[0].at: expected a duration such as 30s, 5m, 1h or 1h30m, got 'soon'",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 0s, target: x, fault: pilot_loss}\n",
            "s.yml:4: timeline[0].for: Input should be greater than 0",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 50s, for: 20s, target: x, fault: pilot_loss}\n",
            "s.yml:4: timeline[0].for: the fault ends at 70 s, after the scenario's duration (60 s)",
        ),
        ("name: t\ntimeline: []\n", "s.yml:1: duration: required field missing"),
        ("name: t\nduration: 1m\nfaults: []\n", "s.yml:3: faults: unknown field"),
        ("name: bad name\nduration: 1m\n", "s.yml:1: name: 'bad name' is not a valid name"),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, target: x, fault: wrong_rds_pi,"
            " pi: c2ff}\n",
            "s.yml:4: timeline[0].pi: 'c2ff' is not an RDS PI code",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, target: x, fault: vacated_emission}\n",
            "s.yml:4: timeline[0]: give exactly one of channel",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, target: x, fault: vacated_emission,"
            " channel: DS-60}\n",
            "s.yml:4: timeline[0].channel: DS-60 is outside the UHF plan",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, fault: eb_dispatch, regions: [r01],"
            " latency: [9s, 2s]}\n",
            "s.yml:4: timeline[0]: latency: the shortest must not exceed the longest",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {id: a, at: 1s, for: 2s, target: x, fault: pilot_loss}\n"
            "  - {id: a, at: 3s, for: 2s, target: x, fault: pilot_loss}\n",
            "s.yml:5: timeline[1].id: duplicate id 'a' (first in timeline[0])",
        ),
        (
            "name: t\nduration: 1m\nexpect:\n  - {alert: X, target: x, fault: nope, fire_within: 5s,"
            " resolve_within: 5s}\n",
            "s.yml:4: expect[0].fault: no timeline entry has id 'nope'",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, target: x, fault: pilot_loss}\n"
            "  - {at: 5s, for: 2s, target: x, fault: pilot_loss}\n"
            "expect:\n  - {alert: X, target: x, fire_within: 5s, resolve_within: 5s}\n",
            "s.yml:7: expect[0]: the timeline has 2 faults on 'x': name the fault it answers",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, target: x, fault: pilot_loss}\n"
            "expect:\n  - {alert: X, target: x, fire_within: 5s}\n",
            "s.yml:6: expect[0]: resolve_within is required unless resolves: false",
        ),
        (
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, for: 50s, target: x, fault: pilot_loss}\n"
            "expect:\n  - {alert: X, target: x, fire_within: 5s, resolve_within: 30s}\n",
            "s.yml:6: expect[0].resolve_within: the scenario ends 9 s after the fault",
        ),
        (
            "name: t\nduration: 1m\nexpect_counts:\n  - {counter: late, reason: x}\n",
            "s.yml:4: expect_counts[0]: counter late needs target and stream",
        ),
        ("name: t\nduration: 1m\nduration: 2m\n", "s.yml:3: duration: duplicate key (first at line 2)"),
        ("name: t\nduration: [1m\n", "s.yml:3: invalid YAML"),
        ("- just\n- a list\n", "s.yml:1: a scenario is a mapping"),
    ],
)
def test_errors_name_file_line_and_field(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


def test_all_problems_are_reported_at_once() -> None:
    errors = errors_of("""\
        name: t
        duration: 1m
        timeline:
          - {at: 1s, for: 2s, target: x, fault: low_rf, drop_db: 0}
          - {at: 1s, target: x, fault: pilot_loss}
        """)
    assert errors[0].startswith("s.yml:4: timeline[0].drop_db")
    assert errors[1].startswith("s.yml:5: timeline[1].for: required field missing")


def test_bundled_scenarios_load_and_fit_the_example_station(example: Settings) -> None:
    bundled = bundled_scenarios()
    assert {
        "quiet-day",
        "fm-faults",
        "dtv-faults",
        "transmitter-faults",
        "telemetry-faults",
        "eb-faults",
        "audio-faults",
        "demo",
    } <= set(bundled)
    kinds: set[str] = set()
    for path in bundled.values():
        sc = load_scenario(path)
        assert scenario_problems(sc, example) == [], path
        assert sc.description, path
        kinds |= {f.fault for f in sc.timeline}
        if sc.name != "quiet-day":
            assert sc.expect, f"{path}: a fault scenario says what must fire"
    quiet = load_scenario(bundled["quiet-day"])
    assert quiet.timeline == [] and quiet.expect == [] and quiet.duration == 86400.0
    # Every fault kind is shown by some bundled scenario.
    assert kinds == set(FAULT_KINDS)


def test_resolve_by_name_or_path(tmp_path: Path) -> None:
    assert resolve_scenario("fm-faults").name == "fm-faults"
    path = tmp_path / "mine.yml"
    path.write_text("name: mine\nduration: 1m\n")
    assert resolve_scenario(str(path)).source == str(path)
    with pytest.raises(ScenarioError, match="not a bundled scenario"):
        resolve_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match="cannot read"):
        resolve_scenario(tmp_path / "missing.yml")


def test_problems_against_the_station(example: Settings) -> None:
    sc = parse_scenario(
        textwrap.dedent("""\
        name: t
        duration: 5m
        timeline:
          - {at: 1s, for: 2s, target: fm-nowhere, fault: dead_air}
          - {at: 1s, for: 2s, target: tx-fm-a, fault: dead_air}
          - {at: 1s, for: 2s, target: dtv-ds21, fault: hiss}
          - {at: 1s, for: 2s, target: fm-news-97.5, fault: wrong_rds_pi, pi: C201}
          - {at: 1s, for: 2s, target: fm-news-97.5, fault: duplicate_blocks, stream: video}
          - {at: 1s, for: 2s, fault: eb_offline, region: r09}
          - {at: 1s, for: 2s, target: tx-fm-b, fault: vacated_emission, channel: DS-40}
        expect:
          - {alert: DeadAir, target: fm-nowhere, fire_within: 5s, resolve_within: 5s}
        """),
        "t.yml",
    )
    problems = [str(p) for p in scenario_problems(sc, example)]
    assert problems[0].startswith("t.yml:4: timeline[0].target: no target 'fm-nowhere' in the station config")
    assert problems[1] == "t.yml:5: timeline[1].fault: dead_air applies to dtv/fm targets; tx-fm-a is tx"
    assert problems[2] == "t.yml:6: timeline[2].fault: hiss applies to fm targets; dtv-ds21 is dtv"
    assert problems[3] == "t.yml:7: timeline[3].pi: C201 is fm-news-97.5's own PI code (params.rds_pi)"
    assert problems[4].startswith("t.yml:8: timeline[4].stream: fm-news-97.5 has no stream 'video'")
    assert problems[5].startswith("t.yml:9: timeline[5].fault: eb_offline needs emergency-broadcast")
    assert problems[6].startswith("t.yml:9: timeline[5].region: unknown region 'r09'")
    assert problems[7] == "t.yml:10: timeline[6].target: tx-fm-b is a transmitter, not a receiver"
    assert problems[8] == "t.yml:12: expect[0].target: no target 'fm-nowhere' in the station config"
    assert len(problems) == 9
    # A fleet given on the command line satisfies the emergency-broadcast fault.
    eb_only = parse_scenario(
        "name: e\nduration: 1m\ntimeline:\n  - {at: 1s, for: 2s, fault: eb_offline, region: r02}\n"
    )
    assert scenario_problems(eb_only, example) != []
    assert scenario_problems(eb_only, example, eb_endpoints=10, eb_regions=2) == []


def test_every_target_fault_names_the_kinds_it_applies_to() -> None:
    assert set(TARGET_FAULTS) < set(FAULT_KINDS)
    assert all(TARGET_FAULTS.values())


# --------------------------------------------------------------------------- property tests

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["30s", "1m", "-5s", "1h30m", "dead_air", "fm-news-97.5", "DS-40"]),
)
_keys = st.sampled_from(
    [
        "name",
        "duration",
        "timeline",
        "expect",
        "at",
        "for",
        "target",
        "fault",
        "id",
        "drop_db",
        "regions",
        "share",
        "pi",
        "channel",
        "alert",
        "fire_within",
        "seed",
        "speed",
        "eb",
        "expect_counts",
        "counter",
        "stuff",
    ]
)
_docs = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=6)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_docs)
def test_any_document_is_accepted_or_rejected_with_located_errors(doc: object) -> None:
    text = yaml.safe_dump(doc)
    errors = []
    try:
        sc: Scenario | None = parse_scenario(text, "fuzz.yml")
    except ScenarioError as exc:
        sc, errors = None, exc.errors
    assert (sc is None) == bool(errors)
    for e in errors:
        assert e.file == "fuzz.yml"
        assert e.line is None or 1 <= e.line <= text.count("\n") + 1


@st.composite
def _valid(draw: st.DrawFn) -> tuple[str, list[tuple[float, float, str, str]]]:
    duration = draw(st.integers(60, 3600))
    entries = []
    lines = [f"name: s{draw(st.integers(0, 999))}", f"duration: {duration}s", "timeline:"]
    for i in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, duration - 2))
        length = draw(st.integers(1, duration - at))
        kind = draw(st.sampled_from(sorted(TARGET_FAULTS)))
        target = draw(st.sampled_from(["fm-a", "dtv-b", "tx-c"]))
        entries.append((float(at), float(length), target, kind))
        extra = ", pi: C2FF" if kind == "wrong_rds_pi" else ""
        lines.append(f"  - {{id: f{i}, at: {at}s, for: {length}s, target: {target}, fault: {kind}{extra}}}")
    if not entries:
        lines[-1] = "timeline: []"
    return "\n".join(lines) + "\n", entries


@settings(max_examples=200, deadline=None)
@given(case=_valid())
def test_valid_timelines_round_trip(case: tuple[str, list[tuple[float, float, str, str]]]) -> None:
    text, entries = case
    sc = parse_scenario(text, "ok.yml")
    assert [(f.at, f.for_, getattr(f, "target", None), f.fault) for f in sc.timeline] == entries


def test_fleet_alerts_are_expected_on_regions_and_dispatches(example: Settings) -> None:
    sc = parse_scenario(
        textwrap.dedent("""\
        name: e
        duration: 10m
        eb: {endpoints: 40, regions: 2}
        timeline:
          - {id: outage, at: 1m, for: 2m, fault: eb_offline, region: r02}
          - {id: d, at: 1m, for: 1m, fault: eb_dispatch, regions: [r01], message_id: M-1}
        expect:
          - {alert: EbRegionOnlineLow, target: "eb:r02", fault: outage, fire_within: 8m, resolve_within: 2m}
          - {alert: DispatchUnderDelivered, target: "dispatch:M-1", fault: d, fire_within: 6m,
             resolves: false}
          - {alert: EbRegionOnlineLow, target: "eb:r07", fault: outage, fire_within: 8m, resolve_within: 2m}
          - {alert: DispatchUnderDelivered, target: "dispatch:M-2", fault: d, fire_within: 6m,
             resolves: false}
        """),
        "e.yml",
    )
    problems = [str(p) for p in scenario_problems(sc, example)]
    assert problems == [
        "e.yml:11: expect[2].target: no target 'eb:r07' in the station config (fleet alerts are on "
        "eb:<region> and dispatch:<message_id>; give the dispatch a message_id)",
        "e.yml:12: expect[3].target: no target 'dispatch:M-2' in the station config (fleet alerts are on "
        "eb:<region> and dispatch:<message_id>; give the dispatch a message_id)",
    ]
