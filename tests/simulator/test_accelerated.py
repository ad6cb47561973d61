"""Matching alerts against a scenario's expectations, and the broker-less accelerated run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rules import AlertState, OutageClass, Severity, SuppressReason, Transition
from simulator.accelerated import Episode, TransitionRecorder, run_accelerated, verify
from simulator.scenario import CounterExpectation, parse_scenario
from simulator.station import SimOptions
from tests.simulator.helpers import START, station

SCENARIO = parse_scenario("""\
name: s
duration: 5m
timeline:
  - {id: dead, at: 30s, for: 60s, target: fm-a, fault: dead_air}
  - {id: low, at: 100s, for: 120s, target: fm-a, fault: low_rf}
  - {id: heat, at: 30s, for: 60s, target: tx-c, fault: pa_over_temperature}
expect:
  - {alert: DeadAir, target: fm-a, fault: dead, fire_within: 20s, resolve_within: 10s}
  - {alert: LowRF, target: fm-a, fault: low, fire_within: 65s, resolves: false}
  - {alert: PaOverTemperature, target: tx-c, fire_within: 90s, resolve_within: 90s, known_gap: "example"}
expect_counts:
  - {counter: rejected, reason: bad_json, min: 2, max: 5}
""")


def ep(
    alert: str,
    target: str,
    fired: float,
    resolved: float | None,
    *,
    reason: str | None = None,
    severity: str = "critical",
) -> Episode:
    return Episode(alert, target, severity, fired, reason, resolved)


GOOD = [ep("DeadAir", "fm-a", 46.0, 97.0), ep("LowRF", "fm-a", 161.0, None, severity="warning")]


def test_a_matching_run() -> None:
    v = verify(SCENARIO, list(GOOD), lambda c: 3)
    assert v.ok, v.format()
    assert len(v.matched) == 3 and any("known gap" in n for n in v.notes)


@pytest.mark.parametrize(
    ("episodes", "problem"),
    [
        ([GOOD[1]], "expect[0] DeadAir on fm-a: never fired after the fault at 30 s"),
        (
            [ep("DeadAir", "fm-a", 55.0, 97.0), GOOD[1]],
            "fired 25.0 s after the fault started (fire_within 20 s)",
        ),
        ([ep("DeadAir", "fm-a", 46.0, 120.0), GOOD[1]], "resolved 30.0 s after the fault ended"),
        ([ep("DeadAir", "fm-a", 46.0, 80.0), GOOD[1]], "resolved at 80.0 s, before the fault ended (90 s)"),
        ([ep("DeadAir", "fm-a", 46.0, None), GOOD[1]], "never resolved (fault ended at 90 s)"),
        (
            [ep("DeadAir", "fm-a", 46.0, 97.0, reason="inhibited"), GOOD[1]],
            "fired as inhibited, expected notified",
        ),
        ([GOOD[0], ep("LowRF", "fm-a", 161.0, 250.0)], "resolved at 250.0 s; expected it to keep firing"),
        ([*GOOD, ep("Hiss", "fm-a", 50.0, 90.0)], "unexpected alert: Hiss/critical on fm-a: fired at 50.0 s"),
        # An alert that fired before its fault started does not count for it.
        (
            [ep("DeadAir", "fm-a", 20.0, 97.0), GOOD[1]],
            "unexpected alert: DeadAir/critical on fm-a: fired at 20.0 s",
        ),
    ],
)
def test_mismatches_are_named(episodes: list[Episode], problem: str) -> None:
    v = verify(SCENARIO, episodes, lambda c: 3)
    assert not v.ok
    assert any(problem in p for p in v.problems), v.problems


def test_counts_and_slack() -> None:
    v = verify(SCENARIO, list(GOOD), lambda c: 9)
    assert v.problems == ["expect_counts[0] messages rejected (bad_json): 9, expected 2..5"]
    late = [ep("DeadAir", "fm-a", 52.0, 97.0), GOOD[1]]
    assert not verify(SCENARIO, late).ok
    assert verify(SCENARIO, late, slack=3.0).ok
    assert verify(SCENARIO, [*GOOD, ep("Flapping", "fm-a", 1.0, None)], ignore={"Flapping"}).ok


def _tr(
    alert: str, to: AlertState, frm: AlertState, *, notify: bool = False, reason: SuppressReason | None = None
) -> Transition:
    return Transition(
        alert,
        "fm-a",
        frm,
        to,
        {},
        {},
        None,
        Severity.CRITICAL,
        OutageClass.OUTAGE,
        0.0,
        None,
        None,
        notify,
        reason,
    )


def test_recorder_turns_transitions_into_episodes() -> None:
    r = TransitionRecorder()
    r.add([_tr("Hiss", AlertState.PENDING, AlertState.INACTIVE)], 1.0)
    r.add([_tr("Hiss", AlertState.FIRING, AlertState.PENDING, reason=SuppressReason.INHIBITED)], 2.0)
    r.add([_tr("Hiss", AlertState.FIRING, AlertState.FIRING, notify=True)], 3.0)  # delivered later
    r.add([_tr("Hiss", AlertState.RESOLVED, AlertState.FIRING, notify=True)], 4.0)
    r.add([_tr("Hiss", AlertState.FIRING, AlertState.INACTIVE, notify=True)], 5.0)
    assert r.pending == [("Hiss", "fm-a", 1.0)]
    first, second = r.episodes
    assert (first.fired_at, first.reason, first.notified, first.resolved_at) == (2.0, "inhibited", True, 4.0)
    assert (second.fired_at, second.reason, second.resolved_at) == (5.0, None, None)


def test_accelerated_run_through_the_pipeline_and_rules(tmp_path: Path) -> None:
    settings = station(tmp_path, extra="[probes]\nsilence_on_s = 2.0\nsilence_off_s = 1.0\n\n")
    sc = parse_scenario("""\
name: s
duration: 60s
timeline:
  - {at: 10s, for: 20s, target: fm-a, fault: dead_air}
  - {at: 10s, for: 20s, target: tx-c, fault: tx_fault}
  - {at: 10s, for: 10s, target: dtv-b, fault: malformed_payloads, rate: 1}
expect:
  - {alert: DeadAir, target: fm-a, fire_within: 9s, resolve_within: 11s}
  - {alert: TransmitterFault, target: tx-c, fire_within: 7s, resolve_within: 7s}
expect_counts:
  - {counter: rejected, reason: bad_json, min: 1}
  - {counter: accepted, target: fm-a, stream: audio, min: 590}
""")
    ticks: list[float] = []
    result = asyncio.run(
        run_accelerated(
            settings,
            sc,
            SimOptions(start=START, audio_rate=8000, audio_channels=1, audio_targets=frozenset({"fm-a"})),
            on_tick=lambda t, _: ticks.append(t),
        )
    )
    v = verify(sc, result.episodes, result.count)
    assert v.ok, v.format()
    assert ticks[0] == 1.0 and ticks[-1] == 60.0 and len(ticks) == 60
    assert result.simulated == 60.0 and result.messages > 600
    assert result.count(CounterExpectation(counter="late", target="fm-a", stream="audio", min=0)) == 0
    assert not result.pending or all(a in ("DeadAir", "TransmitterFault") for a, _, _ in result.pending)
