"""Programme identity: is the new channel carrying the same programme as the old one?

Two ways, used together by the ``migration`` rules:

* **Identifiers.** FM by the RDS PI code, DTV by the service id and/or transport
  stream id the receiver reports. :func:`pi_match` and :func:`ids_match` turn an
  observed and an expected identifier into the 0/1 flags ``pi_match`` /
  ``service_id_match`` (None = unknown: nothing observed, or nothing expected).
* **Audio.** The short-term level envelopes of the two programmes (RMS per 100 ms, in
  dB) are cross-correlated over the last minute, with a lag search for the different
  processing delays of the two chains (±10 s by default). The similarity is the
  Pearson correlation at the best lag, so a gain difference between the chains (an
  offset in dB) does not matter. The same programme scores close to 1; a different
  one, even at the same level, scores low (about 0…0.3 over a minute of speech or
  music). Silence carries no identity: too little overlapping non-silent envelope
  gives *unknown*, never a mismatch.

Conventions: audio blocks are ``float32`` ``(frames, channels)`` with full scale 1.0,
``rate`` in Hz and ``ts`` the unix time of the first sample, as everywhere in
:mod:`probes`. Envelope steps lie on an absolute time grid (step ``k`` covers
``[k·step, (k+1)·step)``), so the envelopes of two receivers line up by index and a
lag is a difference of air times. A positive lag means the second signal (``b``) is
late. Pure: no clock reads; time comes with the blocks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from probes._util import check_block

__all__ = [
    "EnvelopeTracker",
    "IdentityResult",
    "compare",
    "envelope_similarity",
    "ids_match",
    "parse_identifier",
    "parse_pi",
    "pi_match",
]

#: Envelope levels below this (dBFS) count as silence (no identity information).
SILENCE_DB: Final = -50.0
#: Lowest level kept in an envelope; quieter steps are clamped to it (dB).
_FLOOR_DB: Final = -120.0
_PI_RE: Final = re.compile(r"^\s*(?:0[xX])?([0-9A-Fa-f]{1,4})\s*$")
_HEX_RE: Final = re.compile(r"^\s*0[xX]([0-9A-Fa-f]{1,4})\s*$")
_DEC_RE: Final = re.compile(r"^\s*([0-9]{1,5})\s*$")
_ID_MAX: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class IdentityResult:
    """Outcome of an envelope comparison.

    ``similarity`` is the correlation (−1…1) at the best lag and ``lag_s`` that lag
    (positive: ``b`` is late), both None when unknown. ``overlap_s`` is how much
    non-silent envelope the two signals had in common at that lag (at the best lag
    found, or the most at any lag when unknown).
    """

    similarity: float | None
    lag_s: float | None
    overlap_s: float

    @property
    def known(self) -> bool:
        return self.similarity is not None


# --------------------------------------------------------------------------- envelope comparison


def envelope_similarity(
    a: ArrayLike,
    b: ArrayLike,
    *,
    step_s: float,
    max_lag_s: float = 10.0,
    min_overlap_s: float = 15.0,
    silence_db: float = SILENCE_DB,
) -> IdentityResult:
    """Cross-correlate two level envelopes (dB, one value per ``step_s``, NaN = no data).

    ``a`` and ``b`` lie on the same time grid (index ``k`` is the same instant in both).
    Every lag of up to ``max_lag_s`` either way is tried; at each, the Pearson
    correlation is taken over the steps where both envelopes are known, with levels
    below ``silence_db`` clamped to it (pauses still line up, but a silent stretch has
    no variance to correlate). A lag counts only if the two have at least
    ``min_overlap_s`` of *non-silent* envelope in common there; if none does, the
    result is unknown. The best lag is refined to a fraction of a step by fitting a
    parabola through its neighbours.
    """
    if not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s!r}")
    if not max_lag_s >= 0:
        raise ValueError(f"max_lag_s must be >= 0, got {max_lag_s!r}")
    ea = np.asarray(a, dtype=np.float64).ravel()
    eb = np.asarray(b, dtype=np.float64).ravel()
    if ea.size == 0 or eb.size == 0:
        return IdentityResult(None, None, 0.0)
    known_a = np.isfinite(ea)
    known_b = np.isfinite(eb)
    loud_a = (known_a & (ea > silence_db)).astype(np.float64)
    loud_b = (known_b & (eb > silence_db)).astype(np.float64)
    min_steps = max(2, math.ceil(min_overlap_s / step_s - 1e-9))
    if loud_a.sum() < min_steps or loud_b.sum() < min_steps:
        return IdentityResult(None, None, 0.0)

    def centred(e: NDArray[np.float64], known: NDArray[np.bool_]) -> NDArray[np.float64]:
        # Clamp silence, centre on the mean (less cancellation in the sums), zero the unknown.
        x = np.where(known, np.maximum(e, silence_db), 0.0)
        x[known] -= x[known].mean()
        out: NDArray[np.float64] = np.where(known, x, 0.0)
        return out

    xa, xb = centred(ea, known_a), centred(eb, known_b)
    ma, mb = known_a.astype(np.float64), known_b.astype(np.float64)

    def corr(in1: NDArray[np.float64], in2: NDArray[np.float64]) -> NDArray[np.float64]:
        # z[lag] = Σ_n in1[n + lag] · in2[n]: b (in1) late by `lag` steps against a (in2).
        # numpy's direct sum (scipy.signal's is the same for 1-D; these series are a few
        # hundred steps, and scipy.signal would cost the daemon 75 MB to import).
        out: NDArray[np.float64] = np.correlate(in1, in2, mode="full")
        return out

    lags = np.arange(-ea.size + 1, eb.size)
    max_lag = math.floor(max_lag_s / step_s + 1e-9)
    window = np.abs(lags) <= max_lag
    lags = lags[window]
    n = np.rint(corr(mb, ma)[window])
    n_loud = np.rint(corr(loud_b, loud_a)[window])
    sa = corr(mb, xa)[window]
    sb = corr(xb, ma)[window]
    saa = corr(mb, xa * xa)[window]
    sbb = corr(xb * xb, ma)[window]
    sab = corr(xb, xa)[window]
    var_a = n * saa - sa * sa
    var_b = n * sbb - sb * sb
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (n * sab - sa * sb) / np.sqrt(var_a * var_b)
    # A lag needs enough non-silent overlap and real variance on both sides (relative to
    # the size of the sums, so FFT rounding of a constant envelope does not count).
    tiny = 1e-9 * np.maximum(n * n, 1.0)
    usable = (n_loud >= min_steps) & (var_a > tiny) & (var_b > tiny) & np.isfinite(r)
    if not usable.any():
        return IdentityResult(None, None, float(n_loud.max(initial=0.0)) * step_s)
    r = np.where(usable, np.clip(r, -1.0, 1.0), -np.inf)
    best = int(np.argmax(r))
    frac = 0.0
    if 0 < best < r.size - 1 and usable[best - 1] and usable[best + 1]:
        left, mid, right = r[best - 1], r[best], r[best + 1]
        denom = left - 2.0 * mid + right
        if denom < 0:
            frac = float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))
    return IdentityResult(
        similarity=float(r[best]),
        lag_s=(float(lags[best]) + frac) * step_s,
        overlap_s=float(n_loud[best]) * step_s,
    )


# --------------------------------------------------------------------------- streaming envelope


class EnvelopeTracker:
    """The last ``window_s`` seconds of one signal's level envelope (RMS dB per ``step_s``).

    Push audio blocks as they arrive (any order within the window, gaps allowed); the
    envelope is kept in a ring of ``window_s / step_s`` steps on the absolute time
    grid. A step is known once at least ``min_fill`` of it has been received; its
    level is the mean power over all channels, in dB (the floor −120 dB for digital
    silence). Memory is constant.
    """

    def __init__(self, window_s: float = 60.0, step_s: float = 0.1, *, min_fill: float = 0.5) -> None:
        if not step_s > 0:
            raise ValueError(f"step_s must be > 0, got {step_s!r}")
        if not window_s >= step_s:
            raise ValueError(f"window_s must be at least one step ({step_s} s), got {window_s!r}")
        if not 0.0 < min_fill <= 1.0:
            raise ValueError(f"min_fill must lie in (0, 1], got {min_fill!r}")
        self.step_s = float(step_s)
        self.window_s = float(window_s)
        self.min_fill = float(min_fill)
        self.size = round(window_s / step_s)
        self._step = np.full(self.size, -1, dtype=np.int64)  # absolute step held by each slot
        self._sum = np.zeros(self.size)  # Σ power
        self._count = np.zeros(self.size)  # samples
        self._covered = np.zeros(self.size)  # seconds of audio received
        self._latest: int | None = None

    @property
    def latest_step(self) -> int | None:
        """Absolute index of the newest step that has received audio (None before any)."""
        return self._latest

    def reset(self) -> None:
        """Forget everything (e.g. when the signal's source changes)."""
        self._step[:] = -1
        self._sum[:] = 0.0
        self._count[:] = 0.0
        self._covered[:] = 0.0
        self._latest = None

    def push(self, samples: NDArray[np.floating], rate: int, ts: float) -> None:
        """Add one block; samples older than the window are ignored."""
        check_block(samples, rate)
        n = samples.shape[0]
        if n == 0:
            return
        if not math.isfinite(ts):
            raise ValueError(f"ts must be finite, got {ts!r}")
        x = np.ascontiguousarray(samples, dtype=np.float32)
        c = x.shape[1]
        flat = x.reshape(-1)
        # Where the block's samples fall on the step grid, relative to the step holding
        # ``ts`` (small numbers, so the arithmetic is exact enough): sample i lies at
        # ``pos0 + i·per`` steps. A sample within a quarter sample of a step boundary goes to
        # the later step, so that how the audio is cut into blocks never moves a sample
        # from one step to another by float rounding.
        step = self.step_s
        base = math.floor(ts / step)
        per = 1.0 / (rate * step)
        pos0 = (ts - base * step) / step + 0.25 * per
        first_rel = math.floor(pos0)
        last_rel = math.floor(pos0 + (n - 1) * per)
        latest = base + last_rel if self._latest is None else max(self._latest, base + last_rel)
        oldest = latest - self.size + 1  # older steps are out of the window
        # A block spans a handful of steps (ten per second of audio): a loop of one BLAS
        # dot per step over the interleaved samples is cheaper than array bookkeeping.
        a = 0
        for rel in range(first_rel, last_rel + 1):
            b = n if rel == last_rel else min(max(math.ceil((rel + 1 - pos0) / per), a), n)
            k = base + rel
            if b > a and k >= oldest:
                seg = flat[a * c : b * c]
                self._add(k, float(np.dot(seg, seg)) / c, b - a, rate)
            a = b
        self._latest = latest

    def _add(self, k: int, power_sum: float, count: int, rate: int) -> None:
        slot = k % self.size
        held = int(self._step[slot])
        if held > k:  # a newer step holds the slot (cannot happen within the window)
            return
        if held < k:  # the slot holds an older step, or nothing: start afresh
            self._step[slot] = k
            self._sum[slot] = 0.0
            self._count[slot] = 0.0
            self._covered[slot] = 0.0
        self._sum[slot] += power_sum
        self._count[slot] += count
        self._covered[slot] += count / rate

    def envelope(self, first_step: int, last_step: int) -> NDArray[np.float64]:
        """Levels (dB) of absolute steps ``first_step … last_step``; NaN where unknown."""
        if last_step < first_step:
            return np.zeros(0)
        steps = np.arange(first_step, last_step + 1, dtype=np.int64)
        slots = steps % self.size
        ok = (self._step[slots] == steps) & (self._covered[slots] >= self.min_fill * self.step_s - 1e-12)
        ok &= self._count[slots] > 0
        mean = np.where(ok, self._sum[slots] / np.maximum(self._count[slots], 1.0), np.nan)
        with np.errstate(invalid="ignore"):
            floor = 10.0 ** (_FLOOR_DB / 10.0)
            out: NDArray[np.float64] = np.where(ok, 10.0 * np.log10(np.maximum(mean, floor)), np.nan)
        return out

    def recent(self) -> tuple[int, NDArray[np.float64]]:
        """``(first_step, levels)`` of the whole window ending at the newest step."""
        if self._latest is None:
            return 0, np.zeros(0)
        first = self._latest - self.size + 1
        return first, self.envelope(first, self._latest)


def compare(
    a: EnvelopeTracker,
    b: EnvelopeTracker,
    *,
    max_lag_s: float = 10.0,
    min_overlap_s: float = 15.0,
    silence_db: float = SILENCE_DB,
) -> IdentityResult:
    """Compare the envelopes two trackers hold (same ``step_s``); see :func:`envelope_similarity`.

    The comparison covers the window ending at the newer of the two signals' latest
    steps, so a signal that stopped arriving drops out as its envelope ages.
    """
    if not math.isclose(a.step_s, b.step_s):
        raise ValueError(f"envelope steps differ: {a.step_s} s and {b.step_s} s")
    if a.latest_step is None or b.latest_step is None:
        return IdentityResult(None, None, 0.0)
    last = max(a.latest_step, b.latest_step)
    first = last - max(a.size, b.size) + 1
    return envelope_similarity(
        a.envelope(first, last),
        b.envelope(first, last),
        step_s=a.step_s,
        max_lag_s=max_lag_s,
        min_overlap_s=min_overlap_s,
        silence_db=silence_db,
    )


# --------------------------------------------------------------------------- identifiers


def _integral(value: float | int, limit: int) -> int | None:
    if isinstance(value, bool) or not math.isfinite(value) or value != int(value):
        return None
    v = int(value)
    return v if 0 <= v <= limit else None


def parse_pi(value: float | int | str | None) -> int | None:
    """An RDS PI code as an integer: ``"C201"``, ``"0xc201"`` or the number ``49665``.

    Strings are hexadecimal (as PI codes are written); None, empty or malformed
    values give None (unknown).
    """
    if value is None:
        return None
    if isinstance(value, str):
        m = _PI_RE.match(value)
        return int(m.group(1), 16) if m else None
    if isinstance(value, int | float):
        return _integral(value, _ID_MAX)
    return None


def parse_identifier(value: float | int | str | None) -> int | None:
    """A DVB/DTMB service or transport-stream id (0…65535): a number, ``"1001"`` or ``"0x03E9"``."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _HEX_RE.match(value)
        if m:
            return int(m.group(1), 16)
        m = _DEC_RE.match(value)
        if m and int(m.group(1)) <= _ID_MAX:
            return int(m.group(1))
        return None
    if isinstance(value, int | float):
        return _integral(value, _ID_MAX)
    return None


def ids_match(pairs: Iterable[tuple[int | None, int | None]]) -> float | None:
    """Combine ``(observed, expected)`` identifier pairs into a 0/1 flag.

    0.0 if any observed identifier differs from its expected one; otherwise None if
    nothing is expected, or something expected was not observed; otherwise 1.0.
    """
    expected_any = unknown = False
    for observed, expected in pairs:
        if expected is None:
            continue
        expected_any = True
        if observed is None:
            unknown = True
        elif observed != expected:
            return 0.0
    if not expected_any or unknown:
        return None
    return 1.0


def pi_match(observed: float | int | str | None, expected: float | int | str | None) -> float | None:
    """1.0 if the observed RDS PI code is the expected one, 0.0 if not, None if either is unknown."""
    return ids_match([(parse_pi(observed), parse_pi(expected))])
