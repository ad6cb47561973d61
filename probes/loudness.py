"""Programme loudness per ITU-R BS.1770-4 / EBU R 128: momentary, short-term, integrated.

Units and conventions
---------------------
* Input blocks follow the audio convention of :mod:`probes.audio`: ``float32``
  ``(frames, channels)``, full scale 1.0, ``rate`` in Hz, ``ts`` = unix seconds of the
  first sample.
* Loudness is in LUFS (= LKFS); differences are in LU. A full-scale 1 kHz sine on one
  channel reads about −3.0 LUFS. Loudness of digital silence is reported as the floor
  :data:`~probes._util.DB_FLOOR` (−120 LUFS); ``NaN`` means *not enough audio yet*.
* K-weighting is the two-biquad cascade of BS.1770 (a high shelf of about +4 dB above
  ~1.5 kHz, then a ~38 Hz high-pass), designed for any sample rate from its analogue
  prototype the way libebur128 does; at 48 kHz it reproduces the coefficients tabulated
  in the Recommendation.
* Channel weights default to BS.1770's for the order L, R, C, Ls, Rs: 1.0, 1.0, 1.0,
  1.41, 1.41. Pass ``channel_weights`` for other layouts (0.0 excludes a channel,
  e.g. LFE).
* Momentary loudness uses a 400 ms window, short-term a 3 s window, both updated every
  100 ms. Integrated loudness gates 400 ms blocks overlapping by 75 % with the absolute
  gate (−70 LUFS) and the relative gate (−10 LU below the absolute-gated loudness).
* Loudness range (LRA) follows EBU Tech 3342: the short-term loudness every 100 ms,
  gated at −70 LUFS and then 20 LU below their power mean; LRA is the spread between
  the 10th and the 95th percentile, in LU.
* True peak (:class:`TruePeakMeter`) follows BS.1770-4 Annex 2: the signal is
  oversampled 4× (2× from 96 kHz) with a linear-phase interpolation filter and the
  largest absolute value is read, in dBTP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from probes import _kernels
from probes._util import DB_FLOOR, BlockContinuity, check_block
from probes.audio import channel_power

#: Most channels the compiled K-weighting pass takes (probes/_kernels.c, SOS_CHANNELS).
_KERNEL_CHANNELS: Final = 64

__all__ = [
    "ABSOLUTE_GATE_LUFS",
    "LRA_RELATIVE_GATE_LU",
    "RELATIVE_GATE_LU",
    "LoudnessMeter",
    "LoudnessUpdate",
    "TruePeakMeter",
    "k_weighting_sos",
]

#: Absolute gate of BS.1770-4 (LUFS).
ABSOLUTE_GATE_LUFS: Final = -70.0
#: Relative gate of BS.1770-4 (LU below the absolute-gated loudness).
RELATIVE_GATE_LU: Final = -10.0
#: Relative gate of the loudness range (EBU Tech 3342; LU below the gated power mean).
LRA_RELATIVE_GATE_LU: Final = -20.0
#: Percentiles of the gated short-term distribution that bound the loudness range.
_LRA_LOW: Final = 0.10
_LRA_HIGH: Final = 0.95
#: The −0.691 dB offset of BS.1770 makes a 997 Hz sine read its RMS level in LUFS.
_OFFSET: Final = -0.691
#: Default channel weights (L, R, C, Ls, Rs).
_DEFAULT_WEIGHTS: Final = (1.0, 1.0, 1.0, 1.41, 1.41)
#: Resolution of the integrated-loudness histogram (LU per bin) and its range (LUFS).
_HIST_STEP: Final = 0.01
_HIST_TOP: Final = 30.0
#: 100 ms steps in a momentary (400 ms) and a short-term (3 s) window.
_MOMENTARY_STEPS: Final = 4
_SHORT_TERM_STEPS: Final = 30


def k_weighting_sos(rate: float) -> NDArray[np.float64]:
    """The BS.1770 K-weighting filter for ``rate`` Hz as second-order sections, shape (2, 6).

    Stage 1 is the high shelf (the acoustic effect of the head), stage 2 the RLB
    high-pass. Both are bilinear transforms of the analogue prototypes fitted to the
    Recommendation's 48 kHz coefficients (as in libebur128), so any rate gets the same
    response.
    """
    if not rate > 0:
        raise ValueError(f"sample rate must be > 0 Hz, got {rate!r}")
    # High shelf: f0 = 1681.97 Hz, gain +4.0 dB, Q = 0.7072.
    f0 = 1681.974450955533
    gain_db = 3.999843853973347
    q = 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / q + k * k) / a0,
    ]
    # High-pass: f0 = 38.14 Hz, Q = 0.5003.
    f0 = 38.13547087602444
    q = 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass], dtype=np.float64)


def _lufs(mean_square: float) -> float:
    """Loudness of a weighted mean square, floored at DB_FLOOR; NaN stays NaN."""
    return float(_lufs_array(np.array([mean_square]))[0])


def _lufs_array(mean_square: NDArray[np.float64]) -> NDArray[np.float64]:
    """Loudness of weighted mean squares, floored at DB_FLOOR; NaN stays NaN."""
    floor = 10.0 ** ((DB_FLOOR - _OFFSET) / 10.0)
    out: NDArray[np.float64] = _OFFSET + 10.0 * np.log10(np.maximum(mean_square, floor))
    return out


class _GatedHistogram:
    """Window loudness values above the absolute gate, in 0.01 LU bins.

    Each bin holds the count and the summed mean squares of its windows, so memory stays
    constant however long the meter runs, and a relative gate is exact except for
    windows within 0.01 LU of it.
    """

    def __init__(self) -> None:
        # Allocated with the first window above the gate (53 kB): a station's meters
        # for services whose audio never comes (RF-only receivers) hold nothing.
        self.count: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.energy: NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        #: whether any complete window was added (gated or not)
        self.seen = False

    def reset(self) -> None:
        self.count[:] = 0
        self.energy[:] = 0.0
        self.seen = False

    def _allocate(self) -> None:
        n_bins = round((_HIST_TOP - ABSOLUTE_GATE_LUFS) / _HIST_STEP)
        self.count = np.zeros(n_bins, dtype=np.int64)
        self.energy = np.zeros(n_bins, dtype=np.float64)

    def add(self, ms: NDArray[np.float64]) -> None:
        """Add windows by their (weighted) mean squares; NaN = window not complete."""
        ms = ms[~np.isnan(ms)]
        if ms.shape[0] == 0:
            return
        self.seen = True
        with np.errstate(divide="ignore"):
            lk = _OFFSET + 10.0 * np.log10(ms)
        keep = lk > ABSOLUTE_GATE_LUFS
        if not keep.any():
            return
        if self.count.shape[0] == 0:
            self._allocate()
        bins = ((lk[keep] - ABSOLUTE_GATE_LUFS) / _HIST_STEP).astype(np.int64)
        idx = np.minimum(bins, self.count.shape[0] - 1)
        np.add.at(self.count, idx, 1)
        np.add.at(self.energy, idx, ms[keep])

    def above_relative_gate(self, gate_lu: float) -> int | None:
        """First bin above ``gate_lu`` below the power mean of what passed the absolute
        gate (bins whose centre lies above the gate); None when nothing passed it."""
        count = int(self.count.sum())
        if count == 0:
            return None
        gate = _lufs(float(self.energy.sum()) / count) + gate_lu
        return max(0, math.ceil((gate - ABSOLUTE_GATE_LUFS) / _HIST_STEP - 0.5))


@dataclass(frozen=True, slots=True)
class LoudnessUpdate:
    """Loudness after one block.

    ``step_end`` holds the end time (unix s) of each 100 ms step completed in the block,
    and ``momentary`` / ``short_term`` the loudness of the 400 ms / 3 s window ending
    there (NaN while the window is not yet full since the start or the last gap). The
    scalar fields are the latest values.
    """

    step_end: NDArray[np.float64]
    momentary: NDArray[np.float64]
    short_term: NDArray[np.float64]
    momentary_lufs: float
    short_term_lufs: float
    integrated_lufs: float
    #: whether this block followed the previous one without a gap
    contiguous: bool


class LoudnessMeter:
    """Streaming BS.1770-4 loudness meter for one target.

    The K-weighting filter state is kept across blocks, so the result does not depend
    on how the audio is cut into blocks. A gap in the input (see
    :class:`~probes._util.BlockContinuity`) or a change of rate or channel count resets
    the filters and the momentary/short-term windows (they read NaN until refilled);
    integrated loudness keeps accumulating over the audio actually received.

    Integrated loudness uses a histogram of gating-block loudness (0.01 LU bins holding
    the count and the summed energy of their blocks), so memory stays constant however
    long the meter runs; the result is exact except for blocks within 0.01 LU of the
    relative gate. Call :meth:`reset_integrated` to start a new programme period.
    """

    def __init__(
        self,
        *,
        channel_weights: Sequence[float] | None = None,
        gap_tolerance_s: float = 0.1,
    ) -> None:
        self._weights_arg = None if channel_weights is None else tuple(channel_weights)
        self._continuity = BlockContinuity(gap_tolerance_s)
        self._rate = 0
        self._channels = 0
        self._weights = np.zeros(0)
        self._sos = np.zeros((2, 6))
        self._step = 0
        # 400 ms gating blocks (integrated loudness) and 3 s windows (loudness range).
        self._blocks = _GatedHistogram()
        self._short_terms = _GatedHistogram()
        self._reset_stream()

    # -- configuration and state

    def _configure(self, rate: int, channels: int) -> None:
        if self._weights_arg is None:
            if channels > len(_DEFAULT_WEIGHTS):
                raise ValueError(
                    f"{channels}-channel audio needs explicit channel_weights "
                    f"(defaults cover L, R, C, Ls, Rs)"
                )
            weights = _DEFAULT_WEIGHTS[:channels]
        else:
            if len(self._weights_arg) != channels:
                raise ValueError(
                    f"{len(self._weights_arg)} channel weights configured for {channels}-channel audio"
                )
            weights = self._weights_arg
        self._rate = rate
        self._channels = channels
        self._weights = np.asarray(weights, dtype=np.float64)
        self._sos = np.ascontiguousarray(k_weighting_sos(rate))
        # Samples per 100 ms step, rounded as libebur128 does.
        self._step = (rate + 5) // 10

    def _reset_stream(self) -> None:
        self._zi = np.zeros((2, max(self._channels, 1), 2))  # (sections, channels, state)
        self._partial_sum = 0.0
        self._partial_len = 0
        # Energy (Σ weighted y²) of the most recent 100 ms steps, oldest first.
        self._steps = np.zeros(0)
        self._momentary = math.nan
        self._short_term = math.nan

    def reset_integrated(self) -> None:
        """Forget what integrated loudness and loudness range accumulated (a new programme)."""
        self._blocks.reset()
        self._short_terms.reset()

    def interrupt(self) -> None:
        """Declare the input interrupted: the next block starts afresh (filters reset)."""
        self._continuity.reset()
        self._reset_stream()

    # -- results

    @property
    def momentary_lufs(self) -> float:
        """Loudness of the last 400 ms (NaN until 400 ms of contiguous audio)."""
        return self._momentary

    @property
    def short_term_lufs(self) -> float:
        """Loudness of the last 3 s (NaN until 3 s of contiguous audio)."""
        return self._short_term

    @property
    def integrated_lufs(self) -> float:
        """Gated integrated loudness since start or :meth:`reset_integrated`.

        NaN before the first complete gating block; the floor (−120 LUFS) when every
        block so far was below the absolute gate.
        """
        blocks = self._blocks
        first = blocks.above_relative_gate(RELATIVE_GATE_LU)
        if first is None:
            return DB_FLOOR if blocks.seen else math.nan
        n = int(blocks.count[first:].sum())
        if n == 0:
            return DB_FLOOR
        return _lufs(float(blocks.energy[first:].sum()) / n)

    @property
    def loudness_range_lu(self) -> float:
        """Loudness range (EBU Tech 3342, LU) since start or :meth:`reset_integrated`.

        NaN before the first complete 3 s window; 0.0 when every window so far was below
        the absolute gate. Exact to the histogram's 0.01 LU.
        """
        windows = self._short_terms
        first = windows.above_relative_gate(LRA_RELATIVE_GATE_LU)
        if first is None:
            return 0.0 if windows.seen else math.nan
        counts = windows.count[first:]
        n = int(counts.sum())
        if n == 0:
            return 0.0
        # Percentiles as libebur128 takes them: the value at rank round((n − 1)·p).
        cumulative = np.cumsum(counts)
        low = int(np.searchsorted(cumulative, int((n - 1) * _LRA_LOW + 0.5) + 1))
        high = int(np.searchsorted(cumulative, int((n - 1) * _LRA_HIGH + 0.5) + 1))
        return (high - low) * _HIST_STEP

    # -- processing

    def process(self, samples: NDArray[np.floating], rate: int, ts: float) -> LoudnessUpdate:
        """Feed one block of ``(frames, channels)`` audio whose first sample is at ``ts``."""
        check_block(samples, rate)
        n, c = samples.shape
        if n == 0:
            raise ValueError("empty audio block")
        contiguous = self._continuity.advance(ts, n, rate) and c == self._channels
        if not contiguous:
            if rate != self._rate or c != self._channels:
                self._configure(rate, c)
            self._reset_stream()

        if c <= _KERNEL_CHANNELS:
            # K-weighting, squares and the weighted Σ over channels in one pass of the
            # compiled kernel over the interleaved block (the same recurrence as sosfilt).
            power = np.empty(n)
            _kernels.sos_power(np.ascontiguousarray(samples), self._sos, self._zi, self._weights, power)
        else:
            # sosfilt filters a float64, time-contiguous copy of its input, which it
            # returns: handing it the transposed view makes that the only copy.
            import scipy.signal  # only here: a second to import

            y, self._zi = scipy.signal.sosfilt(self._sos, samples.T, axis=-1, zi=self._zi)
            np.square(y, out=y)
            power = self._weights @ y  # weighted Σ over channels, per sample

        step = self._step
        head = min(step - self._partial_len, n) if self._partial_len else 0
        sums: list[NDArray[np.float64]] = []
        if head:
            self._partial_sum += float(power[:head].sum())
            self._partial_len += head
            if self._partial_len == step:
                sums.append(np.array([self._partial_sum]))
                self._partial_len = 0
                self._partial_sum = 0.0
        m = (n - head) // step
        body_end = head + m * step
        if m:
            sums.append(power[head:body_end].reshape(m, step).sum(axis=1))
        if body_end < n:
            self._partial_sum += float(power[body_end:].sum())
            self._partial_len += n - body_end

        new = np.concatenate(sums) if sums else np.zeros(0)
        k = new.shape[0]
        step_end = self._step_ends(ts, head, k, rate)
        momentary = np.full(k, np.nan)
        short_term = np.full(k, np.nan)
        if k:
            hist = np.concatenate([self._steps, new])
            # The 400 ms windows are also the gating blocks of integrated loudness, the
            # 3 s windows the short-term values of the loudness range.
            momentary_ms = self._window_energy(hist, k, _MOMENTARY_STEPS)
            short_term_ms = self._window_energy(hist, k, _SHORT_TERM_STEPS)
            momentary = _lufs_array(momentary_ms)
            short_term = _lufs_array(short_term_ms)
            self._blocks.add(momentary_ms)
            self._short_terms.add(short_term_ms)
            self._steps = hist[-(_SHORT_TERM_STEPS - 1) :]
            self._momentary = float(momentary[-1])
            self._short_term = float(short_term[-1])
        return LoudnessUpdate(
            step_end=step_end,
            momentary=momentary,
            short_term=short_term,
            momentary_lufs=self._momentary,
            short_term_lufs=self._short_term,
            integrated_lufs=self.integrated_lufs,
            contiguous=contiguous,
        )

    def _step_ends(self, ts: float, head: int, k: int, rate: int) -> NDArray[np.float64]:
        """End times of the ``k`` steps completed in a block starting at ``ts``."""
        if k == 0:
            return np.zeros(0)
        # The first completed step ends after `head` samples if a carried partial step
        # was completed, else after one full step; the others follow every step.
        first = head if head else self._step
        offsets = first + self._step * np.arange(k, dtype=np.float64)
        out: NDArray[np.float64] = ts + offsets / rate
        return out

    def _window_energy(self, hist: NDArray[np.float64], k: int, width: int) -> NDArray[np.float64]:
        """Mean square of the ``width``-step windows ending at each of the last ``k`` steps.

        NaN where the window reaches back before the start (or the last gap). Windows are
        summed directly, not as differences of a running sum, so a silent window after
        loud programme reads exactly zero.
        """
        out = np.full(k, np.nan)
        n = hist.shape[0]
        full = min(k, n - width + 1)  # windows that fit, the latest ones
        if full > 0:
            windows = np.lib.stride_tricks.sliding_window_view(hist[n - full - width + 1 :], width)
            out[k - full :] = windows.sum(axis=1) / (width * self._step)
        return out


# --------------------------------------------------------------------------- true peak


#: Rows of the blocked-Toeplitz product that computes the interpolated points (below).
_TP_ROW: Final = 16


def _firwin_kaiser(numtaps: int, cutoff: float, beta: float) -> NDArray[np.float64]:
    """``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))`` (a windowed-sinc
    low-pass, unit gain at DC) in numpy: scipy.signal takes a second to import."""
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    out: NDArray[np.float64] = h / h.sum()
    return out


def _true_peak_matrix(factor: int, taps: int) -> NDArray[np.float32]:
    """The ``factor − 1`` interpolation sub-filters as one ``(2·B, (factor − 1)·B)`` matrix.

    One linear-phase Kaiser-windowed low-pass of ``factor·taps + 1`` taps cut at the
    input's Nyquist frequency is split into its polyphase components; the one through the
    samples themselves is (to 2·10⁻⁵) the identity and is not computed: the samples are
    read directly. With the signal cut into rows of ``B`` samples, the ``taps``-sample
    window starting at offset ``r`` of a row lies in that row and the next, so pairs of
    rows times this banded matrix give every interpolated point in one BLAS product
    (column ``p·B + r`` = sub-filter ``p`` at offset ``r``).
    """
    h = _firwin_kaiser(factor * taps + 1, 1.0 / factor, 8.0) * factor
    b = _TP_ROW
    m = np.zeros((2 * b, (factor - 1) * b), dtype=np.float32)
    for p in range(1, factor):
        g = h[p::factor]
        for r in range(b):
            m[r : r + taps, (p - 1) * b + r] = g
    return m


class TruePeakMeter:
    """Streaming true-peak meter (BS.1770-4 Annex 2), per channel, in dBTP.

    The signal is oversampled 4× below 96 kHz, 2× below 192 kHz, else not at all, with
    a 12-taps-per-phase linear-phase interpolation filter (BS.1770-4's own is 12 per
    phase too). Every interpolated point is computed from received samples only, on a
    grid that runs on across blocks (the frames not yet covered are carried into the
    next block), so the result does not depend on how the audio is cut; the points of
    the last few dozen samples before a gap or the end are not computed (their samples
    still count). Up to 20 kHz it under-reads by at most 0.3 dB (4× oversampling alone
    allows up to 0.69 dB, per the Recommendation). A gap (see
    :class:`~probes._util.BlockContinuity`) or a change of rate or layout drops the
    carried frames. :attr:`true_peak_dbtp` is the maximum since start or :meth:`reset`.
    """

    TAPS_PER_PHASE: Final = 12

    def __init__(self, *, gap_tolerance_s: float = 0.1) -> None:
        self._continuity = BlockContinuity(gap_tolerance_s)
        self._rate = 0
        self._channels = 0
        self._matrix: NDArray[np.float32] | None = None
        self._gain = 0.0
        self._tail = np.zeros((0, 0), dtype=np.float32)
        self._peak = np.zeros(0)

    @property
    def true_peak_dbtp(self) -> NDArray[np.float64]:
        """Per-channel true peak (dBTP, floored at −120) so far; empty before any audio."""
        out: NDArray[np.float64] = 20.0 * np.log10(np.maximum(self._peak, 10.0 ** (DB_FLOOR / 20.0)))
        return out

    def reset(self) -> None:
        """Start a new measurement period (the carried frames stay: they are audio)."""
        self._peak = np.zeros(self._channels)

    def process(self, samples: NDArray[np.floating], rate: int, ts: float) -> NDArray[np.float64]:
        """Feed one block; returns the block's per-channel true peak (linear, full scale 1.0)."""
        check_block(samples, rate)
        n, c = samples.shape
        if n == 0:
            raise ValueError("empty audio block")
        contiguous = self._continuity.advance(ts, n, rate) and c == self._channels and rate == self._rate
        if not contiguous:
            if rate != self._rate or c != self._channels:
                self._rate, self._channels = rate, c
                factor = 4 if rate < 96_000 else 2 if rate < 192_000 else 1
                self._matrix = _true_peak_matrix(factor, self.TAPS_PER_PHASE) if factor > 1 else None
                # the most any interpolated point can exceed its samples' peak by (Σ|h|
                # of the largest sub-filter), rounded up to cover float32 rounding
                self._gain = (
                    float(np.abs(self._matrix).sum(axis=0).max()) * (1 + 1e-5)
                    if self._matrix is not None
                    else 0.0
                )
                self._peak = np.zeros(c)
            self._tail = np.zeros((0, c), dtype=np.float32)
        block = np.sqrt(channel_power(samples)[1])  # the sample peak, per channel
        if self._matrix is not None:
            # Channels as rows: (c, frames), the carried frames first.
            x = np.concatenate([self._tail.T, samples.T.astype(np.float32)], axis=1)
            b = _TP_ROW
            rows = x.shape[1] // b
            if rows >= 2:
                grid = x[:, : rows * b].reshape(c, rows, b)
                # An interpolated point is a weighted sum of the samples of a pair of
                # rows: it is at most the pair's sample peak times the sub-filter's
                # Σ|h|. Only the pairs where that bound exceeds the block's sample peak
                # can raise its peak; the others are not computed (exact, not an
                # approximation: on programme audio, most of them).
                # (numpy reduces a short last axis slowly: a transposed copy reduces fast)
                row_peak = np.abs(grid).transpose(0, 2, 1).copy().max(axis=1)
                pair_peak = np.maximum(row_peak[:, :-1], row_peak[:, 1:])
                gain = self._gain
                for ch in range(c):
                    rows_ch = np.flatnonzero(pair_peak[ch] * gain > block[ch])
                    if rows_ch.size:
                        pairs = np.concatenate([grid[ch, rows_ch], grid[ch, rows_ch + 1]], axis=1)
                        points = pairs @ self._matrix
                        block[ch] = max(block[ch], float(points.max()), -float(points.min()))
                x = x[:, (rows - 1) * b :]
            self._tail = np.ascontiguousarray(x.T)
        self._peak = np.maximum(self._peak, block)
        out: NDArray[np.float64] = block
        return out
