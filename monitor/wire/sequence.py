"""Sequence numbers per (target, stream): in order, duplicates (QoS 1 redelivery),
gaps, late arrivals and resets, with an implausible jump taken as a reset."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Final, NamedTuple

# --------------------------------------------------------------------------- sequence


class SeqEvent(StrEnum):
    """How one sequence number relates to those seen before on a (target, stream)."""

    FIRST = "first"
    IN_ORDER = "in_order"
    GAP = "gap"
    DUPLICATE = "duplicate"
    LATE = "late"
    RESET = "reset"


class SeqResult(NamedTuple):
    """``missing`` is the change in the count of missing messages caused by this one.

    ``gap``: ``+n`` (messages skipped); ``late``: ``-1`` when it fills a hole a
    previous gap counted, ``0`` when it is older than the first message of the
    current baseline; every other event: ``0``. Summing ``missing`` over all
    results gives the messages still missing (never negative).
    """

    event: SeqEvent
    missing: int = 0

    @property
    def accepted(self) -> bool:
        """False only for duplicates: everything else is new data to process."""
        return self.event is not SeqEvent.DUPLICATE


_FIRST: Final = SeqResult(SeqEvent.FIRST)
_IN_ORDER: Final = SeqResult(SeqEvent.IN_ORDER)
_DUPLICATE: Final = SeqResult(SeqEvent.DUPLICATE)
_RESET: Final = SeqResult(SeqEvent.RESET)
_LATE_FILL: Final = SeqResult(SeqEvent.LATE, -1)
_LATE_OLD: Final = SeqResult(SeqEvent.LATE, 0)


class SeqTracker:
    """Gaps, duplicates, reordering and restarts on one (target, stream).

    Keeps the highest sequence number seen and a bitset of which of the last
    ``window`` numbers (``highest - window + 1 .. highest``) arrived. Per
    observed ``seq``:

    - first observation: ``first`` (the baseline starts here);
    - ``seq == highest + 1``: ``in_order``;
    - ``seq > highest + 1``: ``gap``, ``missing = seq - highest - 1``;
    - ``seq <= highest`` within the window and already seen: ``duplicate``
      (QoS 1 redelivery; drop it);
    - ``seq <= highest`` within the window, not seen: ``late`` (reordered; keep
      it; ``missing = -1`` when it fills a hole a gap counted);
    - ``seq <= highest - window`` (beyond the window): ``reset`` -- the
      publisher restarted; the baseline starts again at ``seq``;
    - if ``ts`` is given with every observation: ``seq <= highest`` but ``ts``
      newer than the message carrying ``highest`` is also ``reset``. A
      redelivered or reordered message is never newer than the newest one, a
      restarted publisher's messages are, so a restart within the window is
      not mistaken for a run of duplicates.

    - a forward jump is a gap only while it is *plausible*: at most ``max_gap``
      messages skipped, or, when the receive time ``rx`` (anbo's own monotonic
      clock, which a publisher cannot forge) is given, at most ``max_rate``
      messages per second since the message carrying ``highest`` arrived. A
      jump beyond that (a stale replay, a client publishing a far-away ``seq``)
      is a ``reset``: the baseline starts again at ``seq`` instead of counting
      billions of missing messages that were never sent.

    A plausible forward jump is always a gap: a publisher restarting at a
    slightly higher number cannot be told apart from lost messages. O(1)
    amortized per call (one shift of a ``window``-bit integer).
    """

    __slots__ = (
        "_base",
        "_bits",
        "_highest",
        "_highest_rx",
        "_highest_ts",
        "_mask",
        "_window",
        "duplicates",
        "late",
        "max_gap",
        "max_rate",
        "missing",
        "observed",
        "resets",
    )

    def __init__(self, window: int = 1024, *, max_gap: int = 10_000, max_rate: float = 1000.0) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        if max_gap < 0 or not max_rate >= 0:
            raise ValueError("max_gap and max_rate must be >= 0")
        self._window = window
        #: Most messages a forward jump may skip and still count as a gap (without ``rx``,
        #: or when the time since the highest does not allow more at ``max_rate``/s).
        self.max_gap = max_gap
        self.max_rate = max_rate
        self._highest_rx: float | None = None
        self._mask = (1 << window) - 1
        self._highest: int | None = None
        self._highest_ts = -math.inf
        self._base = 0
        self._bits = 0  # bit i set <=> seq (highest - i) was seen
        #: Messages observed, duplicates among them, late arrivals, resets.
        self.observed = 0
        self.duplicates = 0
        self.late = 0
        self.resets = 0
        #: Messages currently missing (sum of ``SeqResult.missing``).
        self.missing = 0

    @property
    def window(self) -> int:
        return self._window

    @property
    def highest(self) -> int | None:
        return self._highest

    def _baseline(self, seq: int, ts: float | None, rx: float | None) -> None:
        self._highest = seq
        self._base = seq
        self._bits = 1
        self._highest_ts = -math.inf if ts is None else ts
        self._highest_rx = rx

    def plausible_gap(self, skipped: int, rx: float | None) -> bool:
        """Whether ``skipped`` messages can really have been lost since the highest arrived."""
        if skipped <= self.max_gap:
            return True
        last = self._highest_rx
        return rx is not None and last is not None and skipped <= self.max_rate * (rx - last)

    def observe(self, seq: int, ts: float | None = None, rx: float | None = None) -> SeqResult:
        self.observed += 1
        highest = self._highest
        if highest is None:
            self._baseline(seq, ts, rx)
            return _FIRST
        d = seq - highest
        if d > 0:
            if d > self.max_gap + 1 and not self.plausible_gap(d - 1, rx):
                self.resets += 1
                self._baseline(seq, ts, rx)
                return _RESET
            self._highest = seq
            self._highest_rx = rx
            if ts is not None and ts > self._highest_ts:
                self._highest_ts = ts
            self._bits = 1 if d >= self._window else ((self._bits << d) | 1) & self._mask
            if d == 1:
                return _IN_ORDER
            self.missing += d - 1
            return SeqResult(SeqEvent.GAP, d - 1)
        back = -d
        if back >= self._window or (
            ts is not None and ts > self._highest_ts and self._highest_ts != -math.inf
        ):
            self.resets += 1
            self._baseline(seq, ts, rx)
            return _RESET
        bit = 1 << back
        if self._bits & bit:
            self.duplicates += 1
            return _DUPLICATE
        self._bits |= bit
        self.late += 1
        if seq < self._base:
            return _LATE_OLD
        self.missing -= 1
        return _LATE_FILL
