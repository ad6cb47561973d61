"""Emergency-broadcast dispatch coverage: who was asked to play a message, who confirmed, how fast.

The platform announces a *dispatch* (message id, target regions, time); every endpoint
that plays it confirms (回传). At dispatch time the tracker records the endpoints that
were **targeted and online** (by the :class:`~probes.eb.Fleet`'s heartbeat array):
only they can be expected to play. Confirmations then fill in one time per endpoint
(the earliest wins; duplicates and confirmations from endpoints not targeted are
counted apart, never as coverage).

Per dispatch, for each deadline (e.g. 60, 120, 300 s after the dispatch time):
coverage = share of the targeted online endpoints that confirmed within the deadline.
Before a deadline has passed its coverage is provisional (so far). After the last
deadline the dispatch is judged: :meth:`DispatchTracker.under_delivered` lists the
dispatches whose coverage stayed below a minimum. A dispatch that targeted no online
endpoint has unknown coverage (None): the region status alerts say why.

Times are unix seconds (the platform's and the endpoints' clocks); a confirmation
stamped before its dispatch (clock skew) has latency 0. Memory is bounded: a dispatch
is dropped ``retention_s`` after its last deadline, and when more than
``max_dispatches`` dispatches or ``max_entries`` targeted endpoints in all are held, the
oldest are dropped early (counted in :attr:`DispatchTracker.evicted_early`).
Pure: no clock reads, ``now`` is an argument.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from probes.eb import Fleet

__all__ = [
    "DEFAULT_DEADLINES_S",
    "DispatchReport",
    "DispatchTracker",
    "dispatch_measurements",
    "ids_by_region",
    "truncated_ids",
]

DEFAULT_DEADLINES_S: Final = (60.0, 120.0, 300.0)


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """One dispatch at one instant. Per-deadline tuples follow ``deadlines``."""

    message_id: str
    ts: float
    deadlines: tuple[float, ...]
    #: targeted endpoints that were online at dispatch time
    targeted: int
    #: targeted endpoints that have confirmed so far (in time or late)
    confirmed: int
    #: per deadline: targeted endpoints that confirmed within it
    confirmed_within: tuple[int, ...]
    #: per deadline: ``confirmed_within / targeted`` (None when nothing was targeted)
    coverage: tuple[float | None, ...]
    #: per deadline: whether it has passed (its coverage is final)
    passed: tuple[bool, ...]
    #: confirmation latency quantiles over every confirmation so far (s), None if none
    latency_p50_s: float | None
    latency_p90_s: float | None
    latency_max_s: float | None
    #: endpoint indices (into the fleet) that did not confirm within the last deadline
    #: (not yet, before it has passed), ascending
    missing: NDArray[np.intp]
    #: confirmations from endpoints that were not targeted (or offline at dispatch time)
    untargeted_confirmations: int

    @property
    def past_deadline(self) -> bool:
        """Whether the last deadline has passed (the dispatch can be judged)."""
        return self.passed[-1]

    @property
    def final_coverage(self) -> float | None:
        """Coverage within the last deadline (provisional until it has passed)."""
        return self.coverage[-1]

    @property
    def late(self) -> int:
        """Targeted endpoints that confirmed, but after the last deadline."""
        return self.confirmed - self.confirmed_within[-1]

    def under_delivered(self, min_coverage: float) -> bool:
        """Past the last deadline with a known coverage below ``min_coverage``."""
        cov = self.final_coverage
        return self.past_deadline and cov is not None and cov < min_coverage


@dataclass(slots=True)
class _Dispatch:
    message_id: str
    ts: float
    deadlines: tuple[float, ...]
    #: targeted online endpoints, ascending (int32: 2**31 endpoints is plenty)
    targeted: NDArray[np.int32]
    #: earliest confirmation time per targeted endpoint, NaN = none
    confirmed_at: NDArray[np.float64]
    untargeted: int = 0
    version: int = 0
    cache: tuple[tuple[int, tuple[bool, ...]], DispatchReport] | None = field(default=None)

    @property
    def expires_base(self) -> float:
        return self.ts + self.deadlines[-1]


def _deadlines(deadlines: Sequence[float]) -> tuple[float, ...]:
    d = tuple(float(x) for x in deadlines)
    if not d:
        raise ValueError("at least one deadline is required")
    if not all(math.isfinite(x) and x > 0 for x in d):
        raise ValueError(f"deadlines must be finite and > 0 s, got {list(deadlines)}")
    if any(b <= a for a, b in itertools.pairwise(d)):
        raise ValueError(f"deadlines must be increasing, got {list(deadlines)}")
    return d


class DispatchTracker:
    """Coverage of recent dispatches over a fleet of ``fleet_size`` endpoints."""

    def __init__(
        self,
        *,
        deadlines: Sequence[float] = DEFAULT_DEADLINES_S,
        retention_s: float = 3600.0,
        max_dispatches: int = 100,
        max_entries: int = 2_000_000,
    ) -> None:
        self.deadlines = _deadlines(deadlines)
        if not (math.isfinite(retention_s) and retention_s >= 0):
            raise ValueError(f"retention_s must be a finite number >= 0, got {retention_s!r}")
        if max_dispatches < 1 or max_entries < 1:
            raise ValueError("max_dispatches and max_entries must be >= 1")
        self.retention_s = float(retention_s)
        self.max_dispatches = int(max_dispatches)
        self.max_entries = int(max_entries)
        #: insertion order = dispatch order (oldest first)
        self._dispatches: dict[str, _Dispatch] = {}
        self._entries = 0
        #: dispatches dropped by the size limits before their retention ended
        self.evicted_early = 0
        #: confirmations for message ids not (or no longer) tracked
        self.unknown_confirmations = 0
        #: announcements of a message id already tracked (ignored: the first one counts)
        self.duplicate_dispatches = 0

    def __len__(self) -> int:
        return len(self._dispatches)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._dispatches

    @property
    def message_ids(self) -> list[str]:
        """Tracked dispatches, oldest first."""
        return list(self._dispatches)

    @property
    def entries(self) -> int:
        """Targeted endpoints held over all tracked dispatches (the memory bound)."""
        return self._entries

    # -- input ------------------------------------------------------------------------------

    def dispatch(
        self,
        message_id: str,
        regions: ArrayLike,
        ts: float,
        fleet: Fleet,
        offline_after: float,
        *,
        region_of: ArrayLike | None = None,
        deadlines: Sequence[float] | None = None,
    ) -> int:
        """Record a dispatch to ``regions`` at ``ts``; returns how many endpoints it targets.

        ``regions`` are region indices of ``region_of`` (one region index per endpoint,
        default the fleet's own ``region``; pass e.g. the inventory's county array to
        target whole counties). An endpoint is targeted if its region is listed and its
        last heartbeat is at most ``offline_after`` seconds older than ``ts``.
        A message id already tracked is ignored (returns its targeted count).
        """
        if not math.isfinite(ts):
            raise ValueError(f"dispatch time must be finite, got {ts!r}")
        if not offline_after >= 0:
            raise ValueError(f"offline_after must be >= 0 s, got {offline_after!r}")
        existing = self._dispatches.get(message_id)
        if existing is not None:
            self.duplicate_dispatches += 1
            return int(existing.targeted.shape[0])
        owner = fleet.region if region_of is None else np.asarray(region_of)
        if owner.shape != (fleet.size,):
            raise ValueError(f"region_of must have one entry per endpoint ({fleet.size}), got {owner.shape}")
        wanted = np.unique(np.asarray(regions, dtype=np.int64).ravel())
        mask = np.isin(owner, wanted) & (fleet.last_heartbeat >= ts - offline_after)
        targeted = np.flatnonzero(mask).astype(np.int32)
        d = self.deadlines if deadlines is None else _deadlines(deadlines)
        self._dispatches[message_id] = _Dispatch(
            message_id, float(ts), d, targeted, np.full(targeted.shape[0], np.nan)
        )
        self._entries += int(targeted.shape[0])
        self._enforce_limits()
        return int(targeted.shape[0])

    def confirm(self, message_id: str, endpoints: ArrayLike, ts: ArrayLike) -> int:
        """Record playback confirmations of ``endpoints`` (indices) at ``ts`` (scalar or one each).

        Returns how many targeted endpoints confirmed for the first time. Confirmations
        of untracked messages and from untargeted endpoints are counted, not applied.
        """
        d = self._dispatches.get(message_id)
        idx = np.asarray(endpoints, dtype=np.int64).ravel()
        if d is None:
            self.unknown_confirmations += int(idx.shape[0])
            return 0
        t = np.broadcast_to(np.asarray(ts, dtype=np.float64), idx.shape)
        keep = np.isfinite(t)
        idx, t = idx[keep], t[keep]
        n = d.targeted.shape[0]
        pos = np.searchsorted(d.targeted, idx)
        hit = pos < n
        hit[hit] = d.targeted[pos[hit]] == idx[hit]
        d.untargeted += int((~hit).sum())
        pos, t = pos[hit], t[hit]
        if pos.size == 0:
            return 0
        uniq = np.unique(pos)
        newly = int(np.count_nonzero(np.isnan(d.confirmed_at[uniq])))
        np.fmin.at(d.confirmed_at, pos, t)
        d.version += 1
        return newly

    # -- output -----------------------------------------------------------------------------

    def report(self, message_id: str, now: float) -> DispatchReport:
        """The coverage of one tracked dispatch at ``now``; raises KeyError if untracked."""
        return _report(self._dispatches[message_id], now)

    def reports(self, now: float) -> list[DispatchReport]:
        """Every tracked dispatch at ``now``, oldest first (after evicting expired ones)."""
        self.evict(now)
        return [_report(d, now) for d in self._dispatches.values()]

    def under_delivered(self, now: float, min_coverage: float) -> list[DispatchReport]:
        """Dispatches past their last deadline whose coverage is below ``min_coverage``."""
        return [r for r in self.reports(now) if r.under_delivered(min_coverage)]

    def evict(self, now: float) -> list[str]:
        """Drop dispatches whose last deadline passed more than ``retention_s`` ago."""
        gone = [m for m, d in self._dispatches.items() if now > d.expires_base + self.retention_s]
        for m in gone:
            self._drop(m)
        return gone

    def _drop(self, message_id: str) -> None:
        d = self._dispatches.pop(message_id)
        self._entries -= int(d.targeted.shape[0])

    def _enforce_limits(self) -> None:
        # Never drop the dispatch just added, even if it alone exceeds max_entries.
        while len(self._dispatches) > 1 and (
            len(self._dispatches) > self.max_dispatches or self._entries > self.max_entries
        ):
            self._drop(next(iter(self._dispatches)))
            self.evicted_early += 1


def _report(d: _Dispatch, now: float) -> DispatchReport:
    passed = tuple(bool(now >= d.ts + x) for x in d.deadlines)
    key = (d.version, passed)
    if d.cache is not None and d.cache[0] == key:
        return d.cache[1]
    latency = np.maximum(d.confirmed_at - d.ts, 0.0)  # NaN stays NaN
    done = latency[~np.isnan(latency)]
    targeted = int(d.targeted.shape[0])
    with np.errstate(invalid="ignore"):
        within = [int(np.count_nonzero(latency <= x)) for x in d.deadlines]
        in_time = latency <= d.deadlines[-1]
    if done.size:
        p50, p90 = (float(v) for v in np.percentile(done, [50.0, 90.0]))
        pmax: float | None = float(done.max())
    else:
        p50 = p90 = math.nan
        pmax = None
    report = DispatchReport(
        message_id=d.message_id,
        ts=d.ts,
        deadlines=d.deadlines,
        targeted=targeted,
        confirmed=int(done.size),
        confirmed_within=tuple(within),
        coverage=tuple((w / targeted) if targeted else None for w in within),
        passed=passed,
        latency_p50_s=None if math.isnan(p50) else p50,
        latency_p90_s=None if math.isnan(p90) else p90,
        latency_max_s=pmax,
        missing=d.targeted[~in_time].astype(np.intp),
        untargeted_confirmations=d.untargeted,
    )
    d.cache = (key, report)
    return report


def truncated_ids(names: Sequence[str], limit: int = 20, *, total: int | None = None) -> str:
    """``"a, b, c"``; when there are more than ``limit`` (or ``total`` is larger than the
    names given), the first ``limit`` and ``", … (+N more)"``."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    count = len(names) if total is None else max(total, len(names))
    shown = list(names[:limit])
    rest = count - len(shown)
    text = ", ".join(shown)
    if rest <= 0:
        return text
    return f"{text}, … (+{rest} more)" if text else f"{rest} endpoints"


def dispatch_measurements(
    report: DispatchReport, endpoint_ids: Sequence[str], *, max_ids: int = 20
) -> dict[str, float | str | None]:
    """The ``eb_dispatch`` target's measurements (see ``rules/packs/eb.yml``).

    ``endpoint_ids`` maps fleet indices to endpoint ids (the inventory's ``ids``).
    ``dispatch_coverage`` and ``dispatch_confirmed`` count confirmations within the last
    deadline (provisional until ``dispatch_past_deadline`` is 1); ``dispatch_missing_ids``
    lists at most ``max_ids`` of the endpoints missing, then how many more.
    """
    shown = [endpoint_ids[int(i)] for i in report.missing[:max_ids]]
    return {
        "dispatch_coverage": report.final_coverage,
        "dispatch_targeted": float(report.targeted),
        "dispatch_confirmed": float(report.confirmed_within[-1]),
        "dispatch_past_deadline": 1.0 if report.past_deadline else 0.0,
        "dispatch_missing_ids": truncated_ids(shown, max_ids, total=int(report.missing.shape[0])),
        "dispatch_latency_p50_seconds": report.latency_p50_s,
        "dispatch_latency_p90_seconds": report.latency_p90_s,
        "dispatch_latency_max_seconds": report.latency_max_s,
    }


def ids_by_region(
    indices: ArrayLike,
    region: NDArray[np.integer],
    n_regions: int,
    endpoint_ids: Sequence[str],
    limit: int = 20,
) -> list[str]:
    """Per region, :func:`truncated_ids` of the endpoints ``indices`` that lie in it.

    For the ``eb_offline_ids`` / ``eb_fault_ids`` measurements of ``eb_region`` targets:
    pass e.g. ``np.flatnonzero(~status.online_mask)`` and the fleet's ``region``. One
    grouping pass (a stable sort), so within a region the ids keep the order of
    ``indices`` (ascending for ``flatnonzero``); regions without any get ``""``.
    """
    idx = np.asarray(indices, dtype=np.intp).ravel()
    out = [""] * n_regions
    if idx.size == 0:
        return out
    regs = np.asarray(region)[idx]
    order = np.argsort(regs, kind="stable")
    counts = np.bincount(regs, minlength=n_regions)
    starts = np.cumsum(counts) - counts
    grouped = idx[order]
    for r in np.flatnonzero(counts).tolist():
        s, n = int(starts[r]), int(counts[r])
        shown = [endpoint_ids[i] for i in grouped[s : s + min(limit, n)].tolist()]
        out[r] = truncated_ids(shown, limit, total=n)
    return out
