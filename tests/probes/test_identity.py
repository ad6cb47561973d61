"""Programme identity: level-envelope cross-correlation with a lag search, and identifier matches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from probes.identity import (
    EnvelopeTracker,
    IdentityResult,
    compare,
    envelope_similarity,
    ids_match,
    parse_identifier,
    parse_pi,
    pi_match,
)

RATE = 8000
T0 = 1_717_200_000.0


def programme(seed: int, seconds: float, rate: int = RATE) -> NDArray[np.float64]:
    """Speech-like programme: noise shaped by 150 ms 'syllables' around −22 dBFS, with pauses."""
    rng = np.random.default_rng(seed)
    seg = int(0.15 * rate)
    nseg = int(seconds * rate / seg) + 2
    level_db = rng.normal(-22.0, 6.0, nseg)
    level_db[rng.random(nseg) < 0.15] = -70.0
    amp = np.repeat(10.0 ** (level_db / 20.0), seg)
    k = int(0.03 * rate)
    amp = np.convolve(amp, np.ones(k) / k, "same")
    out: NDArray[np.float64] = (rng.standard_normal(amp.size) * amp)[: int(seconds * rate)]
    return out


def feed(
    tracker: EnvelopeTracker, x: NDArray[np.float64], t0: float, block_s: float = 0.1, channels: int = 1
) -> None:
    n = int(block_s * RATE)
    for i in range(0, x.size - n + 1, n):
        block = np.repeat(x[i : i + n, None], channels, axis=1).astype(np.float32)
        tracker.push(block, RATE, t0 + i / RATE)


def delayed(
    x: NDArray[np.float64], lag_s: float, gain_db: float, noise_dbfs: float, seed: int = 9
) -> NDArray[np.float64]:
    """``x`` late by ``lag_s`` (what the new chain airs ``lag_s`` after the old), with gain and noise."""
    d = round(lag_s * RATE)
    y = np.zeros_like(x)
    if d >= 0:
        y[d:] = x[: x.size - d]
    else:
        y[:d] = x[-d:]
    noise = np.random.default_rng(seed).standard_normal(x.size) * 10.0 ** (noise_dbfs / 20.0)
    out: NDArray[np.float64] = y * 10.0 ** (gain_db / 20.0) + noise
    return out


def trackers(
    a: NDArray[np.float64], b: NDArray[np.float64], **kw: float
) -> tuple[EnvelopeTracker, EnvelopeTracker]:
    ta, tb = EnvelopeTracker(**kw), EnvelopeTracker(**kw)
    feed(ta, a, T0)
    feed(tb, b, T0, channels=2)
    return ta, tb


# --------------------------------------------------------------------------- the three required cases


def test_lagged_copy_of_the_same_programme_matches_with_the_right_lag() -> None:
    old = programme(1, 75.0)
    new = delayed(old, 0.7, gain_db=-8.0, noise_dbfs=-50.0)
    result = compare(*trackers(old, new))
    assert result.similarity is not None and result.similarity > 0.85
    assert result.lag_s is not None and abs(result.lag_s - 0.7) < 0.05
    assert result.overlap_s >= 45.0


def test_negative_lag_when_the_new_chain_is_earlier() -> None:
    old = programme(4, 75.0)
    new = delayed(old, -2.3, gain_db=+3.0, noise_dbfs=-45.0)
    result = compare(*trackers(old, new))
    assert result.similarity is not None and result.similarity > 0.85
    assert result.lag_s is not None and abs(result.lag_s + 2.3) < 0.05


@pytest.mark.parametrize("seed", [2, 3, 5, 6])
def test_different_programme_at_the_same_level_does_not_match(seed: int) -> None:
    old, other = programme(1, 60.0), programme(seed, 60.0)
    assert abs(20 * np.log10(np.std(old) / np.std(other))) < 2.0  # same level
    result = compare(*trackers(old, other))
    assert result.similarity is not None and result.similarity < 0.35


def test_silence_is_unknown() -> None:
    result = compare(*trackers(np.zeros(60 * RATE), np.zeros(60 * RATE)))
    assert result == IdentityResult(None, None, 0.0)
    assert not result.known


def test_silence_against_programme_is_unknown_not_a_mismatch() -> None:
    result = compare(*trackers(np.zeros(60 * RATE), programme(1, 60.0)))
    assert result.similarity is None and result.lag_s is None


def test_too_little_overlap_is_unknown() -> None:
    old = programme(1, 10.0)
    result = compare(*trackers(old, old), min_overlap_s=15.0)
    assert result.similarity is None
    assert result.overlap_s < 15.0


def test_lag_outside_the_search_window_is_not_found() -> None:
    old = programme(1, 75.0)
    new = delayed(old, 12.0, gain_db=0.0, noise_dbfs=-60.0)
    within = compare(*trackers(old, new), max_lag_s=10.0)
    wider = compare(*trackers(old, new), max_lag_s=15.0)
    assert within.similarity is not None and within.similarity < 0.5
    assert wider.similarity is not None and wider.similarity > 0.9
    assert wider.lag_s is not None and abs(wider.lag_s - 12.0) < 0.05


# --------------------------------------------------------------------------- envelope arrays


def test_envelope_similarity_is_invariant_to_gain() -> None:
    rng = np.random.default_rng(0)
    env = rng.normal(-20, 4, 600)
    r = envelope_similarity(env, env - 12.0, step_s=0.1)  # stays above the silence level
    assert r.similarity == pytest.approx(1.0)
    assert r.lag_s == pytest.approx(0.0, abs=1e-9)


def test_envelope_similarity_skips_unknown_steps() -> None:
    rng = np.random.default_rng(0)
    env = rng.normal(-25, 6, 600)
    holes = env.copy()
    holes[100:250] = np.nan  # a gap in one receiver's audio
    r = envelope_similarity(env, holes, step_s=0.1)
    assert r.similarity == pytest.approx(1.0)
    assert r.overlap_s == pytest.approx(45.0)


def test_envelope_similarity_of_anticorrelated_envelopes_is_negative() -> None:
    rng = np.random.default_rng(0)
    env = rng.normal(-25, 6, 600)
    r = envelope_similarity(env, -50.0 - env, step_s=0.1, max_lag_s=0.0)
    assert r.similarity == pytest.approx(-1.0)


def test_envelope_similarity_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="step_s"):
        envelope_similarity([1.0], [1.0], step_s=0.0)
    with pytest.raises(ValueError, match="max_lag_s"):
        envelope_similarity([1.0], [1.0], step_s=0.1, max_lag_s=-1.0)
    assert envelope_similarity([], [], step_s=0.1).similarity is None


# --------------------------------------------------------------------------- the streaming tracker


def test_tracker_levels_on_the_absolute_grid() -> None:
    tr = EnvelopeTracker(window_s=10.0, step_s=0.1)
    tone = (0.1 * np.sqrt(2) * np.sin(2 * np.pi * 1000 * np.arange(RATE) / RATE)).astype(np.float32)
    # Starts mid-step: the first step (k = T0/0.1) gets 0.05 s, half filled: still known.
    tr.push(tone[:, None], RATE, T0 + 0.05)
    first, env = tr.recent()
    assert tr.latest_step == round(T0 / 0.1) + 10  # the step holding the last sample (T0 + 1.05 − 1/rate)
    known = env[~np.isnan(env)]
    assert known.size == 11
    np.testing.assert_allclose(known, -20.0, atol=0.05)  # 0.1 RMS = −20 dB
    assert first == tr.latest_step - tr.size + 1


def test_tracker_block_boundaries_do_not_matter() -> None:
    x = programme(7, 20.0)
    whole, pieces = EnvelopeTracker(window_s=30.0), EnvelopeTracker(window_s=30.0)
    whole.push(x[:, None].astype(np.float32), RATE, T0 + 0.013)
    n = 0
    for size in [1, 799, 800, 3333, 17, 5000] * 100:
        if n >= x.size:
            break
        part = x[n : n + size]
        pieces.push(part[:, None].astype(np.float32), RATE, T0 + 0.013 + n / RATE)
        n += size
    np.testing.assert_allclose(pieces.recent()[1], whole.recent()[1], equal_nan=True, atol=1e-9)


def test_tracker_keeps_only_the_window_and_ignores_too_old_blocks() -> None:
    tr = EnvelopeTracker(window_s=5.0, step_s=0.1)
    block = np.full((RATE, 1), 0.1, dtype=np.float32)
    for s in range(20):
        tr.push(block, RATE, T0 + s)
    first, env = tr.recent()
    assert env.size == 50 and not np.isnan(env).any()
    tr.push(block * 10, RATE, T0 + 2)  # long gone: ignored
    np.testing.assert_array_equal(tr.recent()[1], env)
    assert tr.latest_step is not None and first == tr.latest_step - 49


def test_tracker_gap_is_unknown_not_silence() -> None:
    tr = EnvelopeTracker(window_s=10.0)
    block = np.full((RATE, 1), 0.1, dtype=np.float32)
    tr.push(block, RATE, T0)
    tr.push(block, RATE, T0 + 5.0)  # 4 s gap
    env = tr.envelope(round(T0 / 0.1), round(T0 / 0.1) + 59)
    assert np.isnan(env[10:50]).all()
    assert not np.isnan(env[:10]).any() and not np.isnan(env[50:]).any()


def test_tracker_reset_and_argument_checks() -> None:
    tr = EnvelopeTracker()
    tr.push(np.ones((100, 1), dtype=np.float32), RATE, T0)
    tr.reset()
    assert tr.latest_step is None and tr.recent()[1].size == 0
    with pytest.raises(ValueError, match="step_s"):
        EnvelopeTracker(step_s=0)
    with pytest.raises(ValueError, match="window_s"):
        EnvelopeTracker(window_s=0.01)
    with pytest.raises(ValueError, match="min_fill"):
        EnvelopeTracker(min_fill=0)
    with pytest.raises(ValueError, match="finite"):
        tr.push(np.ones((10, 1), dtype=np.float32), RATE, math.nan)
    with pytest.raises(ValueError, match="frames, channels"):
        tr.push(np.ones(10, dtype=np.float32), RATE, T0)


def test_compare_needs_both_signals_and_equal_steps() -> None:
    a, b = EnvelopeTracker(), EnvelopeTracker()
    feed(a, programme(1, 30.0), T0)
    assert compare(a, b).similarity is None
    with pytest.raises(ValueError, match="steps differ"):
        compare(a, EnvelopeTracker(step_s=0.05))


def test_a_signal_that_stopped_ages_out_of_the_comparison() -> None:
    old = programme(1, 130.0)
    a, b = EnvelopeTracker(), EnvelopeTracker()
    feed(a, old, T0)  # old keeps running until T0 + 130
    feed(b, old[: 60 * RATE], T0)  # new stopped at T0 + 60: nothing in the last minute
    assert compare(a, b).similarity is None


# --------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("C201", 0xC201),
        ("c201", 0xC201),
        ("0xC201", 0xC201),
        (" C201 ", 0xC201),
        (49665.0, 0xC201),
        (49665, 0xC201),
        ("", None),
        ("C2011", None),
        ("G201", None),
        (1.5, None),
        (-1, None),
        (70000, None),
        (None, None),
        (math.nan, None),
    ],
)
def test_parse_pi(value: float | int | str | None, code: int | None) -> None:
    assert parse_pi(value) == code


@pytest.mark.parametrize(
    ("value", "ident"),
    [
        (1001, 1001),
        (1001.0, 1001),
        ("1001", 1001),
        ("0x03E9", 1001),
        ("65535", 65535),
        ("65536", None),
        ("x", None),
        (True, None),
        (None, None),
    ],
)
def test_parse_identifier(value: float | int | str | None, ident: int | None) -> None:
    assert parse_identifier(value) == ident


def test_pi_match() -> None:
    assert pi_match("C201", "c201") == 1.0
    assert pi_match(0xC201, "C201") == 1.0
    assert pi_match("C202", "C201") == 0.0
    assert pi_match(None, "C201") is None  # nothing observed: unknown
    assert pi_match("C201", None) is None  # nothing expected: not checked


def test_ids_match_combines_service_and_ts_ids() -> None:
    assert ids_match([(1001, 1001), (1, 1)]) == 1.0
    assert ids_match([(1001, 1001), (2, 1)]) == 0.0
    assert ids_match([(1002, 1001), (None, 1)]) == 0.0  # a known mismatch is enough
    assert ids_match([(1001, 1001), (None, 1)]) is None  # the TS id was not observed
    assert ids_match([(1001, None), (1, None)]) is None  # nothing expected
    assert ids_match([(1001, 1001), (7, None)]) == 1.0
