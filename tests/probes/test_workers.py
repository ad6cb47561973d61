"""Probe workers: per-target streaming state fed block by block, evaluated per tick."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probes.workers import AUDIO_MEASUREMENTS, AudioSettings, ProbeWorkers, TargetSpec

RATE = 48_000
BLOCK = RATE // 10  # 100 ms
T0 = 1_790_000_000.0


def tone_block(i: int, level: float = 0.3) -> np.ndarray:
    t = (np.arange(BLOCK) + i * BLOCK) / RATE
    x = level * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([x, 0.8 * x], axis=1).astype(np.float32)


def silent_block() -> np.ndarray:
    return np.zeros((BLOCK, 2), np.float32)


def workers() -> ProbeWorkers:
    return ProbeWorkers(
        [TargetSpec("fm-a", "fm"), TargetSpec("tx-a", "tx")],
        audio=AudioSettings(silence_on_s=2.0, silence_off_s=1.0, stale_after_s=3.0),
    )


def run_ticks(w: ProbeWorkers, blocks: list[np.ndarray], start: int = 0) -> list[dict[str, object]]:
    """Feed 10 blocks (1 s) per tick; monotonic time = seconds of audio fed."""
    out = []
    for tick in range(len(blocks) // 10):
        for j in range(10):
            i = start + tick * 10 + j
            w.push_block("fm-a", blocks[tick * 10 + j], RATE, T0 + i * 0.1, rx=(i + 1) * 0.1)
        now = (start + (tick + 1) * 10) * 0.1
        out.append(w.evaluate(w.take(), now)["fm-a"])
    return out


def test_programme_then_silence_then_programme() -> None:
    w = workers()
    blocks = (
        [tone_block(i) for i in range(30)]
        + [silent_block() for _ in range(40)]
        + [tone_block(i) for i in range(30)]
    )
    ticks = run_ticks(w, blocks)
    assert ticks[2]["silence"] == 0.0
    assert ticks[2]["audio_rms_dbfs"] == pytest.approx(-12.0, abs=2.0)
    assert ticks[2]["lr_imbalance_db"] == pytest.approx(20 * math.log10(1 / 0.8), abs=0.1)
    assert ticks[2]["lr_correlation"] == pytest.approx(1.0, abs=1e-3)
    # 2 s of silence needed: silent from 3.0 s, declared once 5.0 s is evaluated.
    assert ticks[3]["silence"] == 0.0
    assert ticks[4]["silence"] == 1.0
    assert ticks[6]["silence"] == 1.0 and ticks[6]["silence_seconds"] == pytest.approx(4.0, abs=0.06)
    assert ticks[6]["audio_rms_dbfs"] == -120.0
    assert ticks[9]["silence"] == 0.0
    closed = w.audio["fm-a"].take_closed()
    assert len(closed) == 1
    start, end, why = closed[0]
    assert start == pytest.approx(T0 + 3.0, abs=0.06) and end == pytest.approx(T0 + 7.0, abs=0.06)
    assert why == "audio"


def test_missing_audio_is_unknown_not_silence() -> None:
    w = workers()
    run_ticks(w, [tone_block(i) for i in range(30)])
    out = w.evaluate(w.take(), now=3.0 + 3.5)["fm-a"]
    assert all(out[k] is None for k in AUDIO_MEASUREMENTS)
    # A silence in progress when the feed stops is closed as ended by the gap.
    w2 = workers()
    run_ticks(w2, [silent_block() for _ in range(30)])
    w2.evaluate(w2.take(), now=3.0 + 3.5)
    assert [c[2] for c in w2.audio["fm-a"].take_closed()] == ["gap"]


def test_reordered_blocks_are_sorted_and_late_ones_dropped() -> None:
    w = workers()
    blocks = [tone_block(i) for i in range(20)]
    for i in reversed(range(10)):  # a tick's blocks arrive in reverse order
        w.push_block("fm-a", blocks[i], RATE, T0 + i * 0.1, rx=1.0)
    first = w.evaluate(w.take(), 1.0)["fm-a"]
    assert w.audio["fm-a"].late_blocks == 0
    assert first["audio_rms_dbfs"] is not None
    w.push_block("fm-a", blocks[3], RATE, T0 + 0.3, rx=1.5)  # already evaluated: too late
    w.push_block("fm-a", blocks[10], RATE, T0 + 1.0, rx=1.5)
    w.evaluate(w.take(), 1.5)
    assert w.audio["fm-a"].late_blocks == 1


def test_derived_readings_vswr_and_modulation() -> None:
    w = ProbeWorkers([TargetSpec("fm-a", "fm"), TargetSpec("tx-a", "tx"), TargetSpec("tx-b", "tx")])
    w.push_readings("fm-a", {"peak_deviation_khz": 78.75}, {}, rx=10.0)
    w.push_readings("tx-a", {"forward_power_w": 1000.0, "reflected_power_w": 10.0}, {}, rx=10.0)
    w.push_readings("tx-b", {"forward_power_w": 0.0, "reflected_power_w": 0.0}, {}, rx=10.0)
    out = w.evaluate(w.take(), now=11.0)
    assert out["fm-a"]["modulation_percent"] == pytest.approx(105.0)
    assert out["tx-a"]["vswr"] == pytest.approx((1 + 0.1) / (1 - 0.1))
    assert out["tx-b"]["vswr"] is None  # no forward power: undefined, not healthy
    stale = w.evaluate(w.take(), now=10.0 + 31.0)
    assert stale["tx-a"]["vswr"] is None and stale["fm-a"]["modulation_percent"] is None


def test_reconfigure_keeps_state_of_remaining_targets() -> None:
    w = workers()
    run_ticks(w, [tone_block(i) for i in range(10)])
    probe = w.audio["fm-a"]
    w.reconfigure([TargetSpec("fm-a", "fm"), TargetSpec("fm-b", "fm")])
    assert w.audio["fm-a"] is probe and "fm-b" in w.audio and "tx-a" not in w.readings


def test_data_times_say_when_the_block_that_made_it_silent_arrived() -> None:
    w = workers()
    # Silent from 3.05 s of audio (mid-block): silence_on_s 2 s is reached at 5.05 s,
    # in the block of 5.0–5.1 s, received at 5.1 s; the tick that sees it is at 6 s.
    blocks = [tone_block(i) for i in range(30)]
    half = tone_block(30)
    half[BLOCK // 2 :] = 0.0
    blocks += [half] + [silent_block() for _ in range(39)]
    ticks = run_ticks(w, blocks)
    assert [t["silence"] for t in ticks] == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    times = w.data_times("fm-a")
    assert times["silence"] == pytest.approx(5.1)
    assert times["audio_rms_dbfs"] == pytest.approx(7.0)  # the newest block
    assert "vswr" not in times  # fm-a has no readings
    w.push_readings("tx-a", {"forward_power_w": 1000.0, "reflected_power_w": 10.0}, {}, rx=7.3)
    assert w.data_times("tx-a") == {}  # not yet used for the derived measurements
    assert w.derived(7.5)["tx-a"]["vswr"] == pytest.approx(1.222, abs=1e-3)
    # A reading that comes while the audio is evaluated waits for the next tick's values.
    w.push_readings("tx-a", {"forward_power_w": 1000.0, "reflected_power_w": 90.0}, {}, rx=7.6)
    assert w.data_times("tx-a") == {"modulation_percent": 7.3, "vswr": 7.3}
