"""Audio measurement kernels: levels, silence, hiss, stuck tone, clipping, DC, stereo checks.

Units and conventions
---------------------
* A block is ``samples``: ``float32`` array of shape ``(frames, channels)``, full scale
  1.0 (int16 / 32768); ``rate`` in Hz; ``ts`` = unix seconds of the first sample.
  ``float64`` blocks are accepted too; other dtypes are converted to ``float32``.
  C-contiguous input (what the wire decoder produces) is the fast path. The level and
  silence kernels (:func:`rms_dbfs`, :func:`peak_dbfs`, :func:`block_levels`,
  :func:`frame_rms_dbfs`, :class:`SilenceDetector`) also take the wire's int16 L16
  samples as they are (``np.frombuffer(payload, ">i2")`` or ``"<i2"``, reshaped):
  the compiled kernel reads them in either byte order, full scale 32768, with no
  float32 copy.
* **dBFS** is referenced to a full-scale *sample value*: RMS dBFS = ``10·log10(mean(x²))``,
  peak dBFS = ``20·log10(max|x|)``. A full-scale sine therefore reads −3.01 dBFS RMS and
  0 dBFS peak (this is *not* the AES17 convention, which adds 3.01 dB to RMS values).
* Digital silence (−inf dB) is reported as the floor :data:`DB_FLOOR` (−120 dBFS);
  ``NaN`` means undefined (e.g. the correlation of two silent channels), never silence.
* Every per-channel function works on any number of columns: to process many targets
  whose blocks are time-aligned, stack their channels as columns of one array.
* Streaming detectors (:class:`SilenceDetector`, :class:`HissDetector`,
  :class:`StuckToneDetector`) take one target's blocks in time order. A block that does
  not start where the previous one ended (beyond ``gap_tolerance_s``) is a *gap*: the
  verdict becomes UNKNOWN and nothing is carried across the missing data.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from probes import _kernels
from probes._util import (
    DB_FLOOR,
    BlockContinuity,
    Debounced,
    Debouncer,
    DetectionState,
    check_block,
    power_db,
)

__all__ = [
    "DB_FLOOR",
    "BlockLevels",
    "DetectionState",
    "HissDetector",
    "HissUpdate",
    "SilenceDetector",
    "SilenceEnd",
    "SilenceInterval",
    "SilenceUpdate",
    "SpectralFeatures",
    "StuckToneDetector",
    "ToneUpdate",
    "block_levels",
    "channel_correlation",
    "clipping_ratio",
    "dc_offset",
    "frame_rms_dbfs",
    "level_imbalance_db",
    "peak_dbfs",
    "rms_dbfs",
    "spectral_features",
]

#: Frames per row in the wide per-column sums of :func:`dc_offset`.
_WIDE: Final = 4096

Float = np.float32 | np.float64
#: A block for the level and silence kernels: float, or the wire's int16 in either byte order.
Samples = NDArray[np.floating] | NDArray[np.int16]


# --------------------------------------------------------------------------- block kernels


def _prepare(samples: NDArray[np.floating]) -> NDArray[Float]:
    """Validate a block and return a C-contiguous float32/float64 view (or copy) of it."""
    check_block(samples)
    native = samples.dtype == np.float32 or samples.dtype == np.float64
    x: NDArray[Float] = samples if native else samples.astype(np.float32)
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    return x


def _prepare_kernel(samples: Samples) -> NDArray[Float | np.int16]:
    """Like :func:`_prepare`, but int16 blocks (either byte order) pass as they are.

    Only for the functions whose one use of the samples is :func:`_frame_stats`.
    """
    if isinstance(samples, np.ndarray) and samples.dtype.kind == "i" and samples.dtype.itemsize == 2:
        if samples.ndim != 2 or samples.shape[1] < 1:
            check_block(samples.astype(np.float32))  # the same errors as for float blocks
        x: NDArray[np.int16] = np.ascontiguousarray(samples)  # no copy when already contiguous
        return x
    return _prepare(samples)  # type: ignore[arg-type]


def _frame_stats(
    x: NDArray[Float | np.int16], head: int, frame_len: int, floor_power: float | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-segment ``Σx²`` and the block's ``Σx²`` and peak power, per channel, in one pass.

    ``x`` is C-contiguous ``(n, channels)``. Returns ``(sums, totals)``: rows of ``sums``
    are 0 = the first ``head`` frames, 1…m = the ``m = (n − head) // frame_len`` whole
    frames that follow, m + 1 = the remainder; ``totals[0]`` is the whole block's ``Σx²``
    and ``totals[1]`` its peak power ``max x²``. The compiled kernel
    (``probes/_kernels.c``) reads each sample once, where numpy needs a pass per
    statistic and strided passes to split the channels. With ``floor_power``, ``totals``
    are the block's levels instead: RMS and peak in dBFS, each power floored there first.
    """
    n, c = x.shape
    sums = np.empty(((n - head) // frame_len + 2, c))
    totals = np.empty((2, c))
    if floor_power is None:
        _kernels.frame_stats(x, c, head, frame_len, sums, totals)
    else:
        _kernels.frame_stats(x, c, head, frame_len, sums, totals, floor_power)
    return sums, totals


def _channel_stats(x: NDArray[Float | np.int16]) -> NDArray[np.float64]:
    """``[Σx², max x²]`` per channel of a C-contiguous ``(frames, channels)`` block."""
    return _frame_stats(x, x.shape[0], 1)[1]


def channel_power(samples: Samples) -> NDArray[np.float64]:
    """``[Σx², max x²]`` per channel, shape ``(2, channels)``, in one pass of the kernel.

    (numpy's ``abs(x).max(axis=0)`` on a ``(frames, 2)`` block is a strided reduction some
    20× slower than this whole pass.)
    """
    x = _prepare_kernel(samples)
    return _channel_stats(x)


@dataclass(frozen=True, slots=True)
class BlockLevels:
    """Per-channel levels of one block, in dBFS (floored at :data:`DB_FLOOR`)."""

    rms_dbfs: NDArray[np.float64]
    peak_dbfs: NDArray[np.float64]


def rms_dbfs(samples: Samples, floor_db: float = DB_FLOOR) -> NDArray[np.float64]:
    """Per-channel RMS level in dBFS, shape ``(channels,)``; full-scale sine = −3.01 dBFS."""
    return block_levels(samples, floor_db).rms_dbfs


def peak_dbfs(samples: Samples, floor_db: float = DB_FLOOR) -> NDArray[np.float64]:
    """Per-channel sample-peak level in dBFS, shape ``(channels,)`` (not true-peak)."""
    return block_levels(samples, floor_db).peak_dbfs


def block_levels(samples: Samples, floor_db: float = DB_FLOOR) -> BlockLevels:
    """Per-channel RMS and peak dBFS of a block (see :func:`rms_dbfs`, :func:`peak_dbfs`).

    The kernel finishes the levels (floor, ``10·log10``) itself, the same code the
    :class:`SilenceDetector` uses, so a block's levels do not depend on which path asked
    (numpy's vectorised ``log10`` and the C library's may differ in the last bit).
    """
    x = _prepare_kernel(samples)
    if x.shape[0] == 0:
        raise ValueError("empty audio block")
    db = _frame_stats(x, x.shape[0], 1, 10.0 ** (floor_db / 10.0))[1]
    return BlockLevels(rms_dbfs=db[0], peak_dbfs=db[1])


def frame_rms_dbfs(samples: Samples, frame_len: int, floor_db: float = DB_FLOOR) -> NDArray[np.float64]:
    """RMS dBFS of consecutive frames of ``frame_len`` samples, shape ``(n_frames, channels)``.

    A trailing partial frame is ignored.
    """
    x = _prepare_kernel(samples)
    if frame_len < 1:
        raise ValueError(f"frame length must be >= 1 sample, got {frame_len}")
    sums, _ = _frame_stats(x, 0, frame_len)
    return power_db(sums[1:-1] / frame_len, floor_db)


def clipping_ratio(samples: NDArray[np.floating], threshold: float = 0.999) -> NDArray[np.float64]:
    """Per-channel share (0…1) of samples with ``|x| ≥ threshold`` (full scale 1.0).

    int16 full scale is −1.0 … +0.99997; the default 0.999 (−0.009 dBFS) catches samples
    pinned at either rail. Empty blocks give NaN.
    """
    x = _prepare(samples)
    if not threshold > 0.0:
        raise ValueError(f"clipping threshold must be > 0, got {threshold!r}")
    n = x.shape[0]
    if n == 0:
        return np.full(x.shape[1], np.nan)
    hit = np.abs(x) >= threshold
    counts = np.array([np.count_nonzero(hit[:, k]) for k in range(x.shape[1])], dtype=np.float64)
    ratio: NDArray[np.float64] = counts / n
    return ratio


def dc_offset(samples: NDArray[np.floating]) -> NDArray[np.float64]:
    """Per-channel mean (DC offset) in full-scale units (1.0 = full scale); empty → NaN."""
    x = _prepare(samples)
    n, c = x.shape
    if n == 0:
        return np.full(c, np.nan)
    v = x.reshape(-1)
    width = _WIDE * c
    rows = v.shape[0] // width
    row = np.zeros(width)
    if rows:
        row += np.add.reduce(v[: rows * width].reshape(rows, width), axis=0, dtype=np.float64)
    rest = v[rows * width :]
    row[: rest.shape[0]] += rest
    out: NDArray[np.float64] = np.array([row[k::c].sum() for k in range(c)]) / n
    return out


def _pairs(
    x: NDArray[Float], left: int | Sequence[int], right: int | Sequence[int]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    a = np.atleast_1d(np.asarray(left, dtype=np.intp))
    b = np.atleast_1d(np.asarray(right, dtype=np.intp))
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"left and right must be equal-length channel lists: {a} vs {b}")
    c = x.shape[1]
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= c):
        raise ValueError(f"channel index out of range for a {c}-channel block")
    return a, b


def level_imbalance_db(
    samples: NDArray[np.floating],
    left: int | Sequence[int] = 0,
    right: int | Sequence[int] = 1,
    floor_db: float = DB_FLOOR,
) -> NDArray[np.float64]:
    """RMS level of ``left`` minus RMS level of ``right``, in dB, one value per pair.

    Positive = left louder. Both levels are floored at ``floor_db`` first, so a dead
    channel gives a large finite imbalance rather than ±inf. Pass index lists to check
    several pairs (e.g. several stereo targets stacked as columns) at once.
    """
    x = _prepare(samples)
    a, b = _pairs(x, left, right)
    if x.shape[0] == 0:
        raise ValueError("empty audio block")
    levels = power_db(_channel_stats(x)[0] / x.shape[0], floor_db)
    out: NDArray[np.float64] = levels[a] - levels[b]
    return out


def channel_correlation(
    samples: NDArray[np.floating],
    left: int | Sequence[int] = 0,
    right: int | Sequence[int] = 1,
) -> NDArray[np.float64]:
    """Phase correlation ``ΣLR / √(ΣL²·ΣR²)`` per channel pair, in [−1, 1].

    This is the correlation (phase) meter of broadcast practice: no mean is removed.
    +1 = identical channels (mono on stereo), −1 = one channel polarity-inverted,
    ≈0 = unrelated channels. NaN when either channel is digitally silent.
    """
    x = _prepare(samples)
    a, b = _pairs(x, left, right)
    energy = _channel_stats(x)[0]
    cross = np.array([float(np.dot(x[:, i], x[:, j])) for i, j in zip(a, b, strict=True)])
    denom = np.sqrt(energy[a] * energy[b])
    safe = np.where(denom > 0.0, denom, 1.0)
    r = np.where(denom > 0.0, cross / safe, np.nan)
    out: NDArray[np.float64] = np.clip(r, -1.0, 1.0)
    return out


# --------------------------------------------------------------------------- silence


class SilenceEnd(enum.Enum):
    """Why a silence interval ended."""

    #: programme came back (see :class:`SilenceDetector`); ``end`` is where it resumed
    AUDIO = "audio"
    #: the input had a gap (or :meth:`SilenceDetector.interrupt` was called): the
    #: silence lasted at least until ``end``; what happened after is unknown
    GAP = "gap"
    #: still silent; ``end`` is the end of the audio evaluated so far
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class SilenceInterval:
    """One silence, ``[start, end)`` in unix seconds, at frame resolution."""

    start: float
    end: float
    ended_by: SilenceEnd

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class SilenceUpdate:
    """What :meth:`SilenceDetector.process` learned from one block."""

    #: ACTIVE = silent, CLEAR = programme present, UNKNOWN = not enough contiguous audio
    state: DetectionState
    #: silences that ended in (or just before) this block, oldest first
    closed: tuple[SilenceInterval, ...]
    #: the silence in progress, if any (``ended_by`` is OPEN)
    open: SilenceInterval | None
    #: start of what will change the state if it goes on (a quiet run while CLEAR; the
    #: first loud frame of the window that may confirm programme while ACTIVE; either
    #: while UNKNOWN, the quiet run first), else None
    pending_since: float | None
    #: end of the last complete frame evaluated (unix s), None if none yet
    evaluated_until: float | None
    #: per-channel levels of this block, computed in the same pass
    levels: BlockLevels


def _first_completion(mask: NDArray[np.bool_], carried: int, need: int) -> tuple[int, int]:
    """Find where a run of True frames first reaches ``need`` frames.

    ``carried`` True frames precede index 0 (``carried < need``). Returns
    ``(j, trailing)``: ``j`` is the first index at which the run ending there is ``need``
    frames long, or −1; ``trailing`` is the length of the run of True at the end of
    ``mask``, carried frames included (meaningful only when ``j`` is −1).
    """
    m = mask.shape[0]
    if m == 0:
        return -1, carried
    if not mask[mask.argmax()]:  # no True at all (argmax: the cheapest test for small masks)
        return -1, 0
    first_false = int(mask.argmin())
    if mask[first_false]:  # all True
        j = max(need - carried - 1, 0)
        return (j, 0) if j < m else (-1, carried + m)
    if first_false + carried >= need:  # completes in the leading run
        return max(need - carried - 1, 0), 0
    idx = np.arange(1, m + 1)
    last_false = np.maximum.accumulate(np.where(mask, 0, idx))
    run = idx - last_false
    hit = np.flatnonzero(run >= need)
    if hit.size:
        return int(hit[0]), 0
    return -1, int(run[-1])


class SilenceDetector:
    """Streaming silence (audio loss) detector with level and time hysteresis.

    The block is cut into frames of ``frame_s`` (default 50 ms) that run on across
    block boundaries. A frame's level is the RMS dBFS of its *loudest* channel, so a
    frame is silent only if every channel is. Frames are *quiet* below ``on_dbfs`` and
    *loud* at or above ``off_dbfs`` (``off_dbfs ≥ on_dbfs``; in between is the
    hysteresis band).

    * CLEAR → ACTIVE (silence) when quiet frames run for ``on_s``; the silence starts
      at the first of those frames (where the level dropped).
    * ACTIVE → CLEAR when programme is confirmed: a window of ``off_s`` that begins on
      a loud frame holds at least ``programme_ratio`` (default half) loud frames. This is
      the level integrated over the window, as a listener or a hardware silence monitor
      hears it: speech, with its word and breath pauses, never stays loud for seconds
      on end, but is loud most of the time. The silence ends at the window's first loud
      frame, where programme resumed (the confirmation time is not part of the
      interval), and is emitted as a closed interval when the window is complete, i.e.
      ``off_s`` after programme resumed. A quiet run at the end of the window goes on
      counting towards the next silence. ``programme_ratio=1`` asks for an unbroken run
      of loud frames (the behaviour before issue #11).
    * UNKNOWN (at start and after a gap) → ACTIVE as above; → CLEAR by the same window
      rule with non-quiet frames (≥ ``on_dbfs``) in place of loud ones.
    * A gap (``ts`` off the expected time by more than ``gap_tolerance_s``, or a change of
      rate or channel count) ends an open silence at the end of the last evaluated frame
      with ``ended_by=GAP`` and returns to UNKNOWN: a silence is never extended across
      missing data, and a gap is never taken as programme.

    Frame times are exact to the sample: each frame's start is its block's ``ts`` plus
    its sample offset (a frame straddling two blocks starts in the first), so small
    sender clock drift does not accumulate. Durations are counted in whole frames,
    ``on_s`` and ``off_s`` rounded up.

    Each :meth:`process` also returns the block's per-channel RMS levels (summed from the
    frame energies at no extra cost) and peak levels. Defaults (−40 dBFS for 10 s on, −30 dBFS
    for 5 s off) follow common broadcast-monitor practice; ffmpeg ``silencedetect``
    uses −60 dB for 2 s.
    """

    def __init__(
        self,
        *,
        on_dbfs: float = -40.0,
        off_dbfs: float = -30.0,
        on_s: float = 10.0,
        off_s: float = 5.0,
        programme_ratio: float = 0.5,
        frame_s: float = 0.05,
        gap_tolerance_s: float = 0.1,
        floor_db: float = DB_FLOOR,
    ) -> None:
        if not off_dbfs >= on_dbfs:
            raise ValueError(f"off threshold ({off_dbfs} dBFS) must be >= on threshold ({on_dbfs} dBFS)")
        if not (on_s > 0.0 and off_s > 0.0):
            raise ValueError(f"durations must be > 0 s, got on={on_s!r} off={off_s!r}")
        if not frame_s > 0.0:
            raise ValueError(f"frame duration must be > 0 s, got {frame_s!r}")
        if not 0.0 < programme_ratio <= 1.0:
            raise ValueError(f"programme ratio must be in (0, 1], got {programme_ratio!r}")
        self.programme_ratio = float(programme_ratio)
        self.on_dbfs = float(on_dbfs)
        self.off_dbfs = float(off_dbfs)
        self.on_s = float(on_s)
        self.off_s = float(off_s)
        self.frame_s = float(frame_s)
        self.floor_db = float(floor_db)
        self._floor_power = 10.0 ** (self.floor_db / 10.0)
        self._continuity = BlockContinuity(gap_tolerance_s)
        self._configure(48000, 1)
        self._reset_stream()

    # -- configuration per sample rate and channel count

    def _configure(self, rate: int, channels: int) -> None:
        self._rate = rate
        self._channels = channels
        self._frame_len = max(1, round(self.frame_s * rate))
        frame_dur = self._frame_len / rate
        self._on_frames = max(1, math.ceil(self.on_s / frame_dur - 1e-9))
        self._off_frames = max(1, math.ceil(self.off_s / frame_dur - 1e-9))
        self._programme_frames = max(1, math.ceil(self.programme_ratio * self._off_frames - 1e-9))
        # Frames are scored by their loudest channel's energy (sum of squares).
        self._quiet_below = self._frame_len * 10.0 ** (self.on_dbfs / 10.0)
        self._loud_from = self._frame_len * 10.0 ** (self.off_dbfs / 10.0)

    def _reset_stream(self) -> None:
        self._state = DetectionState.UNKNOWN
        self._open_start: float | None = None
        self._run_len = 0
        self._run_start = 0.0
        # While ACTIVE or UNKNOWN: the last frames (< off_s, from the first hot one) that
        # may begin a window of programme, whether hot and quiet, and their start times.
        self._forget_window()
        self._partial_len = 0
        self._partial_start = 0.0
        self._partial_energy = np.zeros(self._channels)
        self._evaluated_until: float | None = None
        # Start times of this block's frames: frame i starts at
        # _ts + (_head + (i − _i0)·fl) / rate, except frame 0 when it is the carried
        # partial frame (_i0 == 1), which started in an earlier block at _carried_start.
        self._i0 = 0
        self._carried_start = 0.0
        self._ts = 0.0
        self._head = 0

    # -- public API

    @property
    def state(self) -> DetectionState:
        """Current verdict (ACTIVE = silent)."""
        return self._state

    @property
    def open_interval(self) -> SilenceInterval | None:
        """The silence in progress, ``ended_by=OPEN``, or None."""
        if self._open_start is None or self._evaluated_until is None:
            return None
        return SilenceInterval(self._open_start, self._evaluated_until, SilenceEnd.OPEN)

    def interrupt(self) -> tuple[SilenceInterval, ...]:
        """Declare the input interrupted (e.g. the stream went stale) and return to UNKNOWN.

        An open silence is closed with ``ended_by=GAP`` at the end of the last evaluated
        frame and returned. The next block starts afresh whatever its time stamp.
        """
        closed: tuple[SilenceInterval, ...] = ()
        if self._open_start is not None and self._evaluated_until is not None:
            closed = (SilenceInterval(self._open_start, self._evaluated_until, SilenceEnd.GAP),)
        self._continuity.reset()
        self._reset_stream()
        return closed

    def process(self, samples: Samples, rate: int, ts: float) -> SilenceUpdate:
        """Feed one block (``(frames, channels)``, full scale 1.0) whose first sample is at ``ts``."""
        x = _prepare_kernel(samples)
        if not (isinstance(rate, _RATE_TYPES) and rate > 0):
            raise ValueError(f"sample rate must be a positive integer, got {rate!r}")
        n, c = x.shape
        if n == 0:
            raise ValueError("empty audio block")
        closed: tuple[SilenceInterval, ...] = ()
        if not (self._continuity.advance(ts, n, rate) and c == self._channels):
            closed = self.interrupt()
            self._continuity.advance(ts, n, rate)
            if rate != self._rate or c != self._channels:
                self._configure(rate, c)
                self._reset_stream()

        fl = self._frame_len
        # Frames completed in this block: the carried partial frame (if completed here),
        # then whole frames; a trailing remainder is carried to the next block.
        head = min(fl - self._partial_len, n) if self._partial_len else 0
        sums, db = _frame_stats(x, head, fl, self._floor_power)
        m = sums.shape[0] - 2
        scores: NDArray[np.float64] | None = None
        self._i0 = 0
        if head:
            self._partial_energy = self._partial_energy + sums[0]
            self._partial_len += head
            if self._partial_len == fl:
                self._partial_len = 0
                self._i0 = 1
                self._carried_start = self._partial_start
                scores = np.array([self._partial_energy.max()])
        if m:
            # A frame's score is its loudest channel's energy.
            if c == 1:
                body_scores = sums[1:-1, 0]
            elif c == 2:
                body_scores = np.maximum(sums[1:-1, 0], sums[1:-1, 1])
            else:
                body_scores = sums[1:-1].max(axis=1)
            scores = body_scores if scores is None else np.concatenate([scores, body_scores])
        body_end = head + m * fl
        if body_end < n:
            if self._partial_len == 0:
                self._partial_start = ts + body_end / rate
                self._partial_energy = sums[-1]
            else:
                self._partial_energy = self._partial_energy + sums[-1]
            self._partial_len += n - body_end

        if scores is not None:
            self._ts = ts
            self._head = head
            closed += self._advance(scores)
            self._evaluated_until = self._frame_start(scores.shape[0] - 1) + fl / rate

        levels = BlockLevels(rms_dbfs=db[0], peak_dbfs=db[1])
        return SilenceUpdate(
            state=self._state,
            closed=closed,
            open=self.open_interval,
            pending_since=self._pending_since(),
            evaluated_until=self._evaluated_until,
            levels=levels,
        )

    # -- internals

    def _frame_start(self, i: int) -> float:
        """Start time (unix s) of frame ``i`` of the current block."""
        if i < self._i0:
            return self._carried_start
        return self._ts + (self._head + (i - self._i0) * self._frame_len) / self._rate

    def _pending_since(self) -> float | None:
        if self._run_len:
            return self._run_start
        if self._state is not DetectionState.CLEAR and self._win_times.shape[0]:
            return float(self._win_times[0])
        return None

    def _frame_starts(self, idx: NDArray[np.intp]) -> NDArray[np.float64]:
        """Start times (unix s) of frames ``idx`` of the current block."""
        t: NDArray[np.float64] = self._ts + (self._head + (idx - self._i0) * self._frame_len) / self._rate
        if self._i0:
            t[idx < self._i0] = self._carried_start
        return t

    def _open(self, start: float) -> None:
        self._open_start = start
        self._state = DetectionState.ACTIVE
        self._run_len = 0
        self._forget_window()

    def _forget_window(self) -> None:
        self._win_hot = _NO_FLAGS
        self._win_quiet = _NO_FLAGS
        self._win_times = _NO_TIMES

    def _advance(self, scores: NDArray[np.floating]) -> tuple[SilenceInterval, ...]:
        """Run the state machine over this block's frame scores; return closed silences."""
        closed: tuple[SilenceInterval, ...] = ()
        if self._state is DetectionState.CLEAR and _min_of(scores) >= self._quiet_below:
            self._run_len = 0  # programme throughout (the common block): no quiet run goes on
            return closed
        quiet = scores < self._quiet_below
        loud: NDArray[np.bool_] | None = None
        m = scores.shape[0]
        on, width, need = self._on_frames, self._off_frames, self._programme_frames
        pos = 0
        while pos < m:
            state = self._state
            if state is DetectionState.CLEAR:
                j, trailing = _first_completion(quiet[pos:], self._run_len, on)
                if j < 0:
                    self._carry_run(trailing, m - pos, m)
                    break
                first = pos + j - on + 1  # frame where the completing run began
                self._open(self._run_start if first < pos else self._frame_start(first))
                pos += j + 1
                continue
            # ACTIVE or UNKNOWN: look for programme, i.e. a window of ``width`` frames that
            # starts on a hot frame and holds at least ``need`` hot ones (loud frames while
            # ACTIVE; non-quiet ones while UNKNOWN). While UNKNOWN, a quiet run of ``on``
            # frames (silence) competes with it; the earlier completion wins.
            if state is DetectionState.ACTIVE:
                if loud is None:
                    loud = scores >= self._loud_from
                hot = loud[pos:]
            else:
                hot = ~quiet[pos:]
            jq = -1
            if state is DetectionState.UNKNOWN:
                jq, tq = _first_completion(quiet[pos:], self._run_len, on)
            carry = self._win_hot.shape[0]
            s = -1
            flags = hot
            if carry or hot.any():
                flags = np.concatenate([self._win_hot, hot]) if carry else hot
                s = _window_completion(flags, width, need)
            done = pos + s + width - 1 - carry if s >= 0 else m  # block frame completing it
            if jq >= 0 and pos + jq < done:  # silence (from UNKNOWN) comes first
                first = pos + jq - on + 1
                self._open(self._run_start if first < pos else self._frame_start(first))
                pos += jq + 1
                continue
            if s < 0:
                if state is DetectionState.UNKNOWN:
                    self._carry_run(tq, m - pos, m)
                self._keep_window(flags, quiet[pos:], pos, carry)
                break
            # Programme: it resumed at the window's first frame, not where it was confirmed.
            resumed = float(self._win_times[s]) if s < carry else self._frame_start(pos + s - carry)
            if state is DetectionState.ACTIVE:
                assert self._open_start is not None
                closed += (SilenceInterval(self._open_start, resumed, SilenceEnd.AUDIO),)
                self._open_start = None
            self._state = DetectionState.CLEAR
            # The quiet run at the end of the window goes on counting towards a silence.
            jw = s + width - 1
            q = np.concatenate([self._win_quiet, quiet[pos : pos + jw - carry + 1]])[s : jw + 1]
            run = 0 if not q[-1] else int(q.shape[0] - 1 - np.flatnonzero(~q)[-1])
            if run:
                k = jw - run + 1
                self._run_start = (
                    float(self._win_times[k]) if k < carry else self._frame_start(pos + k - carry)
                )
            self._run_len = run
            self._forget_window()
            if run >= on:  # on_s shorter than off_s: the quiet run is already a silence
                self._open(self._run_start)
            pos = done + 1
        return closed

    def _keep_window(self, flags: NDArray[np.bool_], quiet: NDArray[np.bool_], pos: int, carry: int) -> None:
        """Carry the last ``width − 1`` frames (from the first hot one) to the next block."""
        keep = self._off_frames - 1
        n = flags.shape[0]
        lo = max(n - keep, 0)
        hot_at = np.flatnonzero(flags[lo:])
        if not hot_at.size:
            self._forget_window()
            return
        lo += int(hot_at[0])
        if lo >= carry:  # all kept frames are in this block
            idx = np.arange(pos + lo - carry, pos + n - carry)
            self._win_hot = flags[lo:].copy()
            self._win_quiet = quiet[lo - carry :].copy()
            self._win_times = self._frame_starts(idx)
        else:
            idx = np.arange(pos, pos + n - carry)
            self._win_hot = flags[lo:].copy()
            self._win_quiet = np.concatenate([self._win_quiet[lo:], quiet])
            self._win_times = np.concatenate([self._win_times[lo:], self._frame_starts(idx)])

    def _carry_run(self, trailing: int, scanned: int, m: int) -> None:
        """Remember the run of ``trailing`` frames that ends the block for the next one."""
        if trailing and trailing <= scanned:  # the run began within the scanned frames
            self._run_start = self._frame_start(m - trailing)
        self._run_len = trailing


def _window_completion(flags: NDArray[np.bool_], width: int, need: int) -> int:
    """First ``s`` with ``flags[s]`` and ``need`` True among ``flags[s : s + width]``, or −1."""
    n = flags.shape[0]
    if n < width:
        return -1
    if width == 1:
        s = int(flags.argmax())
        return s if flags[s] else -1
    c = np.empty(n + 1, dtype=np.int64)
    c[0] = 0
    np.cumsum(flags, out=c[1:])
    ok = flags[: n - width + 1] & (c[width:] - c[: n - width + 1] >= need)
    s = int(ok.argmax())
    return s if ok[s] else -1


_NO_FLAGS: Final[NDArray[np.bool_]] = np.zeros(0, dtype=np.bool_)
#: what a sample rate may be (a tuple: ``int | np.integer`` would be built at every call)
_RATE_TYPES: Final = (int, np.integer)
#: the smallest element, without ndarray.min's Python-level wrapper (called per block)
_min_of: Final = np.minimum.reduce
_NO_TIMES: Final[NDArray[np.float64]] = np.zeros(0, dtype=np.float64)


# --------------------------------------------------------------------------- spectrum


@dataclass(frozen=True, slots=True)
class SpectralFeatures:
    """Spectral shape of a block within an analysis band, one value per column.

    * ``flatness``: Wiener entropy, geometric over arithmetic mean of the power spectral
      density (0 = pure tone … 1 = white noise); NaN for a silent column.
    * ``peak_hz``: frequency of the strongest component (parabolic interpolation).
    * ``peak_dominance``: share (0…1) of in-band power within ±``peak_bins`` bins of the
      peak; a clean sine gives ≈1, programme much less.
    """

    flatness: NDArray[np.float64]
    peak_hz: NDArray[np.float64]
    peak_dominance: NDArray[np.float64]


def welch(
    x: NDArray[np.float64], rate: float, nperseg: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Welch's PSD of each column of ``x`` (frames × channels): ``scipy.signal.welch``'s
    defaults (periodic Hann window, half overlap, each segment's mean removed, one-sided
    density, mean over segments), in numpy.

    scipy.signal is not imported for it: its import takes a second and about 75 MB of the
    daemon's memory, for this one function (``tests/probes/test_audio.py`` checks the two
    agree).
    """
    n = x.shape[0]
    if not 1 <= nperseg <= n:
        raise ValueError(f"nperseg {nperseg} for {n} frames")
    step = nperseg - nperseg // 2
    segments = (n - nperseg) // step + 1
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(nperseg) / nperseg) if nperseg > 1 else np.ones(1)
    scale = 1.0 / (rate * float(window @ window))
    freqs = np.fft.rfftfreq(nperseg, 1.0 / rate).astype(np.float64)
    # segments × channels × nperseg, a strided view of x, then one FFT over all of them.
    segs = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=0)[: segments * step : step]
    spectrum = np.fft.rfft((segs - segs.mean(axis=-1, keepdims=True)) * window, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    psd: NDArray[np.float64] = power.mean(axis=0).T * scale
    # One-sided: every bin but DC (and Nyquist, for an even length) holds both halves.
    psd[1 : None if nperseg % 2 else -1] *= 2.0
    return freqs, psd


def spectral_features(
    samples: NDArray[np.floating],
    rate: int,
    *,
    band: tuple[float, float] = (100.0, 15000.0),
    nperseg: int = 2048,
    deemphasis_us: float | None = None,
    peak_bins: int = 3,
    sum_channels: bool = False,
) -> SpectralFeatures:
    """Welch-PSD features of each column (or of all channels together).

    ``band`` limits the analysis (the upper edge is capped at Nyquist); FM audio stops at
    15 kHz. ``deemphasis_us`` (50 in China and Europe, 75 in the Americas) multiplies
    the PSD by ``1 + (2πfτ)²``, undoing receiver de-emphasis so that the hiss of a
    receiver without carrier is white again. ``sum_channels=True`` adds the channels'
    PSDs (immune to polarity inversion, unlike a downmix) and returns one value.
    """
    check_block(samples, rate)
    x = np.asarray(samples, dtype=np.float64)
    n = x.shape[0]
    if n < 16:
        raise ValueError(f"block too short for a spectrum: {n} frames")
    seg = min(nperseg, n)
    freqs, psd = welch(x, rate, seg)
    if sum_channels:
        psd = psd.sum(axis=1, keepdims=True)
    if deemphasis_us is not None:
        tau = deemphasis_us * 1e-6
        psd = psd * (1.0 + (2.0 * np.pi * freqs * tau) ** 2)[:, None]
    lo, hi = band[0], min(band[1], rate / 2.0)
    sel = (freqs >= lo) & (freqs <= hi)
    if np.count_nonzero(sel) < 3:
        raise ValueError(f"analysis band {band} holds fewer than 3 bins at {rate} Hz / {seg}")
    p = psd[sel]
    f = freqs[sel]
    mean = p.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        geo = np.exp(np.log(p).mean(axis=0))
        flatness = np.where(mean > 0.0, geo / np.where(mean > 0.0, mean, 1.0), np.nan)

    k = np.argmax(p, axis=0)
    nb = p.shape[0]
    cols = np.arange(p.shape[1])
    cs = np.vstack([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)])
    lo_i = np.maximum(k - peak_bins, 0)
    hi_i = np.minimum(k + peak_bins + 1, nb)
    near = cs[hi_i, cols] - cs[lo_i, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        dominance = np.where(mean > 0.0, near / (mean * nb), np.nan)
        # Parabolic interpolation of the log spectrum around the peak bin.
        km = np.clip(k, 1, nb - 2)
        a = np.log(p[km - 1, cols])
        b = np.log(p[km, cols])
        g = np.log(p[km + 1, cols])
        den = a - 2.0 * b + g
        delta = np.where((km == k) & np.isfinite(den) & (den < 0.0), 0.5 * (a - g) / den, 0.0)
    step = f[1] - f[0]
    peak_hz = np.where(mean > 0.0, f[k] + np.clip(delta, -0.5, 0.5) * step, np.nan)
    return SpectralFeatures(
        flatness=np.asarray(flatness, dtype=np.float64),
        peak_hz=np.asarray(peak_hz, dtype=np.float64),
        peak_dominance=np.clip(np.asarray(dominance, dtype=np.float64), 0.0, 1.0),
    )


def _loudest_rms_dbfs(x: NDArray[Float], floor_db: float) -> float:
    return float(power_db(_channel_stats(x)[0].max() / x.shape[0], floor_db))


class _DebouncedDetector:
    """Block continuity and a debounced verdict: what the spectral detectors below share."""

    def __init__(self, on_s: float, off_s: float, gap_tolerance_s: float) -> None:
        self._continuity = BlockContinuity(gap_tolerance_s)
        self._debounce = Debouncer(on_s, off_s)

    @property
    def current(self) -> Debounced:
        """Current verdict and since when it holds."""
        return self._debounce.current

    def interrupt(self) -> None:
        """Declare the input interrupted: back to UNKNOWN."""
        self._continuity.reset()
        self._forget()

    def _forget(self) -> None:
        """Drop what was carried from earlier blocks (after a gap or an interruption)."""
        self._debounce.reset()

    def _follow(self, ts: float, frames: int, rate: int) -> None:
        """Record a block; after a gap, start afresh."""
        if not self._continuity.advance(ts, frames, rate):
            self._forget()


@dataclass(frozen=True, slots=True)
class HissUpdate:
    """Verdict of :class:`HissDetector` after one block, with the block's measurements."""

    state: DetectionState
    #: start of the run that set the state, None while UNKNOWN
    since: float | None
    #: whether this block alone looks like hiss
    hiss_now: bool
    flatness: float
    #: RMS dBFS of the loudest channel
    level_dbfs: float
    #: standard deviation (dB) of the loudest channel's frame levels within the block
    level_spread_db: float


class HissDetector(_DebouncedDetector):
    """Detects noise where programme should be (a receiver that lost the carrier).

    A block looks like hiss when all of these hold:

    * spectral flatness (channels' PSDs summed, within ``band``) ≥ ``flatness_min``;
    * the loudest channel is not silent: RMS ≥ ``min_level_dbfs``;
    * the level is stationary: the standard deviation of its ``frame_s`` frame levels
      is ≤ ``max_spread_db`` (programme, even heavily processed, moves by several dB
      from one 50 ms frame to the next; noise moves by a fraction of a dB).

    The verdict becomes ACTIVE after ``on_s`` of consecutive hiss blocks and CLEAR after
    ``off_s`` without; a gap returns it to UNKNOWN. Blocks should be ≥ 0.5 s for a
    meaningful spectrum.

    For orientation, on 1 s blocks at 48 kHz (200 Hz–15 kHz): white noise has a flatness
    of ≈0.99, the de-emphasised (50 µs) hiss of a receiver without carrier ≈0.50, pink
    noise ≈0.56, and programme (music, speech) well under 0.1, with frame-level spreads
    of ≈0.1–0.9 dB for noise against 5 dB and more for programme. Setting
    ``deemphasis_us=50`` (the pre-emphasis of FM in China and Europe) makes receiver
    hiss ≈0.95 flat and white noise ≈0.67, programme staying under ≈0.25: the default
    threshold works either way.
    """

    def __init__(
        self,
        *,
        flatness_min: float = 0.45,
        min_level_dbfs: float = -60.0,
        max_spread_db: float = 1.5,
        on_s: float = 5.0,
        off_s: float = 2.0,
        band: tuple[float, float] = (200.0, 15000.0),
        deemphasis_us: float | None = None,
        frame_s: float = 0.05,
        nperseg: int = 2048,
        gap_tolerance_s: float = 0.1,
    ) -> None:
        self.flatness_min = float(flatness_min)
        self.min_level_dbfs = float(min_level_dbfs)
        self.max_spread_db = float(max_spread_db)
        self.band = band
        self.deemphasis_us = deemphasis_us
        self.frame_s = float(frame_s)
        self.nperseg = int(nperseg)
        super().__init__(on_s, off_s, gap_tolerance_s)

    def process(self, samples: NDArray[np.floating], rate: int, ts: float) -> HissUpdate:
        """Feed one block; see the class docstring for the criteria."""
        check_block(samples, rate)
        x = _prepare(samples)
        n = x.shape[0]
        self._follow(ts, n, rate)
        feats = spectral_features(
            x,
            rate,
            band=self.band,
            nperseg=self.nperseg,
            deemphasis_us=self.deemphasis_us,
            sum_channels=True,
        )
        flatness = float(feats.flatness[0])
        level = _loudest_rms_dbfs(x, DB_FLOOR)
        fl = max(1, round(self.frame_s * rate))
        frames = frame_rms_dbfs(x, fl).max(axis=1)
        spread = float(frames.std()) if frames.size >= 2 else math.nan
        hiss = flatness >= self.flatness_min and level >= self.min_level_dbfs and spread <= self.max_spread_db
        verdict = self._debounce.update(ts, ts + n / rate, hiss)
        return HissUpdate(verdict.state, verdict.since, hiss, flatness, level, spread)


@dataclass(frozen=True, slots=True)
class ToneUpdate:
    """Verdict of :class:`StuckToneDetector` after one block, with the block's measurements."""

    state: DetectionState
    since: float | None
    #: whether this block is a steady continuation of the current tone
    tone_now: bool
    peak_hz: float
    peak_dominance: float
    level_dbfs: float


class StuckToneDetector(_DebouncedDetector):
    """Detects a steady single tone where programme should be (line-up tone left on air).

    A block is tonal when the strongest spectral component holds ≥ ``dominance_min`` of
    the in-band power and the loudest channel is at least ``min_level_dbfs``. Tonal
    blocks continue the current tone when their peak frequency is within
    ``freq_tolerance_hz`` and their level within ``level_tolerance_db`` of the block
    that started the run; otherwise a new run starts. ACTIVE after ``on_s`` of one
    steady tone, CLEAR after ``off_s`` without, UNKNOWN after a gap.
    """

    def __init__(
        self,
        *,
        dominance_min: float = 0.9,
        min_level_dbfs: float = -60.0,
        freq_tolerance_hz: float = 5.0,
        level_tolerance_db: float = 1.0,
        on_s: float = 10.0,
        off_s: float = 2.0,
        band: tuple[float, float] = (20.0, 20000.0),
        nperseg: int = 8192,
        gap_tolerance_s: float = 0.1,
    ) -> None:
        self.dominance_min = float(dominance_min)
        self.min_level_dbfs = float(min_level_dbfs)
        self.freq_tolerance_hz = float(freq_tolerance_hz)
        self.level_tolerance_db = float(level_tolerance_db)
        self.band = band
        self.nperseg = int(nperseg)
        #: (frequency, level) of the block that started the current tone
        self._ref: tuple[float, float] | None = None
        super().__init__(on_s, off_s, gap_tolerance_s)

    def _forget(self) -> None:
        super()._forget()
        self._ref = None

    def process(self, samples: NDArray[np.floating], rate: int, ts: float) -> ToneUpdate:
        """Feed one block; see the class docstring for the criteria."""
        check_block(samples, rate)
        x = _prepare(samples)
        n = x.shape[0]
        self._follow(ts, n, rate)
        feats = spectral_features(x, rate, band=self.band, nperseg=self.nperseg, sum_channels=True)
        freq = float(feats.peak_hz[0])
        dominance = float(feats.peak_dominance[0])
        level = _loudest_rms_dbfs(x, DB_FLOOR)
        tonal = dominance >= self.dominance_min and level >= self.min_level_dbfs
        restart = False
        if not tonal:
            self._ref = None
        elif (
            self._ref is None
            or abs(freq - self._ref[0]) > self.freq_tolerance_hz
            or abs(level - self._ref[1]) > self.level_tolerance_db
        ):
            self._ref = (freq, level)
            restart = True
        verdict = self._debounce.update(ts, ts + n / rate, tonal, restart=restart)
        return ToneUpdate(verdict.state, verdict.since, tonal, freq, dominance, level)
