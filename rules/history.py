"""Bounded history of the measurements that windowed functions (``avg_over`` …) read.

The engine samples each such measurement for every target at every evaluation. All
targets share the sample times, so the history is one ring of times plus, per
measurement, a ``(targets × samples)`` array: a window over every target at once is a
column slice and one numpy reduction.

The ring starts small and doubles while the longest window needs more samples than it
holds, up to ``max_samples`` (then the oldest samples of a very long window are lost:
the window is effectively shorter). Only measurements some rule windows over are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray

from rules.expr import Column

__all__ = ["History"]

_EPS: Final = 1e-9


class History:
    """Ring buffer of past values per (target, measurement); see the module docstring.

    ``windows`` maps each measurement to the longest window (seconds) any rule needs.
    """

    def __init__(self, windows: Mapping[str, float], max_samples: int = 4096, initial: int = 16) -> None:
        self.span = max(windows.values(), default=0.0)
        self.names = tuple(sorted(windows))
        self.max_samples = max(2, max_samples)
        self._cap = max(2, min(initial, self.max_samples))
        self._rows = 0
        self._row_cap = 8
        self._count = 0  # samples written so far
        self._times = np.full(self._cap, np.nan)
        self._values = {n: np.full((self._row_cap, self._cap), np.nan) for n in self.names}
        # Only measurements that have carried strings (identity codes) get an object ring.
        self._strings: dict[str, NDArray[np.object_]] = {}
        self._slots: dict[str, int] = {}
        self._order_cache: tuple[int, NDArray[np.intp]] | None = None

    @property
    def capacity(self) -> int:
        """Samples the ring holds now."""
        return self._cap

    def rows_for(self, targets: Sequence[str]) -> NDArray[np.intp]:
        """History rows of ``targets`` (new targets get a row with no past)."""
        rows = np.empty(len(targets), dtype=np.intp)
        for i, name in enumerate(targets):
            row = self._slots.get(name)
            if row is None:
                row = self._slots[name] = self._rows
                self._rows += 1
            rows[i] = row
        if self._rows > self._row_cap:
            self._grow_rows()
        return rows

    def sample(self, now: float, rows: NDArray[np.intp], columns: Mapping[str, Column]) -> None:
        """Record this tick's value of each kept measurement for the targets in ``rows``."""
        if not self.names:
            return
        if self._count >= self._cap and self._cap < self.max_samples:
            oldest = self._times[self._count % self._cap]
            if oldest >= now - self.span - _EPS:
                self._grow_samples()
        w = self._count % self._cap
        self._times[w] = now
        for name in self.names:
            values = self._values[name]
            values[:, w] = np.nan
            col = columns[name]
            strings = self._strings.get(name)
            if strings is not None:
                strings[:, w] = None
            if col.dtype == np.float64:
                values[rows, w] = col
                continue
            for row, x in zip(rows, col, strict=True):
                if isinstance(x, str):
                    if strings is None:
                        strings = self._strings[name] = np.full(values.shape, None, dtype=object)
                    strings[row, w] = x
                elif x is not None:
                    values[row, w] = float(x)
        self._count += 1
        self._order_cache = None

    def window(
        self, func: str, name: str, seconds: float, now: float, rows: NDArray[np.intp]
    ) -> NDArray[np.float64]:
        """``func`` over the samples of ``name`` in ``[now − seconds, now]`` for ``rows``."""
        cols = self._columns(now - seconds - _EPS)
        out = np.full(len(rows), np.nan)
        if name not in self._values or len(cols) == 0:
            return out
        plain = self._values[name][np.ix_(rows, cols)]
        if func == "changes_over":
            strings = self._strings.get(name)
            data = plain if strings is None else _with_string_codes(plain, strings[np.ix_(rows, cols)])
            known = ~np.isnan(data)
            has = known.any(axis=1)
            out[has] = _changes(data, known)[has]
            return out
        # Strings (identity codes) have no mean or order: only numeric samples count.
        known = ~np.isnan(plain)
        has = known.any(axis=1)
        if func == "avg_over":
            sums = np.where(known, plain, 0.0).sum(axis=1)
            out[has] = sums[has] / known.sum(axis=1)[has]
        elif func == "min_over":
            out[has] = np.where(known, plain, np.inf).min(axis=1)[has]
        elif func == "max_over":
            out[has] = np.where(known, plain, -np.inf).max(axis=1)[has]
        else:
            raise ValueError(f"unknown window function {func!r}")
        return out

    def carry_over(self, old: History) -> int:
        """Take over ``old``'s samples of the measurements both keep; return how many samples.

        Used when the rules are reloaded (SIGHUP): a window that was half full stays
        half full instead of starting empty. Measurements only ``old`` kept are dropped,
        ones only this history keeps have no past; the samples are replayed in time order,
        so the ring grows as it would have.
        """
        if self._count or not old._count or not set(self.names) & set(old.names):
            return 0
        targets = list(old._slots)
        old_rows = np.array([old._slots[t] for t in targets], dtype=np.intp)
        rows = self.rows_for(targets)
        nothing = np.full(len(targets), np.nan)
        order = old._columns(-np.inf)
        for w in order:
            columns: dict[str, Column] = {}
            for name in self.names:
                if name not in old._values:
                    columns[name] = nothing
                    continue
                values = old._values[name][old_rows, w]
                strings = old._strings.get(name)
                if strings is None:
                    columns[name] = values
                else:
                    col = strings[old_rows, w].copy()
                    plain = col == None  # noqa: E711 (element-wise test of an object array)
                    col[plain] = values[plain]
                    columns[name] = col
            self.sample(float(old._times[w]), rows, columns)
        return len(order)

    # -- internals

    def _columns(self, since: float) -> NDArray[np.intp]:
        """Ring positions with samples at or after ``since``, oldest first."""
        if self._order_cache is None or self._order_cache[0] != self._count:
            n = min(self._count, self._cap)
            start = self._count % self._cap if self._count >= self._cap else 0
            order = (start + np.arange(n)) % self._cap
            self._order_cache = (self._count, order.astype(np.intp))
        order = self._order_cache[1]
        return order[self._times[order] >= since]

    def _grow_samples(self) -> None:
        cap = self._cap
        start = self._count % cap
        order = (start + np.arange(cap)) % cap
        new_cap = min(cap * 2, self.max_samples)
        times = np.full(new_cap, np.nan)
        times[:cap] = self._times[order]
        self._times = times
        for name, values in self._values.items():
            grown = np.full((values.shape[0], new_cap), np.nan)
            grown[:, :cap] = values[:, order]
            self._values[name] = grown
        for name, strings in self._strings.items():
            sgrown = np.full((strings.shape[0], new_cap), None, dtype=object)
            sgrown[:, :cap] = strings[:, order]
            self._strings[name] = sgrown
        self._cap = new_cap
        self._count = cap

    def _grow_rows(self) -> None:
        new_rows = max(self._rows, self._row_cap * 2)
        for name, values in self._values.items():
            grown = np.full((new_rows, self._cap), np.nan)
            grown[: values.shape[0]] = values
            self._values[name] = grown
        for name, strings in self._strings.items():
            sgrown = np.full((new_rows, self._cap), None, dtype=object)
            sgrown[: strings.shape[0]] = strings
            self._strings[name] = sgrown
        self._row_cap = new_rows


def _with_string_codes(data: NDArray[np.float64], strings: NDArray[np.object_]) -> NDArray[np.float64]:
    """``data`` with each string sample replaced by a code that identifies that string."""
    out = data.copy()
    codes: dict[str, float] = {}
    for (r, c), s in np.ndenumerate(strings):
        if isinstance(s, str):
            out[r, c] = codes.setdefault(s, -1e15 - len(codes))
    return out


def _changes(data: NDArray[np.float64], known: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Per row: how many known samples differ from the known sample before them."""
    if data.shape[1] < 2:
        return np.zeros(data.shape[0])
    positions = np.where(known, np.arange(data.shape[1]), -1)
    np.maximum.accumulate(positions, axis=1, out=positions)
    previous = positions[:, :-1]
    prev_values = np.take_along_axis(data, np.maximum(previous, 0), axis=1)
    changed = known[:, 1:] & (previous >= 0) & (data[:, 1:] != prev_values)
    counts: NDArray[np.float64] = changed.sum(axis=1).astype(np.float64)
    return counts
