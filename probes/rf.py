"""RF and transmitter kernels: windowed statistics of readings, FM, MPX power, VSWR.

Units and conventions
---------------------
* Time is unix seconds (float), always passed in; nothing here reads a clock.
* :class:`TimeWindow` holds readings of many *series* (one per target and quantity,
  e.g. the MER of every DTV target) in fixed-size ring buffers, so that the statistics
  of all series are computed at once. A reading is ``(ts, value)``; batched readings
  ``(ts0, period, values)`` are spread at ``ts0 + k·period``. Non-finite values
  (NaN, ±inf) are stored but never counted: they are *no reading*, not a value.
* Statistics cover the readings with ``now − window < ts ≤ now``. A series without a
  reading in the window gives ``count = 0`` and NaN statistics: unknown, never healthy.
  :meth:`TimeWindow.last` gives the newest reading and its time, whose age the caller
  compares with a staleness limit.
* Deviation and frequency in Hz, power in watts (any unit, as long as forward and
  reflected use the same), levels in dB.

DTV receivers report MER (dB), pre/post-FEC BER (ratio), C/N (dB) and lock (0/1):
feed them to a :class:`TimeWindow` as they are. ``min`` of MER and C/N, ``max`` of BER
and ``mean`` of lock (the share of readings locked) are the usual alarm inputs;
:meth:`TimeWindow.fraction_below` gives e.g. the share of time MER was under a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "FM_FULL_DEVIATION_HZ",
    "MPX_REFERENCE_DEVIATION_HZ",
    "TimeWindow",
    "WindowStats",
    "fm_modulation_percent",
    "mpx_power_dbr",
    "mpx_power_excess_db",
    "reflection_coefficient",
    "return_loss_db",
    "vswr",
]

#: 100 % modulation of FM broadcasting: ±75 kHz peak deviation.
FM_FULL_DEVIATION_HZ: Final = 75_000.0
#: ITU-R BS.412: 0 dBr is the power of a sine giving ±19 kHz peak deviation.
MPX_REFERENCE_DEVIATION_HZ: Final = 19_000.0


# --------------------------------------------------------------------------- windowed stats


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Statistics of each series over a time window; arrays of shape ``(n_series,)``."""

    #: number of finite readings in the window
    count: NDArray[np.int64]
    #: NaN where ``count`` is 0
    mean: NDArray[np.float64]
    min: NDArray[np.float64]
    max: NDArray[np.float64]


class TimeWindow:
    """Ring buffers of ``(time, value)`` readings for ``n_series`` series, with windowed stats.

    Each series keeps its last ``capacity`` readings; older ones are overwritten (the
    window therefore spans at most ``capacity`` readings: size it for the reading rate
    times the window length). Readings need not arrive in time order. All statistics
    are computed for every series at once, vectorised over a ``(n_series, capacity)``
    array.
    """

    def __init__(self, n_series: int, capacity: int, window_s: float) -> None:
        if n_series < 1 or capacity < 1:
            raise ValueError(f"need n_series >= 1 and capacity >= 1, got {n_series}, {capacity}")
        if not window_s > 0.0:
            raise ValueError(f"window must be > 0 s, got {window_s!r}")
        self.window_s = float(window_s)
        self._ts = np.full((n_series, capacity), np.nan)
        self._val = np.full((n_series, capacity), np.nan)
        self._written = np.zeros(n_series, dtype=np.int64)
        self._last_ts = np.full(n_series, np.nan)
        self._last_val = np.full(n_series, np.nan)

    @property
    def n_series(self) -> int:
        """Number of series."""
        return int(self._ts.shape[0])

    @property
    def capacity(self) -> int:
        """Readings kept per series."""
        return int(self._ts.shape[1])

    # -- input

    def add(self, series: ArrayLike, ts: ArrayLike, value: ArrayLike) -> None:
        """Store readings; ``series``, ``ts`` and ``value`` are scalars or equal-length arrays.

        Scalars broadcast, so one call can store one reading, one reading for many
        series, or many readings (for the same or different series) in order.
        """
        s, t, v = np.broadcast_arrays(
            np.asarray(series, dtype=np.int64),
            np.asarray(ts, dtype=np.float64),
            np.asarray(value, dtype=np.float64),
        )
        s, t, v = s.ravel(), t.ravel(), v.ravel()
        if s.size == 0:
            return
        if s.min() < 0 or s.max() >= self.n_series:
            raise ValueError(f"series index out of range 0..{self.n_series - 1}")
        if not np.isfinite(t).all():
            raise ValueError("reading time stamps must be finite")
        cap = self.capacity
        # Rank of each reading among those of its series in this call (stable order).
        order = np.argsort(s, kind="stable")
        s_sorted = s[order]
        counts = np.bincount(s_sorted, minlength=self.n_series)
        group_start = np.cumsum(counts) - counts
        rank = np.arange(s.size) - group_start[s_sorted]
        # Only the last `capacity` readings of a series survive; dropping the others
        # first keeps the scatter below free of duplicate slots.
        keep = rank >= counts[s_sorted] - cap
        idx = order[keep]
        ss = s_sorted[keep]
        slot = (self._written[ss] + rank[keep]) % cap
        self._ts[ss, slot] = t[idx]
        self._val[ss, slot] = v[idx]
        self._written += counts
        self._note_last(s, t, v)

    def extend(self, series: int, ts0: float, period: float, values: ArrayLike) -> None:
        """Store a batch of one series: ``values[k]`` at ``ts0 + k·period``."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if not period > 0.0:
            raise ValueError(f"batch period must be > 0 s, got {period!r}")
        t = ts0 + period * np.arange(v.size, dtype=np.float64)
        self.add(np.full(v.size, series, dtype=np.int64), t, v)

    def _note_last(self, s: NDArray[np.int64], t: NDArray[np.float64], v: NDArray[np.float64]) -> None:
        """Track the newest finite reading of each series."""
        ok = np.isfinite(v)
        if not ok.any():
            return
        s, t, v = s[ok], t[ok], v[ok]
        # Newest reading per series in this call: sort by (series, time), take the last.
        order = np.lexsort((t, s))
        s, t, v = s[order], t[order], v[order]
        last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
        s, t, v = s[last], t[last], v[last]
        newer = ~(t <= self._last_ts[s])  # NaN (never) compares False
        self._last_ts[s[newer]] = t[newer]
        self._last_val[s[newer]] = v[newer]

    def clear(self, series: ArrayLike | None = None) -> None:
        """Forget the readings of ``series`` (all series if None)."""
        sel = slice(None) if series is None else np.asarray(series, dtype=np.int64)
        self._ts[sel] = np.nan
        self._val[sel] = np.nan
        self._last_ts[sel] = np.nan
        self._last_val[sel] = np.nan

    # -- output

    def last(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(ts, value)`` of each series' newest finite reading; NaN where there is none."""
        return self._last_ts.copy(), self._last_val.copy()

    def _mask(self, now: float, window_s: float | None) -> NDArray[np.bool_]:
        w = self.window_s if window_s is None else window_s
        with np.errstate(invalid="ignore"):
            inside: NDArray[np.bool_] = (self._ts > now - w) & (self._ts <= now) & np.isfinite(self._val)
        return inside

    def stats(self, now: float, window_s: float | None = None) -> WindowStats:
        """Count, mean, min and max of every series over ``(now − window, now]``."""
        inside = self._mask(now, window_s)
        count = inside.sum(axis=1)
        vals = np.where(inside, self._val, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, vals.sum(axis=1) / np.maximum(count, 1), np.nan)
        lo = np.where(inside, self._val, np.inf).min(axis=1)
        hi = np.where(inside, self._val, -np.inf).max(axis=1)
        empty = count == 0
        return WindowStats(
            count=count.astype(np.int64),
            mean=mean,
            min=np.where(empty, np.nan, lo),
            max=np.where(empty, np.nan, hi),
        )

    def percentile(self, q: ArrayLike, now: float, window_s: float | None = None) -> NDArray[np.float64]:
        """Percentile(s) ``q`` (0…100, linear interpolation as numpy's default) per series.

        Returns shape ``(n_series,)`` for a scalar ``q``, ``(len(q), n_series)`` otherwise;
        NaN for series without readings in the window.
        """
        qa = np.asarray(q, dtype=np.float64)
        if np.any((qa < 0.0) | (qa > 100.0)):
            raise ValueError(f"percentiles must be within 0..100, got {q!r}")
        inside = self._mask(now, window_s)
        count = inside.sum(axis=1)
        ordered = np.sort(np.where(inside, self._val, np.inf), axis=1)
        pos = np.multiply.outer(np.atleast_1d(qa) / 100.0, np.maximum(count - 1, 0))
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        frac = pos - lo
        rows = np.arange(self.n_series)
        a = ordered[rows, lo]
        b = ordered[rows, hi]
        with np.errstate(invalid="ignore"):
            val = np.where(frac > 0.0, a + (b - a) * frac, a)
        out: NDArray[np.float64] = np.where(count > 0, val, np.nan)
        return out[0] if qa.ndim == 0 else out

    def fraction_below(
        self, threshold: ArrayLike, now: float, window_s: float | None = None
    ) -> NDArray[np.float64]:
        """Share (0…1) of each series' readings in the window that are ``< threshold``.

        ``threshold`` is a scalar or one value per series; NaN for series without readings.
        """
        thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (self.n_series,))
        inside = self._mask(now, window_s)
        count = inside.sum(axis=1)
        below = (inside & (self._val < thr[:, None])).sum(axis=1)
        out: NDArray[np.float64] = np.where(count > 0, below / np.maximum(count, 1), np.nan)
        return out


# --------------------------------------------------------------------------- FM / MPX


def fm_modulation_percent(
    peak_deviation_hz: ArrayLike, full_deviation_hz: float = FM_FULL_DEVIATION_HZ
) -> NDArray[np.float64]:
    """Modulation in percent of full deviation (±75 kHz = 100 %). Sign is ignored."""
    d = np.abs(np.asarray(peak_deviation_hz, dtype=np.float64))
    out: NDArray[np.float64] = 100.0 * d / full_deviation_hz
    return out


def mpx_power_dbr(deviation_hz: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    """MPX power per ITU-R BS.412 from instantaneous deviation samples, in dBr.

    ``deviation_hz`` are samples of the instantaneous frequency deviation of the carrier
    (Hz) over the integration time (60 s in BS.412), along ``axis``. The reference,
    0 dBr, is the power of a sine with ±19 kHz peak deviation, i.e. a mean square
    deviation of 19 000² / 2 Hz². Non-finite samples are ignored; an empty or all-NaN
    input gives NaN.
    """
    d = np.asarray(deviation_hz, dtype=np.float64)
    ok = np.isfinite(d)
    n = ok.sum(axis=axis)
    ms = np.where(ok, d * d, 0.0).sum(axis=axis)
    ref = MPX_REFERENCE_DEVIATION_HZ**2 / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        out: NDArray[np.float64] = np.where(n > 0, 10.0 * np.log10(ms / np.maximum(n, 1) / ref), np.nan)
    return out


def mpx_power_excess_db(power_dbr: ArrayLike, limit_dbr: float = 0.0) -> NDArray[np.float64]:
    """How far MPX power is above the BS.412 limit (0 dBr): > 0 is a violation.

    NaN in, NaN out: an unknown power is neither compliant nor violating.
    """
    out: NDArray[np.float64] = np.asarray(power_dbr, dtype=np.float64) - limit_dbr
    return out


# --------------------------------------------------------------------------- VSWR


def reflection_coefficient(forward_w: ArrayLike, reflected_w: ArrayLike) -> NDArray[np.float64]:
    """Magnitude of the reflection coefficient ``|Γ| = √(Pr / Pf)``.

    NaN when ``Pf ≤ 0`` (no forward power: nothing to measure, e.g. transmitter off),
    when ``Pr < 0`` (an impossible reading) or when either input is NaN. ``Pr ≥ Pf``
    gives ``|Γ| ≥ 1`` (total reflection, or a coupler fault).
    """
    pf = np.asarray(forward_w, dtype=np.float64)
    pr = np.asarray(reflected_w, dtype=np.float64)
    valid = (pf > 0.0) & (pr >= 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.sqrt(np.where(valid, pr, np.nan) / np.where(valid, pf, np.nan))
    out: NDArray[np.float64] = gamma
    return out


def vswr(forward_w: ArrayLike, reflected_w: ArrayLike) -> NDArray[np.float64]:
    """Voltage standing-wave ratio ``(1 + |Γ|) / (1 − |Γ|)`` from forward/reflected power.

    1.0 = perfect match; warnings are usual around 1.3–1.5 and transmitters fold back
    near 1.5–2.0. ``Pr ≥ Pf`` (``|Γ| ≥ 1``) gives ``inf`` (total reflection: open or
    shorted feeder, or a coupler fault). ``Pf ≤ 0``, ``Pr < 0`` or NaN inputs give NaN:
    no measurement, which must not be read as a good match.
    """
    gamma = reflection_coefficient(forward_w, reflected_w)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(gamma < 1.0, (1.0 + gamma) / (1.0 - gamma), np.inf)
    out: NDArray[np.float64] = np.where(np.isnan(gamma), np.nan, ratio)
    return out


def return_loss_db(forward_w: ArrayLike, reflected_w: ArrayLike) -> NDArray[np.float64]:
    """Return loss ``10·log10(Pf / Pr)`` in dB (positive; higher is a better match).

    ``Pr = 0`` gives ``inf`` (perfect match); ``Pr = Pf`` gives 0 dB; ``Pr > Pf`` gives a
    negative value, which is physically impossible and points at the couplers.
    ``Pf ≤ 0``, ``Pr < 0`` or NaN inputs give NaN.
    """
    gamma = reflection_coefficient(forward_w, reflected_w)
    with np.errstate(divide="ignore"):
        out: NDArray[np.float64] = -20.0 * np.log10(gamma)
    return out
