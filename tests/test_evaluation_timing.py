"""The evaluator fires an alert when its ``for`` runs out, counted from the data's arrival.

A 1 s tick used to add up to a tick to every alert: the tick that first saw the
condition started its ``for``, and only a regular tick could end it. Now the reading's
arrival starts it and the evaluator ticks once more, between its regular ticks, when the
earliest pending ``for`` runs out. Driven here with a fake clock and a fake sleep.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from monitor import evaluation
from monitor.evaluation import Evaluator
from monitor.pipeline import Pipeline
from monitor.stats import Stats
from monitor.wire import encode_readings
from rules.model import AlertState
from tests.simulator.helpers import station


class StopLoopError(Exception):
    pass


def run_until_stopped(ev: Evaluator, fake_sleep: Callable[[float], Awaitable[None]]) -> None:
    """``Evaluator.run`` with ``asyncio.sleep`` replaced, until ``fake_sleep`` raises
    :class:`StopLoopError`."""
    original = evaluation.asyncio.sleep
    evaluation.asyncio.sleep = fake_sleep  # type: ignore[assignment]
    try:
        with pytest.raises(StopLoopError):
            asyncio.run(ev.run())
    finally:
        evaluation.asyncio.sleep = original


def run_loop(
    tmp_path: Path, arrivals: dict[float, tuple[float, float]], until: float, tick_s: float = 0.0
) -> tuple[list[float], list[tuple[float, str, str]]]:
    """Run ``Evaluator.run`` on a fake clock until ``until``; ``arrivals``: time →
    (forward, reflected) W of a tx-c status reading received then; each tick takes
    ``tick_s`` on the clock. Returns the ticks' times (their start) and the VswrHigh
    transitions (time, from, to)."""
    settings = station(tmp_path)
    wall0 = time.time()  # the pipeline checks publishers' time stamps against the real clock
    t = [0.0]
    pipeline = Pipeline(settings, Stats())
    ev = Evaluator(settings, pipeline, state_path=None, mono=lambda: t[0], wall=lambda: wall0 + t[0])
    pipeline.consumers.append(ev.consume)
    ticks: list[float] = []
    seen: list[tuple[float, str, str]] = []
    tick = ev.tick

    async def timed_tick() -> list[object]:
        start = t[0]
        out = await tick()
        ticks.append(start)
        seen.extend(
            (start, tr.from_state.value, tr.to_state.value) for tr in out if tr.alertname == "VswrHigh"
        )
        t[0] += tick_s
        return list(out)

    pending = sorted(arrivals.items())
    seq = [0]

    async def fake_sleep(delay: float) -> None:
        end = t[0] + delay
        while pending and pending[0][0] <= end:
            at, (fwd, refl) = pending.pop(0)
            t[0] = at
            seq[0] += 1
            payload = encode_readings(
                wall0 + at, seq[0], {"forward_power_w": fwd, "reflected_power_w": refl, "on_air": 1}
            )
            pipeline.handle("anbo/sim/tx-c/status", payload, "application/json", None, at)
        t[0] = end
        if end >= until:
            raise StopLoopError

    ev.tick = timed_tick  # type: ignore[method-assign]
    run_until_stopped(ev, fake_sleep)
    return ticks, seen


def test_vswr_fires_for_after_the_reading_arrived_between_two_ticks(tmp_path: Path) -> None:
    # Readings every second at x.4; VSWR 1.8 (reflected 8.2 % of forward) from 3.4 s on.
    high = (2000.0, 2000.0 * ((1.8 - 1) / (1.8 + 1)) ** 2)
    ok = (2000.0, 2.0)
    arrivals = {k + 0.4: (high if k >= 3 else ok) for k in range(20)}
    ticks, seen = run_loop(tmp_path, arrivals, until=16.0)
    assert [s[1:] for s in seen] == [("inactive", "pending"), ("pending", "firing")]
    (pending_at, _, _), (fired_at, _, _) = seen
    assert pending_at == 4.0  # the regular tick after the reading
    assert fired_at == pytest.approx(13.4)  # 3.4 s + for 10 s, not the tick at 14 s
    # one extra tick, then back on the regular schedule
    assert 13.4 in [round(x, 6) for x in ticks]
    regular = [x for x in ticks if not math.isclose(x, 13.4)]
    assert regular == [float(k) for k in range(len(regular))]


def test_a_for_that_runs_out_during_a_long_tick_fires_right_after_it(tmp_path: Path) -> None:
    # Readings at x.1 (VSWR 1.8 from 3.1 s on), each tick takes 0.3 s: the `for` runs out
    # at 13.1, while the regular tick of 13.0 evaluates. It is due when that tick ends,
    # not at the tick of 14.0 (bench/latency.py saw such alerts a second late).
    high = (2000.0, 2000.0 * ((1.8 - 1) / (1.8 + 1)) ** 2)
    arrivals = {k + 0.1: (high if k >= 3 else (2000.0, 2.0)) for k in range(20)}
    ticks, seen = run_loop(tmp_path, arrivals, until=16.0, tick_s=0.3)
    assert [s[1:] for s in seen] == [("inactive", "pending"), ("pending", "firing")]
    fired_at = seen[1][0]
    assert fired_at == pytest.approx(13.3)  # when the tick of 13.0 ended
    assert [round(x, 6) for x in ticks if not x.is_integer()] == [13.3]


def test_without_pending_alerts_the_ticks_stay_regular(tmp_path: Path) -> None:
    arrivals = {k + 0.4: (2000.0, 2.0) for k in range(10)}
    ticks, seen = run_loop(tmp_path, arrivals, until=8.0)
    assert seen == []
    assert ticks == [float(k) for k in range(8)]


def test_alerts_due_at_the_same_time_share_one_extra_tick(tmp_path: Path) -> None:
    high = (2000.0, 2000.0 * ((2.5 - 1) / (2.5 + 1)) ** 2)  # VSWR 2.5: critical and warning
    arrivals = {k + 0.7: high for k in range(15)}
    ticks, seen = run_loop(tmp_path, arrivals, until=13.0)
    fired = [s[0] for s in seen if s[2] == AlertState.FIRING.value]
    # the first reading came at 0.7 s, after the first tick (at 0): both fire at 10.7 s
    assert fired == [pytest.approx(10.7), pytest.approx(10.7)]
    assert [x for x in ticks if not x.is_integer()] == [pytest.approx(10.7)]


def test_a_storm_of_deadlines_costs_at_most_three_extra_ticks_a_period(tmp_path: Path) -> None:
    settings = station(tmp_path)
    t = [0.0]
    ev = Evaluator(settings, Pipeline(settings, Stats()), state_path=None, mono=lambda: t[0])
    # Some pending alert's `for` always runs out 10 ms from now, for the first 2 s.
    ev.engine.next_deadline = lambda: t[0] + 0.01 if t[0] < 2.0 else None  # type: ignore[method-assign]
    wakes: list[float] = []

    async def fake_sleep(delay: float) -> None:
        t[0] += delay
        wakes.append(round(t[0], 6))
        if t[0] >= 3.0:
            raise StopLoopError

    run_until_stopped(ev, fake_sleep)
    assert wakes[:9] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 3.0]
