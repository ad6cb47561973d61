"""Audio kernels: levels, silence detection, hiss, stuck tone, clipping, DC, stereo checks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from probes import audio
from probes._util import DB_FLOOR, DetectionState
from probes.audio import SilenceDetector, SilenceEnd, SilenceInterval
from tests.probes.test_signals import (
    RATE,
    deemphasised_noise,
    pink_noise,
    programme,
    rms_db,
    sine,
    white_noise,
)

TS0 = 1_700_000_000.0  # a plausible unix time, to exercise float precision


def blocks(
    x: NDArray[np.float32], sizes: Sequence[int], rate: int = RATE, ts0: float = TS0
) -> Iterator[tuple[NDArray[np.float32], float]]:
    """Cut ``x`` into consecutive blocks of the given sizes (cycled), with their times."""
    pos = 0
    i = 0
    while pos < x.shape[0]:
        size = sizes[i % len(sizes)]
        yield x[pos : pos + size], ts0 + pos / rate
        pos += size
        i += 1


def feed(
    det: SilenceDetector, x: NDArray[np.float32], sizes: Sequence[int], ts0: float = TS0
) -> list[SilenceInterval]:
    closed: list[SilenceInterval] = []
    for blk, ts in blocks(x, sizes, ts0=ts0):
        closed.extend(det.process(blk, RATE, ts).closed)
    return closed


def silence_at(
    x: NDArray[np.float32], spans: Sequence[tuple[float, float]], rate: int = RATE
) -> NDArray[np.float32]:
    y = x.copy()
    for start, end in spans:
        y[round(start * rate) : round(end * rate)] = 0.0
    return y


# --------------------------------------------------------------------------- levels


def test_full_scale_sine_reads_minus_3_rms_and_0_peak() -> None:
    x = sine(1000.0, 1.0)  # 48 samples per period: the peak sample is exactly 1.0
    levels = audio.block_levels(x)
    np.testing.assert_allclose(levels.rms_dbfs, [-3.0103], atol=1e-3)
    np.testing.assert_allclose(levels.peak_dbfs, [0.0], atol=1e-5)


def test_levels_are_per_channel() -> None:
    x = np.hstack([sine(1000.0, 1.0, -6.0), sine(1000.0, 1.0, -20.0), sine(440.0, 1.0, -40.0)])
    np.testing.assert_allclose(audio.rms_dbfs(x), [-9.0103, -23.0103, -43.0103], atol=2e-3)
    np.testing.assert_allclose(audio.peak_dbfs(x), [-6.0, -20.0, -40.0], atol=0.01)


def test_digital_silence_is_the_floor_not_minus_inf() -> None:
    x = np.zeros((4800, 2), dtype=np.float32)
    levels = audio.block_levels(x)
    assert list(levels.rms_dbfs) == [DB_FLOOR, DB_FLOOR]
    assert list(levels.peak_dbfs) == [DB_FLOOR, DB_FLOOR]
    assert list(audio.rms_dbfs(x, floor_db=-90.0)) == [-90.0, -90.0]


def test_quiet_channel_next_to_a_loud_one_reads_its_own_level() -> None:
    # The stereo fast path splits ΣL²+ΣR² and ΣL²−ΣR²; −100 dB apart it must fall back.
    loud = white_noise(1.0, -10.0, seed=1)
    quiet = white_noise(1.0, -110.0, seed=2)
    x = np.hstack([quiet, loud])
    np.testing.assert_allclose(audio.rms_dbfs(x), rms_db(x), atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    frames=st.integers(1, 9000),
    channels=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    scale_db=st.lists(st.floats(-100.0, 0.0), min_size=4, max_size=4),
)
def test_levels_match_a_float64_reference(
    frames: int, channels: int, seed: int, scale_db: list[float]
) -> None:
    rng = np.random.default_rng(seed)
    gain = 10.0 ** (np.array(scale_db[:channels]) / 20.0)
    x = (rng.uniform(-1.0, 1.0, (frames, channels)) * gain).astype(np.float32)
    levels = audio.block_levels(x)
    np.testing.assert_allclose(levels.rms_dbfs, np.maximum(rms_db(x), DB_FLOOR), atol=2e-3)
    ref_peak = 20 * np.log10(np.abs(x.astype(np.float64)).max(axis=0))
    np.testing.assert_allclose(levels.peak_dbfs, np.maximum(ref_peak, DB_FLOOR), atol=1e-6)


def test_non_contiguous_and_float64_blocks_are_accepted() -> None:
    x = white_noise(0.5, -20.0, channels=4)
    view = x[:, ::2]  # columns 0 and 2, not contiguous
    np.testing.assert_allclose(audio.rms_dbfs(view), rms_db(view), atol=1e-3)
    np.testing.assert_allclose(audio.rms_dbfs(x.astype(np.float64)), rms_db(x), atol=1e-6)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (np.zeros(100, dtype=np.float32), "shape"),
        (np.zeros((100, 2), dtype=np.int32), "floating point"),
        (np.zeros((0, 2), dtype=np.float32), "empty"),
        (np.zeros((100, 0), dtype=np.float32), "no channels"),
    ],
)
def test_bad_blocks_are_rejected_with_a_clear_error(block: NDArray[np.generic], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        audio.block_levels(block)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- clipping, DC, stereo


def test_clipped_sine_reports_the_share_of_pinned_samples() -> None:
    x = np.clip(sine(997.0, 1.0, level_dbfs_peak=6.0206), -1.0, 1.0)  # amplitude 2
    # |2·sin θ| ≥ 1 for a third of each half period on either side of the crest: 2/3.
    np.testing.assert_allclose(audio.clipping_ratio(x), [2 / 3], atol=0.01)
    assert audio.clipping_ratio(sine(1000.0, 1.0, level_dbfs_peak=-1.0))[0] == 0.0


def test_int16_positive_full_scale_counts_as_clipped() -> None:
    x = np.full((10, 1), 32767 / 32768, dtype=np.float32)
    x[5:] = -1.0
    assert audio.clipping_ratio(x)[0] == 1.0
    assert audio.clipping_ratio(x * 0.5)[0] == 0.0


def test_dc_offset_per_channel() -> None:
    x = sine(1000.0, 1.0, -6.0, channels=2) + np.array([0.1, -0.02], dtype=np.float32)
    np.testing.assert_allclose(audio.dc_offset(x), [0.1, -0.02], atol=1e-5)


def test_level_imbalance_in_db_for_one_or_several_pairs() -> None:
    n = white_noise(1.0, -10.0, seed=3)
    x = np.hstack([n, n * 10 ** (-6 / 20), n * 10 ** (-3 / 20), n])
    np.testing.assert_allclose(audio.level_imbalance_db(x), [6.0], atol=1e-3)
    np.testing.assert_allclose(audio.level_imbalance_db(x, [0, 2], [1, 3]), [6.0, -3.0], atol=1e-3)
    dead = np.hstack([n, np.zeros_like(n)])
    assert audio.level_imbalance_db(dead)[0] > 100.0


def test_correlation_inverted_mono_and_unrelated_channels() -> None:
    left = white_noise(1.0, -20.0, seed=4)
    other = white_noise(1.0, -20.0, seed=5)
    np.testing.assert_allclose(audio.channel_correlation(np.hstack([left, -left])), [-1.0])
    np.testing.assert_allclose(audio.channel_correlation(np.hstack([left, left * 0.5])), [1.0])
    assert abs(audio.channel_correlation(np.hstack([left, other]))[0]) < 0.03
    assert np.isnan(audio.channel_correlation(np.hstack([left, np.zeros_like(left)]))[0])


def test_channel_pairs_are_validated() -> None:
    x = white_noise(0.1, -20.0, channels=2)
    with pytest.raises(ValueError, match="out of range"):
        audio.channel_correlation(x, 0, 2)
    with pytest.raises(ValueError, match="equal-length"):
        audio.level_imbalance_db(x, [0, 1], [1])


# --------------------------------------------------------------------------- silence detector


def steady(seconds: float, dbfs: float = -20.0, channels: int = 1) -> NDArray[np.float32]:
    """Noise at a steady level: every 50 ms frame within ±0.5 dB of ``dbfs``."""
    return white_noise(seconds, dbfs, channels=channels, seed=11)


def test_silence_at_known_positions_is_one_interval_each() -> None:
    x = silence_at(steady(60.0), [(10.0, 25.0), (40.0, 41.0), (50.0, 53.0)])
    det = SilenceDetector(on_s=2.0, off_s=1.0)
    closed = feed(det, x, [48000])
    assert closed == [
        SilenceInterval(TS0 + 10.0, TS0 + 25.0, SilenceEnd.AUDIO),
        SilenceInterval(TS0 + 50.0, TS0 + 53.0, SilenceEnd.AUDIO),
    ]  # the 1 s silence is shorter than on_s
    assert det.state is DetectionState.CLEAR


def test_silence_edges_off_the_frame_grid_land_within_one_frame() -> None:
    start, end = 480123 / RATE, 1200456 / RATE
    x = silence_at(steady(40.0), [(start, end)])
    closed = feed(SilenceDetector(on_s=2.0, off_s=1.0), x, [7001, 48000, 333])
    assert len(closed) == 1
    # The frame holding the last 123 programme samples reads −32.9 dBFS (not quiet), so the
    # silence starts at the next frame, 10.05 s; programme returns inside frame 500, which
    # is loud enough (−20.9 dBFS) to count, so it ends at 25.0 s.
    assert closed[0].start == pytest.approx(TS0 + 10.05, abs=1e-6)
    assert closed[0].end == pytest.approx(TS0 + 25.0, abs=1e-6)
    assert 0 <= closed[0].start - (TS0 + start) < 0.05
    assert 0 <= (TS0 + end) - closed[0].end < 0.05


def test_a_silence_spanning_many_blocks_is_open_then_closed_once() -> None:
    x = silence_at(steady(30.0), [(5.0, 20.0)])
    det = SilenceDetector(on_s=2.0, off_s=1.0)
    opened_at: list[float] = []
    closed: list[SilenceInterval] = []
    for blk, ts in blocks(x, [4800]):  # 100 ms blocks
        update = det.process(blk, RATE, ts)
        closed.extend(update.closed)
        if update.open is not None:
            assert update.state is DetectionState.ACTIVE
            assert update.open.ended_by is SilenceEnd.OPEN
            assert update.open.end == pytest.approx(ts + 0.1)
            opened_at.append(update.open.start)
    assert set(opened_at) == {TS0 + 5.0}
    # Reported open from 7 s (2 s of quiet) until programme has been back for 1 s (21 s).
    assert len(opened_at) == round((21.0 - 7.0) / 0.1)
    assert closed == [SilenceInterval(TS0 + 5.0, TS0 + 20.0, SilenceEnd.AUDIO)]


def test_pending_quiet_run_is_reported_before_the_alarm() -> None:
    x = silence_at(steady(10.0), [(4.0, 10.0)])
    det = SilenceDetector(on_s=5.0, off_s=1.0)
    updates = [det.process(b, RATE, ts) for b, ts in blocks(x, [48000])]
    assert updates[5].state is DetectionState.CLEAR  # 4…6 s quiet: 2 s < on_s
    assert updates[5].pending_since == pytest.approx(TS0 + 4.0)
    assert updates[3].pending_since is None
    assert updates[9].state is DetectionState.ACTIVE
    assert updates[9].open == SilenceInterval(TS0 + 4.0, TS0 + 10.0, SilenceEnd.OPEN)


def test_a_gap_ends_an_open_silence_and_makes_the_state_unknown() -> None:
    det = SilenceDetector(on_s=2.0, off_s=1.0)
    first = silence_at(steady(12.0), [(5.0, 12.0)])
    closed = feed(det, first, [48000])
    assert closed == []
    assert det.state is DetectionState.ACTIVE
    # 3 s of data missing; the silence goes on in the data that arrives after the gap.
    second = silence_at(steady(15.0), [(0.0, 5.0)])
    updates = [det.process(b, RATE, ts) for b, ts in blocks(second, [48000], ts0=TS0 + 15.0)]
    assert updates[0].closed == (SilenceInterval(TS0 + 5.0, TS0 + 12.0, SilenceEnd.GAP),)
    assert updates[0].state is DetectionState.UNKNOWN  # not CLEAR: nothing proves programme
    assert updates[0].open is None
    assert updates[1].state is DetectionState.ACTIVE  # 2 s of quiet after the gap
    assert updates[1].open is not None
    assert updates[1].open.start == pytest.approx(TS0 + 15.0)  # never before the gap
    later = [c for u in updates[2:] for c in u.closed]
    assert later == [SilenceInterval(TS0 + 15.0, TS0 + 20.0, SilenceEnd.AUDIO)]


def test_a_gap_during_programme_makes_the_state_unknown_until_proven() -> None:
    det = SilenceDetector(on_s=2.0, off_s=1.0)
    feed(det, steady(5.0), [48000])
    assert det.state is DetectionState.CLEAR
    update = det.process(steady(0.5), RATE, TS0 + 7.0)
    assert update.state is DetectionState.UNKNOWN
    assert update.closed == ()
    update = det.process(steady(0.5), RATE, TS0 + 7.5)
    assert update.state is DetectionState.CLEAR  # 1 s (off_s) of non-quiet audio


@pytest.mark.parametrize("jump", [-0.5, 0.25, 60.0])
def test_overlapping_or_late_blocks_are_discontinuities(jump: float) -> None:
    det = SilenceDetector(on_s=1.0, off_s=1.0)
    feed(det, np.zeros((3 * RATE, 1), dtype=np.float32), [RATE])
    assert det.state is DetectionState.ACTIVE
    update = det.process(np.zeros((RATE, 1), dtype=np.float32), RATE, TS0 + 3.0 + jump)
    assert [c.ended_by for c in update.closed] == [SilenceEnd.GAP]
    assert update.closed[0].end == pytest.approx(TS0 + 3.0)


def test_time_stamp_jitter_within_tolerance_is_not_a_gap() -> None:
    det = SilenceDetector(on_s=1.0, off_s=1.0, gap_tolerance_s=0.05)
    x = silence_at(steady(20.0), [(2.0, 15.0)])
    closed: list[SilenceInterval] = []
    jitter = [0.0, 0.02, -0.03, 0.01, -0.02]
    for i, (blk, ts) in enumerate(blocks(x, [RATE])):
        closed.extend(det.process(blk, RATE, ts + jitter[i % len(jitter)]).closed)
    assert len(closed) == 1
    assert closed[0].ended_by is SilenceEnd.AUDIO
    assert closed[0].start == pytest.approx(TS0 + 2.0, abs=0.031)
    assert closed[0].end == pytest.approx(TS0 + 15.0, abs=0.031)


def test_interrupt_closes_the_open_silence_at_the_last_evaluated_frame() -> None:
    det = SilenceDetector(on_s=1.0, off_s=1.0)
    feed(det, np.zeros((int(2.5 * RATE), 1), dtype=np.float32), [RATE])
    assert det.interrupt() == (SilenceInterval(TS0, TS0 + 2.5, SilenceEnd.GAP),)
    assert det.state is DetectionState.UNKNOWN
    assert det.open_interval is None
    assert det.interrupt() == ()


def test_level_hysteresis_holds_the_silence_until_the_off_threshold() -> None:
    # Silence, then 4 s at −35 dBFS (between −40 on and −30 off), then programme at −20.
    x = np.concatenate([steady(5.0), np.zeros((5 * RATE, 1), np.float32), steady(4.0, -35.0), steady(5.0)])
    closed = feed(SilenceDetector(on_s=2.0, off_s=1.0), x, [12000])
    assert closed == [SilenceInterval(TS0 + 5.0, TS0 + 14.0, SilenceEnd.AUDIO)]


def test_time_hysteresis_ignores_short_bursts_and_short_dips() -> None:
    # A 0.4 s burst is less than half of off_s (1 s): not programme yet.
    burst = silence_at(steady(20.0), [(3.0, 8.0), (8.4, 15.0)])
    closed = feed(SilenceDetector(on_s=2.0, off_s=1.0), burst, [RATE])
    assert closed == [SilenceInterval(TS0 + 3.0, TS0 + 15.0, SilenceEnd.AUDIO)]
    # Half of off_s is: the silence ends where the burst began, a new one follows it.
    burst = silence_at(steady(20.0), [(3.0, 8.0), (8.5, 15.0)])
    closed = feed(SilenceDetector(on_s=2.0, off_s=1.0), burst, [RATE])
    assert closed == [
        SilenceInterval(TS0 + 3.0, TS0 + 8.0, SilenceEnd.AUDIO),
        SilenceInterval(TS0 + 8.5, TS0 + 15.0, SilenceEnd.AUDIO),
    ]
    dips = silence_at(steady(20.0), [(3.0, 4.5), (6.0, 7.9)])  # dips < on_s
    assert feed(SilenceDetector(on_s=2.0, off_s=1.0), dips, [RATE]) == []


def test_silence_means_every_channel_is_silent() -> None:
    x = steady(10.0, channels=2)
    x[2 * RATE : 8 * RATE, 0] = 0.0  # left dead, right on air: not silence
    assert feed(SilenceDetector(on_s=2.0, off_s=1.0), x, [RATE]) == []
    x[2 * RATE : 8 * RATE, 1] = 0.0
    closed = feed(SilenceDetector(on_s=2.0, off_s=1.0), x, [RATE])
    assert closed == [SilenceInterval(TS0 + 2.0, TS0 + 8.0, SilenceEnd.AUDIO)]
    surround = np.hstack([x, x[:, :1] * 0.0])
    closed = feed(SilenceDetector(on_s=2.0, off_s=1.0), surround, [RATE])
    assert closed == [SilenceInterval(TS0 + 2.0, TS0 + 8.0, SilenceEnd.AUDIO)]


def test_programme_is_not_silence_and_reads_clear() -> None:
    det = SilenceDetector(on_s=2.0, off_s=1.0)
    assert feed(det, programme(30.0, -20.0), [RATE]) == []
    assert det.state is DetectionState.CLEAR


def test_detector_levels_equal_block_levels_for_odd_block_sizes() -> None:
    x = programme(3.0, -20.0)
    det = SilenceDetector()
    for blk, ts in blocks(x, [1000, 2399, 2401, 7, 4800, 31111]):
        update = det.process(blk, RATE, ts)
        ref = audio.block_levels(blk)
        np.testing.assert_allclose(update.levels.rms_dbfs, ref.rms_dbfs, atol=1e-4)
        np.testing.assert_array_equal(update.levels.peak_dbfs, ref.peak_dbfs)


def test_a_change_of_rate_or_channels_is_a_discontinuity() -> None:
    det = SilenceDetector(on_s=1.0, off_s=1.0)
    det.process(np.zeros((2 * RATE, 1), np.float32), RATE, TS0)
    update = det.process(np.zeros((44100, 1), np.float32), 44100, TS0 + 2.0)
    assert [c.ended_by for c in update.closed] == [SilenceEnd.GAP]
    update = det.process(np.zeros((2 * 44100, 2), np.float32), 44100, TS0 + 3.0)
    assert [c.ended_by for c in update.closed] == [SilenceEnd.GAP]
    assert update.state is DetectionState.ACTIVE
    assert update.open is not None and update.open.start == TS0 + 3.0


def test_detector_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="off threshold"):
        SilenceDetector(on_dbfs=-30.0, off_dbfs=-40.0)
    with pytest.raises(ValueError, match="durations"):
        SilenceDetector(on_s=0.0)
    with pytest.raises(ValueError, match="sample rate"):
        SilenceDetector().process(np.zeros((10, 1), np.float32), 0, TS0)


# Property: whatever the block split (and with gaps), silence intervals are disjoint,
# ordered, inside the audio actually fed, never across a gap, and — without gaps —
# identical to those found when the audio arrives in one block.

PROP_RATE = 8000
_rng = np.random.default_rng(7)
_PROP_SIGNAL = (0.1 * _rng.standard_normal((40 * PROP_RATE, 1))).astype(np.float32)
for _start, _end in [(2.0, 2.7), (4.0, 9.3), (12.05, 12.9), (15.5, 21.0), (30.0, 40.0)]:
    _PROP_SIGNAL[round(_start * PROP_RATE) : round(_end * PROP_RATE)] = 0.0


def _prop_detector() -> SilenceDetector:
    return SilenceDetector(on_s=0.5, off_s=0.3, gap_tolerance_s=0.01)


def _run_split(
    cuts: list[int], gaps: list[float]
) -> tuple[list[SilenceInterval], SilenceInterval | None, list[tuple[float, float]]]:
    det = _prop_detector()
    edges = [0, *sorted(set(cuts)), _PROP_SIGNAL.shape[0]]
    closed: list[SilenceInterval] = []
    segments: list[tuple[float, float]] = []
    shift = 0.0
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        if a == b:
            continue
        shift += gaps[i % len(gaps)] if gaps else 0.0
        ts = TS0 + a / PROP_RATE + shift
        if segments and abs(segments[-1][1] - ts) < 1e-6:
            segments[-1] = (segments[-1][0], ts + (b - a) / PROP_RATE)
        else:
            segments.append((ts, ts + (b - a) / PROP_RATE))
        closed.extend(det.process(_PROP_SIGNAL[a:b], PROP_RATE, ts).closed)
    return closed, det.open_interval, segments


_ONE_BLOCK = _run_split([], [])


def test_silences_of_the_property_signal_are_found_where_they_were_put() -> None:
    closed, open_, _ = _ONE_BLOCK
    spans = [(iv.start - TS0, iv.end - TS0) for iv in closed]
    np.testing.assert_allclose(spans, [(2.0, 2.7), (4.0, 9.3), (12.05, 12.9), (15.5, 21.0)])
    assert open_ is not None
    assert (open_.start - TS0, open_.end - TS0) == pytest.approx((30.0, 40.0))


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(1, _PROP_SIGNAL.shape[0] - 1), max_size=40))
def test_silence_intervals_do_not_depend_on_the_block_split(cuts: list[int]) -> None:
    closed, open_, _ = _run_split(cuts, [])
    ref_closed, ref_open, _ = _ONE_BLOCK
    assert len(closed) == len(ref_closed)
    for got, ref in zip(closed, ref_closed, strict=True):
        assert got.ended_by is ref.ended_by
        assert got.start == pytest.approx(ref.start, abs=1e-6)
        assert got.end == pytest.approx(ref.end, abs=1e-6)
    assert open_ is not None and ref_open is not None
    assert open_.start == pytest.approx(ref_open.start, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(1, _PROP_SIGNAL.shape[0] - 1), min_size=1, max_size=30),
    gaps=st.lists(st.one_of(st.just(0.0), st.floats(0.05, 5.0)), max_size=8),
    backwards=st.booleans(),
)
def test_silence_intervals_are_disjoint_ordered_and_inside_contiguous_audio(
    cuts: list[int], gaps: list[float], backwards: bool
) -> None:
    # With time stamps jumping backwards the fed spans overlap, so only containment holds.
    closed, open_, segments = _run_split(cuts, [-g for g in gaps] if backwards else gaps)
    intervals = closed + ([open_] if open_ is not None else [])
    for iv in intervals:
        assert iv.end > iv.start
        # inside one contiguous stretch of fed audio: never bridging missing data
        assert any(a - 1e-6 <= iv.start and iv.end <= b + 1e-6 for a, b in segments)
    if not backwards:
        for earlier, later in itertools.pairwise(intervals):
            assert earlier.end <= later.start + 1e-6


# Speech-like programme: 50 ms-grid bursts of noise with pauses (word gaps) that never let
# it stay loud for off_s, between silences. The window rule must end each silence where
# the "speech" resumed, whatever the block split.

_SPEECH_RATE = 8000


def _speech_like(seed: int = 3) -> tuple[NDArray[np.float32], list[tuple[float, float]]]:
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.standard_normal((60 * _SPEECH_RATE, 1))).astype(np.float32)
    t = 0.0
    while t < 60.0:  # a word of 0.2–0.6 s, then a pause of 0.1–0.35 s
        t += rng.choice([0.2, 0.3, 0.4, 0.5, 0.6])
        gap = rng.choice([0.1, 0.15, 0.25, 0.35])
        x[round(t * _SPEECH_RATE) : round((t + gap) * _SPEECH_RATE)] = 0.0
        t += gap
    dead = [(5.0, 17.0), (25.0, 36.5), (44.0, 47.0)]
    for a, b in dead:
        x[round(a * _SPEECH_RATE) : round(b * _SPEECH_RATE)] = 0.0
    return x, dead


_SPEECH, _SPEECH_DEAD = _speech_like()


def _speech_run(cuts: list[int], ratio: float = 0.5) -> list[SilenceInterval]:
    det = SilenceDetector(on_s=2.0, off_s=3.0, programme_ratio=ratio)
    edges = [0, *sorted(set(cuts)), _SPEECH.shape[0]]
    closed: list[SilenceInterval] = []
    for a, b in itertools.pairwise(edges):
        if b > a:
            closed.extend(det.process(_SPEECH[a:b], _SPEECH_RATE, TS0 + a / _SPEECH_RATE).closed)
    return closed


def test_speech_with_word_gaps_ends_each_silence_where_it_resumed() -> None:
    closed = _speech_run([])
    got = [(iv.start - TS0, iv.end - TS0) for iv in closed]
    assert len(got) == len(_SPEECH_DEAD)
    for (a, b), (ta, tb) in zip(got, _SPEECH_DEAD, strict=True):
        # a word gap just before or after the dead air is part of the silence
        assert ta - 0.35 <= a <= ta + 1e-6 and tb - 1e-6 <= b <= tb + 0.35
        # and it ends on the first sound of the next word, not seconds into the speech
        resumed = round(b * _SPEECH_RATE)
        assert _SPEECH[resumed, 0] != 0.0 and not _SPEECH[resumed - 1, 0]
    # An unbroken run of loud frames (the old rule) never comes: one silence, never ending.
    assert _speech_run([], ratio=1.0) == []


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(1, _SPEECH.shape[0] - 1), max_size=30))
def test_speech_silences_do_not_depend_on_the_block_split(cuts: list[int]) -> None:
    ref = _speech_run([])
    got = _speech_run(cuts)
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert g.start == pytest.approx(r.start, abs=1e-6) and g.end == pytest.approx(r.end, abs=1e-6)


# --------------------------------------------------------------------------- spectrum, hiss, tone


@pytest.mark.parametrize("freq", [1000.0, 1234.5, 7777.0])
def test_spectral_peak_of_a_sine(freq: float) -> None:
    feats = audio.spectral_features(sine(freq, 1.0, -18.0), RATE, nperseg=8192, band=(20, 20000))
    assert feats.peak_hz[0] == pytest.approx(freq, abs=1.0)
    assert feats.peak_dominance[0] > 0.99
    assert feats.flatness[0] < 0.01


def test_flatness_of_noise_and_of_silence() -> None:
    feats = audio.spectral_features(white_noise(1.0, -30.0, channels=2), RATE)
    assert np.all(feats.flatness > 0.9)
    assert feats.flatness.shape == (2,)
    silent = audio.spectral_features(np.zeros((RATE, 1), np.float32), RATE)
    assert np.isnan(silent.flatness[0])
    with pytest.raises(ValueError, match="too short"):
        audio.spectral_features(np.zeros((8, 1), np.float32), RATE)


def test_summed_channel_spectrum_survives_polarity_inversion() -> None:
    n = white_noise(1.0, -30.0)
    feats = audio.spectral_features(np.hstack([n, -n]), RATE, sum_channels=True)
    assert feats.flatness.shape == (1,)
    assert feats.flatness[0] > 0.9


def run_hiss(det: audio.HissDetector, x: NDArray[np.float32], ts0: float = TS0) -> list[audio.HissUpdate]:
    return [det.process(b, RATE, ts) for b, ts in blocks(x, [RATE], ts0=ts0)]


def run_tone(
    det: audio.StuckToneDetector, x: NDArray[np.float32], ts0: float = TS0
) -> list[audio.ToneUpdate]:
    return [det.process(b, RATE, ts) for b, ts in blocks(x, [RATE], ts0=ts0)]


@pytest.mark.parametrize(
    "noise",
    [
        white_noise(8.0, -30.0, channels=2),
        deemphasised_noise(8.0, -35.0),
        pink_noise(8.0, -25.0),
    ],
    ids=["white", "deemphasised", "pink"],
)
@pytest.mark.parametrize("deemphasis_us", [None, 50.0])
def test_noise_is_hiss(noise: NDArray[np.float32], deemphasis_us: float | None) -> None:
    updates = run_hiss(audio.HissDetector(on_s=5.0, deemphasis_us=deemphasis_us), noise)
    assert all(u.hiss_now for u in updates)
    assert updates[3].state is DetectionState.UNKNOWN
    assert updates[4].state is DetectionState.ACTIVE  # 5 s of hiss
    assert updates[4].since == TS0


@pytest.mark.parametrize("deemphasis_us", [None, 50.0])
def test_programme_and_silence_are_not_hiss(deemphasis_us: float | None) -> None:
    updates = run_hiss(audio.HissDetector(deemphasis_us=deemphasis_us), programme(10.0))
    assert not any(u.hiss_now for u in updates)
    assert updates[-1].state is DetectionState.CLEAR
    silent = run_hiss(audio.HissDetector(), white_noise(5.0, -80.0))
    assert not any(u.hiss_now for u in silent)


def test_hiss_clears_when_programme_returns_and_a_gap_makes_it_unknown() -> None:
    det = audio.HissDetector(on_s=3.0, off_s=2.0)
    x = np.concatenate([white_noise(5.0, -30.0, channels=2), programme(5.0)])
    updates = run_hiss(det, x)
    assert updates[4].state is DetectionState.ACTIVE
    assert updates[6].state is DetectionState.CLEAR
    assert updates[6].since == TS0 + 5.0
    after_gap = det.process(white_noise(1.0, -30.0, channels=2), RATE, TS0 + 20.0)
    assert after_gap.state is DetectionState.UNKNOWN


def test_a_steady_tone_is_stuck_after_on_s() -> None:
    det = audio.StuckToneDetector(on_s=10.0)
    updates = run_tone(det, sine(1000.0, 15.0, -18.0, channels=2) + white_noise(15.0, -70.0))
    assert all(u.tone_now for u in updates)
    assert updates[8].state is DetectionState.UNKNOWN
    assert updates[9].state is DetectionState.ACTIVE
    assert updates[9].since == TS0
    assert updates[9].peak_hz == pytest.approx(1000.0, abs=1.0)
    assert updates[9].level_dbfs == pytest.approx(-21.0, abs=0.1)


def test_programme_and_changing_tones_are_not_stuck() -> None:
    det = audio.StuckToneDetector(on_s=5.0)
    assert run_tone(det, programme(12.0))[-1].state is DetectionState.CLEAR
    sweep = np.concatenate([sine(f, 3.0, -18.0) for f in (400.0, 1000.0, 2500.0, 6000.0)])
    assert all(
        u.state is not DetectionState.ACTIVE for u in run_tone(audio.StuckToneDetector(on_s=5.0), sweep)
    )
    steps = np.concatenate([sine(1000.0, 3.0, lvl) for lvl in (-18.0, -12.0, -18.0, -12.0)])
    assert all(
        u.state is not DetectionState.ACTIVE for u in run_tone(audio.StuckToneDetector(on_s=5.0), steps)
    )


def test_a_gap_resets_the_stuck_tone_run() -> None:
    det = audio.StuckToneDetector(on_s=5.0)
    run_tone(det, sine(1000.0, 4.0, -18.0))
    updates = run_tone(det, sine(1000.0, 4.0, -18.0), ts0=TS0 + 10.0)
    assert all(u.state is DetectionState.UNKNOWN for u in updates)  # 4 s + 4 s, not 8 s
    det.interrupt()
    assert det.current.state is DetectionState.UNKNOWN


@settings(max_examples=60, deadline=None)
@given(
    frames=st.integers(16, 6000),
    nperseg=st.integers(1, 4096),
    channels=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_welch_is_scipys_welch(frames: int, nperseg: int, channels: int, seed: int) -> None:
    import scipy.signal

    x = np.random.default_rng(seed).normal(size=(frames, channels)) + 0.3
    seg = min(nperseg, frames)
    f_ref, p_ref = scipy.signal.welch(x, fs=48_000, nperseg=seg, axis=0)
    f, p = audio.welch(x, 48_000, seg)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12)
    np.testing.assert_allclose(p, p_ref, rtol=1e-9, atol=1e-18 * float(p_ref.max()))


def test_welch_rejects_a_segment_longer_than_the_block() -> None:
    with pytest.raises(ValueError, match="nperseg 20 for 10 frames"):
        audio.welch(np.zeros((10, 1)), 48_000, 20)
