"""BS.1770-4 / EBU R 128 loudness: filter design, streaming meter, pyloudnorm as oracle."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pyloudnorm
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from probes._util import DB_FLOOR
from probes.loudness import LoudnessMeter, LoudnessUpdate, TruePeakMeter, k_weighting_sos
from tests.probes.test_signals import RATE, pink_noise, programme, sine, white_noise

TS0 = 1_700_000_000.0
ODD_SIZES = (4801, 1000, 33333, 7, 19200, 2399)


def stream(
    meter: LoudnessMeter,
    x: NDArray[np.float32],
    sizes: Sequence[int] = ODD_SIZES,
    rate: int = RATE,
    ts0: float = TS0,
) -> list[LoudnessUpdate]:
    out = []
    pos = 0
    i = 0
    while pos < x.shape[0]:
        size = sizes[i % len(sizes)]
        out.append(meter.process(x[pos : pos + size], rate, ts0 + pos / rate))
        pos += size
        i += 1
    return out


def oracle(x: NDArray[np.float32], rate: int = RATE, filter_class: str = "K-weighting") -> float:
    return float(pyloudnorm.Meter(rate, filter_class=filter_class).integrated_loudness(x.astype(np.float64)))


# --------------------------------------------------------------------------- filter


def test_k_weighting_at_48k_matches_the_coefficients_of_bs1770() -> None:
    sos = k_weighting_sos(48000)
    # ITU-R BS.1770-4, tables 1 and 2.
    np.testing.assert_allclose(
        sos[0],
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
        atol=1e-10,
    )
    np.testing.assert_allclose(sos[1], [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621], atol=1e-10)


def _response_db(rate: int, freqs: NDArray[np.float64]) -> NDArray[np.float64]:
    _, h = scipy.signal.sosfreqz(k_weighting_sos(rate), worN=freqs, fs=rate)
    return np.asarray(20 * np.log10(np.abs(h)), dtype=np.float64)


@pytest.mark.parametrize("rate", [32000, 44100, 96000])
def test_k_weighting_has_the_same_response_at_other_rates(rate: int) -> None:
    freqs = np.array([25.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0])
    np.testing.assert_allclose(_response_db(rate, freqs), _response_db(48000, freqs), atol=0.05)


def test_k_weighting_shape() -> None:
    gain = _response_db(48000, np.array([20.0, 997.0, 10000.0]))
    assert gain[0] < -10.0  # the RLB high-pass
    assert gain[1] == pytest.approx(0.691, abs=0.01)  # what the −0.691 offset cancels
    assert gain[2] == pytest.approx(4.0, abs=0.3)  # the high shelf


# --------------------------------------------------------------------------- oracle


def _with_level_changes() -> NDArray[np.float32]:
    x = programme(30.0, -20.0, seed=5)
    gain = np.ones((x.shape[0], 1), dtype=np.float32)
    gain[10 * RATE : 20 * RATE] = 10 ** (-8 / 20)  # a quieter passage
    gain[25 * RATE :] = 10 ** (4 / 20)
    return x * gain


def _with_silent_parts() -> NDArray[np.float32]:
    x = programme(30.0, -18.0, seed=6)
    x[5 * RATE : 12 * RATE] = 0.0
    x[20 * RATE : 24 * RATE] *= 10 ** (-60 / 20)  # below the absolute gate
    return x


SIGNALS = {
    "sine 1 kHz −20 dBFS": sine(1000.0, 20.0, -20.0),
    "pink noise stereo": pink_noise(20.0, -23.0, channels=2, seed=2),
    "programme with level changes": _with_level_changes(),
    "programme with silent parts": _with_silent_parts(),
}


@pytest.mark.parametrize("name", list(SIGNALS))
def test_integrated_loudness_matches_pyloudnorm(name: str) -> None:
    x = SIGNALS[name]
    meter = LoudnessMeter()
    stream(meter, x)
    assert meter.integrated_lufs == pytest.approx(oracle(x), abs=0.1)


@pytest.mark.parametrize("name", list(SIGNALS))
def test_integrated_loudness_is_exact_against_the_same_filter_design(name: str) -> None:
    # pyloudnorm's "DeMan" filters are the same bilinear design as ours (and libebur128):
    # with the filter out of the comparison, only gating and block arithmetic remain.
    x = SIGNALS[name]
    meter = LoudnessMeter()
    stream(meter, x)
    assert meter.integrated_lufs == pytest.approx(oracle(x, filter_class="DeMan"), abs=0.005)


def test_gate_excludes_silence() -> None:
    prog = programme(20.0, -18.0, seed=8)
    gapped = np.concatenate([prog[: 10 * RATE], np.zeros((30 * RATE, 2), np.float32), prog[10 * RATE :]])
    plain, padded = LoudnessMeter(), LoudnessMeter()
    stream(plain, prog)
    stream(padded, gapped)
    # Blocks straddling the edges of the silence differ; the silence itself is gated out.
    assert padded.integrated_lufs == pytest.approx(plain.integrated_lufs, abs=0.15)
    ungated = 10 * math.log10(20 / 50)  # what averaging the silence in would cost
    assert padded.integrated_lufs - plain.integrated_lufs > ungated + 3.0


def test_relative_gate_drops_a_passage_far_below_the_programme() -> None:
    loud = white_noise(10.0, -20.0, channels=2, seed=1)
    quiet = white_noise(10.0, -45.0, channels=2, seed=2)  # 25 dB down: under the −10 LU gate
    both, alone = LoudnessMeter(), LoudnessMeter()
    stream(both, np.concatenate([loud, quiet]))
    stream(alone, loud)
    # The quiet passage is above the absolute gate: only the relative gate removes it.
    # Averaged in, it would cost 3 dB; the three 400 ms blocks straddling the change
    # pass the gate and cost 10·log10(98.5 / 100) = −0.066 dB.
    assert both.integrated_lufs - alone.integrated_lufs == pytest.approx(-0.066, abs=0.01)


# --------------------------------------------------------------------------- EBU known answers


def test_ebu_tech_3341_case_1_stereo_sine_at_minus_23() -> None:
    x = sine(1000.0, 20.0, -23.0, channels=2)
    meter = LoudnessMeter()
    stream(meter, x)
    assert meter.momentary_lufs == pytest.approx(-23.0, abs=0.1)
    assert meter.short_term_lufs == pytest.approx(-23.0, abs=0.1)
    assert meter.integrated_lufs == pytest.approx(-23.0, abs=0.1)


def test_ebu_tech_3341_case_2_stereo_sine_at_minus_33() -> None:
    meter = LoudnessMeter()
    stream(meter, sine(1000.0, 20.0, -33.0, channels=2))
    assert meter.integrated_lufs == pytest.approx(-33.0, abs=0.1)


def test_surround_channels_weigh_1_5_db_more() -> None:
    tone = sine(1000.0, 5.0, -23.0)
    silent = np.zeros_like(tone)
    front, rear = LoudnessMeter(), LoudnessMeter()
    stream(front, np.hstack([tone, silent, silent, silent, silent]))
    stream(rear, np.hstack([silent, silent, silent, tone, silent]))
    assert rear.integrated_lufs - front.integrated_lufs == pytest.approx(10 * math.log10(1.41), abs=0.01)


# --------------------------------------------------------------------------- streaming behaviour


def test_momentary_and_short_term_need_a_full_window() -> None:
    meter = LoudnessMeter()
    updates = stream(meter, sine(1000.0, 4.0, -23.0, channels=2), sizes=[4800])  # 100 ms
    assert math.isnan(updates[2].momentary_lufs)  # 300 ms
    assert updates[3].momentary_lufs == pytest.approx(-23.0, abs=0.2)  # 400 ms
    assert math.isnan(updates[28].short_term_lufs)  # 2.9 s
    assert updates[29].short_term_lufs == pytest.approx(-23.0, abs=0.1)  # 3.0 s


def test_step_times_and_values_are_reported_for_every_100_ms() -> None:
    meter = LoudnessMeter()
    update = meter.process(sine(1000.0, 1.05, -23.0, channels=2), RATE, TS0)
    np.testing.assert_allclose(update.step_end - TS0, np.arange(1, 11) * 0.1, atol=1e-6)
    assert np.isnan(update.momentary[:3]).all()
    np.testing.assert_allclose(update.momentary[3:], -23.0, atol=0.2)
    update = meter.process(sine(1000.0, 0.1, -23.0, channels=2), RATE, TS0 + 1.05)
    # the step carried over from the first block ends at 1.1 s
    np.testing.assert_allclose(update.step_end - TS0, [1.1], atol=1e-6)


def test_a_gap_restarts_the_windows_but_keeps_integrating() -> None:
    meter = LoudnessMeter()
    stream(meter, sine(1000.0, 5.0, -23.0, channels=2))
    after = meter.process(sine(1000.0, 0.2, -23.0, channels=2), RATE, TS0 + 60.0)
    assert not after.contiguous
    assert math.isnan(after.momentary_lufs)
    assert math.isnan(after.short_term_lufs)
    assert after.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    meter.interrupt()
    assert meter.process(sine(1000.0, 0.5, -23.0, channels=2), RATE, TS0 + 61.0).contiguous is False


def test_silence_reads_the_floor_and_nothing_yet_reads_nan() -> None:
    meter = LoudnessMeter()
    first = meter.process(np.zeros((RATE // 10, 2), np.float32), RATE, TS0)
    assert math.isnan(first.integrated_lufs)  # no complete 400 ms block yet
    stream(meter, np.zeros((RATE, 2), np.float32), ts0=TS0 + 0.1)
    assert meter.integrated_lufs == DB_FLOOR
    assert meter.momentary_lufs == DB_FLOOR
    meter.reset_integrated()
    assert math.isnan(meter.integrated_lufs)


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 6 * RATE - 1), max_size=25))
def test_result_does_not_depend_on_the_block_split(cuts: list[int]) -> None:
    x = _SPLIT_SIGNAL
    whole = LoudnessMeter()
    whole.process(x, RATE, TS0)
    split = LoudnessMeter()
    edges = [0, *sorted(set(cuts)), x.shape[0]]
    for a, b in itertools.pairwise(edges):
        split.process(x[a:b], RATE, TS0 + a / RATE)
    assert split.integrated_lufs == pytest.approx(whole.integrated_lufs, abs=1e-9)
    assert split.short_term_lufs == pytest.approx(whole.short_term_lufs, abs=1e-9)
    assert split.momentary_lufs == pytest.approx(whole.momentary_lufs, abs=1e-9)


_SPLIT_SIGNAL = programme(6.0, -20.0, seed=9)


def test_channel_weights_are_checked() -> None:
    with pytest.raises(ValueError, match="explicit channel_weights"):
        LoudnessMeter().process(np.zeros((RATE, 6), np.float32), RATE, TS0)
    with pytest.raises(ValueError, match="2 channel weights"):
        LoudnessMeter(channel_weights=[1.0, 1.0]).process(np.zeros((RATE, 3), np.float32), RATE, TS0)
    lfe_excluded = LoudnessMeter(channel_weights=[1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    tone = sine(1000.0, 2.0, -23.0)
    x = np.hstack([tone, tone, np.zeros_like(tone), tone * 4, np.zeros_like(tone), np.zeros_like(tone)])
    stream(lfe_excluded, x)
    assert lfe_excluded.integrated_lufs == pytest.approx(-23.0, abs=0.1)


def test_quiet_audio_and_silence_after_loud_programme_read_their_own_level() -> None:
    loud = white_noise(30.0, -3.0, channels=2, seed=1)
    quiet = white_noise(4.0, -110.0, channels=2, seed=2)
    after_loud, alone = LoudnessMeter(), LoudnessMeter()
    stream(after_loud, np.concatenate([loud, quiet]))
    stream(alone, quiet)
    # Windows are summed afresh, not as differences of a running sum that still holds
    # the programme's energy 107 dB higher; the K-filter has long forgotten it too.
    assert after_loud.momentary_lufs == pytest.approx(alone.momentary_lufs, abs=1e-3)
    assert after_loud.short_term_lufs == pytest.approx(alone.short_term_lufs, abs=1e-3)
    silent = LoudnessMeter()
    stream(silent, np.concatenate([loud, np.zeros((4 * RATE, 2), np.float32)]))
    assert silent.momentary_lufs == DB_FLOOR
    assert silent.short_term_lufs == DB_FLOOR


# --------------------------------------------------------------------------- loudness range


@pytest.mark.parametrize(
    ("levels", "lra"),
    [
        # The stereo 1 kHz sine test signals of EBU Tech 3342 (20 s per level; ±1 LU allowed).
        ((-20, -30), 10.0),
        ((-20, -15), 5.0),
        ((-40, -20), 20.0),
        ((-50, -35, -20, -35, -50), 15.0),
    ],
)
def test_loudness_range_of_the_tech_3342_signals(levels: tuple[int, ...], lra: float) -> None:
    x = np.concatenate([sine(1000.0, 20.0, level, channels=2) for level in levels])
    meter = LoudnessMeter()
    stream(meter, x)
    assert meter.loudness_range_lu == pytest.approx(lra, abs=0.05)


def test_loudness_range_before_and_after_reset() -> None:
    meter = LoudnessMeter()
    assert math.isnan(meter.loudness_range_lu)
    stream(meter, sine(1000.0, 2.0, -20.0, channels=2))
    assert math.isnan(meter.loudness_range_lu)  # no complete 3 s window yet
    stream(meter, sine(1000.0, 10.0, -20.0, channels=2), ts0=TS0 + 2.0)
    assert meter.loudness_range_lu == pytest.approx(0.0, abs=0.02)  # a steady tone
    meter.reset_integrated()
    assert math.isnan(meter.loudness_range_lu)
    stream(meter, np.zeros((RATE * 4, 2), dtype=np.float32), ts0=TS0 + 16.0)
    assert meter.loudness_range_lu == 0.0  # only silence: below the absolute gate


# --------------------------------------------------------------------------- true peak


def tp_stream(meter: TruePeakMeter, x: NDArray[np.float32], sizes: Sequence[int], rate: int = RATE) -> None:
    pos, i = 0, 0
    while pos < x.shape[0]:
        meter.process(x[pos : pos + sizes[i % len(sizes)]], rate, TS0 + pos / rate)
        pos += sizes[i % len(sizes)]
        i += 1


def test_true_peak_finds_the_peak_between_samples() -> None:
    """A quarter-rate sine at 45°: every sample is 3.01 dB below the waveform's peak."""
    x = sine(RATE / 4, 2.0, -6.0, channels=2, phase=math.pi / 4)
    x[:, 1] *= 0.25
    sample_peak = 20 * np.log10(np.abs(x).max(axis=0))
    meter = TruePeakMeter()
    tp_stream(meter, x, [4800])
    np.testing.assert_allclose(meter.true_peak_dbtp, [-6.0, -18.04], atol=0.05)
    np.testing.assert_allclose(meter.true_peak_dbtp - sample_peak, 3.01, atol=0.05)


@pytest.mark.parametrize("rate", [44_100, 48_000, 96_000])
def test_true_peak_does_not_depend_on_the_block_cuts(rate: int) -> None:
    x = programme(6.0, rate=rate, channels=2)
    whole, cut = TruePeakMeter(), TruePeakMeter()
    tp_stream(whole, x, [x.shape[0]], rate)
    tp_stream(cut, x, ODD_SIZES, rate)
    np.testing.assert_allclose(cut.true_peak_dbtp, whole.true_peak_dbtp, atol=1e-9)
    # never below the sample peak, and within the 0.7 dB BS.1770-4 allows above it for programme
    sample_peak = 20 * np.log10(np.abs(x).max(axis=0))
    assert np.all(whole.true_peak_dbtp >= sample_peak - 1e-9)
    assert np.all(whole.true_peak_dbtp < sample_peak + 3.1)


def test_true_peak_restarts_after_a_gap_and_reset() -> None:
    loud = sine(997.0, 1.0, -1.0, channels=1)
    quiet = sine(997.0, 1.0, -20.0, channels=1)
    meter = TruePeakMeter()
    meter.process(loud, RATE, TS0)
    meter.reset()
    meter.process(quiet, RATE, TS0 + 5.0)  # after a gap: no carried frames from the loud tone
    assert meter.true_peak_dbtp[0] == pytest.approx(-20.0, abs=0.05)


@settings(max_examples=60, deadline=None)
@given(
    channels=st.sampled_from([1, 2, 3]),
    seconds=st.floats(0.01, 1.5),
    block_s=st.sampled_from([0.01, 0.1, 0.37, 1.0, 10.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_true_peak_computes_only_the_points_that_can_matter_and_misses_none(
    channels: int, seconds: float, block_s: float, seed: int
) -> None:
    """Pairs of rows whose samples bound every interpolated point below the block's sample
    peak are skipped: the result equals interpolating every point."""
    from probes.loudness import _TP_ROW, _true_peak_matrix

    rng = np.random.default_rng(seed)
    n = max(1, round(seconds * RATE))
    # Bursts of near-Nyquist tones (inter-sample peaks) at levels that vary by 40 dB.
    t = np.arange(n) / RATE
    level = 10 ** (rng.uniform(-40, 0, (n // 4800 + 1, channels)) / 20).repeat(4800, axis=0)[:n]
    x = np.sin(2 * np.pi * rng.uniform(11_000, 23_000, channels) * t[:, None] + rng.uniform(0, 6, channels))
    x = (x * level * rng.uniform(0.5, 1.0, (n, channels))).astype(np.float32)
    meter = TruePeakMeter()
    block = max(1, round(block_s * RATE))
    got = np.zeros(channels)
    for pos in range(0, n, block):
        got = np.maximum(got, meter.process(x[pos : pos + block], RATE, pos / RATE))
    m = _true_peak_matrix(4, TruePeakMeter.TAPS_PER_PHASE)
    rows = n // _TP_ROW
    want = np.abs(x).max(axis=0).astype(np.float64)
    if rows >= 2:
        grid = x[: rows * _TP_ROW].T.reshape(channels, rows, _TP_ROW)
        pairs = np.concatenate([grid[:, :-1], grid[:, 1:]], axis=2)
        want = np.maximum(want, np.abs(pairs @ m).max(axis=(1, 2)))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(10 ** (meter.true_peak_dbtp / 20), np.maximum(want, 1e-6), rtol=1e-6)


def test_a_meter_that_never_had_audio_holds_no_histogram() -> None:
    # 700 RF-only services at one station once held 225 MB of empty histograms.
    meter = LoudnessMeter()
    assert meter._blocks.count.nbytes == 0 and meter._short_terms.energy.nbytes == 0
    assert math.isnan(meter.integrated_lufs) and math.isnan(meter.loudness_range_lu)
    meter.reset_integrated()
    assert meter._blocks.count.nbytes == 0
