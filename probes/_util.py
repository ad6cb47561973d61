"""Shared helpers for the probe kernels: decibels, input checks, block continuity, debouncing.

Conventions used across ``probes``:

* Time is always an argument, in unix seconds (float). Nothing here reads a clock.
* Audio blocks are ``float32`` arrays of shape ``(frames, channels)`` with full
  scale = 1.0; ``ts`` is the time of the first sample.
* Levels that would be ``-inf`` (digital silence) are clamped to a finite floor,
  :data:`DB_FLOOR` (−120 dB) by default, so that they can be exported as metrics and
  compared with thresholds. ``NaN`` always means *unknown / undefined*, never silence.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Floor for levels in dB (dBFS, LUFS): digital silence (−inf) is reported as this value.
#: int16 quantisation noise sits near −101 dBFS, so −120 dB is unambiguously "nothing".
DB_FLOOR: Final[float] = -120.0


def power_db(power: ArrayLike, floor_db: float = DB_FLOOR) -> NDArray[np.float64]:
    """``10·log10(power)`` clamped below at ``floor_db``; NaN stays NaN.

    ``power`` is a mean square (or any power ratio); zero and negative values give the floor.
    """
    p = np.maximum(np.asarray(power, dtype=np.float64), 10.0 ** (floor_db / 10.0))
    out: NDArray[np.float64] = 10.0 * np.log10(p)
    return out


def amplitude_db(amplitude: ArrayLike, floor_db: float = DB_FLOOR) -> NDArray[np.float64]:
    """``20·log10(|amplitude|)`` clamped below at ``floor_db``; NaN stays NaN."""
    a = np.maximum(np.abs(np.asarray(amplitude, dtype=np.float64)), 10.0 ** (floor_db / 20.0))
    out: NDArray[np.float64] = 20.0 * np.log10(a)
    return out


def check_block(samples: NDArray[np.floating], rate: int | None = None) -> None:
    """Raise ``ValueError`` unless ``samples`` is a 2-D ``(frames, channels)`` float block.

    ``rate``, when given, must be a positive integer number of samples per second.
    """
    if not isinstance(samples, np.ndarray):
        raise TypeError(f"audio block must be a numpy array, got {type(samples).__name__}")
    if samples.ndim != 2:
        raise ValueError(f"audio block must have shape (frames, channels), got shape {samples.shape}")
    if samples.shape[1] < 1:
        raise ValueError("audio block has no channels")
    if samples.dtype.kind != "f":
        raise ValueError(f"audio block must be floating point (full scale 1.0), got {samples.dtype}")
    if rate is not None and (int(rate) != rate or rate <= 0):
        raise ValueError(f"sample rate must be a positive integer, got {rate!r}")


class DetectionState(enum.Enum):
    """Tri-state verdict of a streaming detector.

    ``UNKNOWN`` is not a synonym of ``CLEAR``: it is what a detector reports before it has
    seen enough contiguous input, and after a gap in the input. Rules must neither fire
    nor resolve on it.
    """

    UNKNOWN = "unknown"
    #: the condition (silence, hiss, stuck tone …) is present
    ACTIVE = "active"
    #: the condition is positively absent
    CLEAR = "clear"


class BlockContinuity:
    """Tells whether a block follows the previous one without a gap.

    A block of ``n`` frames starting at ``ts`` is contiguous with the previous one when
    ``|ts − expected| ≤ tolerance``, where ``expected`` is the previous block's start
    plus its duration. Small jitter of the sender's time stamps is absorbed by the
    tolerance; anything else (missing data, overlapping or backwards time stamps, a
    sample-rate change) is a discontinuity.
    """

    __slots__ = ("_expected", "_rate", "tolerance")

    def __init__(self, tolerance: float) -> None:
        if not tolerance >= 0.0:
            raise ValueError(f"gap tolerance must be >= 0 s, got {tolerance!r}")
        self.tolerance = float(tolerance)
        self._expected: float | None = None
        self._rate: int | None = None

    @property
    def expected(self) -> float | None:
        """Time at which the next block should start; ``None`` before the first block."""
        return self._expected

    def advance(self, ts: float, frames: int, rate: int) -> bool:
        """Record a block and return ``True`` if it continues the previous one.

        The first block after construction or :meth:`reset` returns ``False``.
        """
        if not math.isfinite(ts):
            raise ValueError(f"block time stamp must be finite, got {ts!r}")
        contiguous = (
            self._expected is not None and self._rate == rate and abs(ts - self._expected) <= self.tolerance
        )
        self._expected = ts + frames / rate
        self._rate = rate
        return contiguous

    def reset(self) -> None:
        """Forget the previous block: the next one is not contiguous."""
        self._expected = None
        self._rate = None


@dataclass(frozen=True, slots=True)
class Debounced:
    """Output of :class:`Debouncer`: the verdict and since when it holds (unix s)."""

    state: DetectionState
    #: start of the condition run that made the state ACTIVE, or of the clear run that
    #: made it CLEAR; ``None`` while UNKNOWN
    since: float | None


class Debouncer:
    """Debounce a per-block boolean condition over contiguous time (hysteresis in time).

    The condition must hold for ``on_s`` seconds (measured from the start of the first
    block where it held to the end of the current block) to become ACTIVE, and be false
    for ``off_s`` seconds to become CLEAR. From UNKNOWN, ``off_s`` seconds of the
    condition being false make it CLEAR. :meth:`reset` (to be called on a gap) returns
    to UNKNOWN.
    """

    __slots__ = ("_run_start", "_run_value", "_since", "_state", "off_s", "on_s")

    def __init__(self, on_s: float, off_s: float) -> None:
        if not (on_s >= 0.0 and off_s >= 0.0):
            raise ValueError(f"durations must be >= 0 s, got on={on_s!r} off={off_s!r}")
        self.on_s = float(on_s)
        self.off_s = float(off_s)
        self._state = DetectionState.UNKNOWN
        self._since: float | None = None
        self._run_value: bool | None = None
        self._run_start = 0.0

    @property
    def current(self) -> Debounced:
        """The current verdict."""
        return Debounced(self._state, self._since)

    def update(self, t0: float, t1: float, condition: bool, *, restart: bool = False) -> Debounced:
        """Feed one contiguous block spanning ``[t0, t1)`` where ``condition`` held or not.

        ``restart=True`` starts a new condition run at ``t0`` even if the previous block's
        condition was also true (used when the *thing* detected changed, e.g. a stuck
        tone moved to another frequency).
        """
        if self._run_value is not condition or restart:
            self._run_value = condition
            self._run_start = t0
        run = t1 - self._run_start
        if condition:
            if self._state is not DetectionState.ACTIVE and run >= self.on_s:
                self._state = DetectionState.ACTIVE
                self._since = self._run_start
        elif self._state is not DetectionState.CLEAR and run >= self.off_s:
            self._state = DetectionState.CLEAR
            self._since = self._run_start
        return self.current

    def reset(self) -> None:
        """Back to UNKNOWN (input gap): no run is carried over the missing data."""
        self._state = DetectionState.UNKNOWN
        self._since = None
        self._run_value = None
