"""Emergency-broadcast (应急广播) endpoint fleet: heartbeats, faults, per-region status.

The fleet of village terminals and adapters (GD/J 079–089; GD/J 089 for IP-controlled
loudspeakers) is held as parallel arrays indexed by endpoint number ``0 … N−1``:

* ``last_heartbeat``: unix seconds of the newest heartbeat, float64, NaN = never heard;
* ``faults``: fault flags reported by the endpoint (amplifier, speaker line, power …),
  a uint32 bitmask whose bit meanings belong to the wire contract; 0 = no fault;
* ``region``: index of the region (county/township) the endpoint belongs to, int32,
  ``0 … n_regions−1``. Mapping endpoint and region names to indices is the caller's job.

An endpoint is *online* at ``now`` when its last heartbeat is at most ``offline_after``
seconds old. One never heard from is *not yet reported* while less than ``offline_after``
has passed since monitoring ``started`` (its first heartbeat may simply not be due yet),
and *offline* after that, like one whose heartbeat is too old. A heartbeat stamped in
the future (clock skew) counts as fresh. Faults are counted only for online endpoints:
the flags of an offline endpoint are stale, and the endpoint is already reported as
offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Fleet", "FleetStatus"]


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """The fleet evaluated at one instant; per-region arrays have shape ``(n_regions,)``."""

    now: float
    #: endpoints per region
    total: NDArray[np.int64]
    #: endpoints with a heartbeat within ``offline_after``
    online: NDArray[np.int64]
    #: ``online / total``; NaN for a region without endpoints
    online_ratio: NDArray[np.float64]
    #: online endpoints with a fault flag (within the evaluated mask) set
    faulty: NDArray[np.int64]
    #: per endpoint: online at ``now``
    online_mask: NDArray[np.bool_]
    #: per endpoint: online and faulty
    faulty_mask: NDArray[np.bool_]
    #: per endpoint: region index (shared with the fleet, do not modify)
    region: NDArray[np.int32]
    #: per endpoint: never heard from, and not yet due (see the module docstring)
    unreported_mask: NDArray[np.bool_]
    #: endpoints per region not yet reported
    unreported: NDArray[np.int64]
    #: per kind of selection, its indices split by region (built on first use: one pass
    #: over the fleet for all regions, where a mask per region would be one per region)
    _by_region: dict[str, list[NDArray[np.intp]]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def offline(self) -> NDArray[np.int64]:
        """Endpoints per region that are offline (heartbeat too old, or never heard and due)."""
        out: NDArray[np.int64] = self.total - self.online - self.unreported
        return out

    def offline_indices(self, region: int | None = None) -> NDArray[np.intp]:
        """Indices of offline endpoints, in ``region`` or in the whole fleet (None)."""
        return self._select("offline", region)

    def unreported_indices(self, region: int | None = None) -> NDArray[np.intp]:
        """Indices of endpoints not yet reported, in ``region`` or everywhere."""
        return self._select("unreported", region)

    def faulty_indices(self, region: int | None = None) -> NDArray[np.intp]:
        """Indices of online endpoints reporting a fault, in ``region`` or everywhere."""
        return self._select("faulty", region)

    def _mask(self, kind: str) -> NDArray[np.bool_]:
        if kind == "offline":
            out: NDArray[np.bool_] = ~self.online_mask & ~self.unreported_mask
            return out
        return self.unreported_mask if kind == "unreported" else self.faulty_mask

    def _select(self, kind: str, region: int | None) -> NDArray[np.intp]:
        if region is None:
            return np.flatnonzero(self._mask(kind))
        n_regions = self.total.shape[0]
        if not 0 <= region < n_regions:
            raise ValueError(f"region index {region} out of range 0..{n_regions - 1}")
        groups = self._by_region.get(kind)
        if groups is None:
            sel = np.flatnonzero(self._mask(kind))
            regions = self.region[sel]
            # A stable sort keeps each region's indices in ascending order.
            ordered = sel[np.argsort(regions, kind="stable")]
            counts = np.bincount(regions, minlength=n_regions)
            groups = np.split(ordered, np.cumsum(counts)[:-1])
            self._by_region[kind] = groups
        return groups[region]


class Fleet:
    """State of ``N`` emergency-broadcast endpoints as arrays; see the module docstring."""

    def __init__(self, region: ArrayLike, n_regions: int | None = None) -> None:
        reg = np.asarray(region)
        if reg.ndim != 1:
            raise ValueError(f"region must be a 1-D array of region indices, got shape {reg.shape}")
        if reg.size and not np.issubdtype(reg.dtype, np.integer):
            raise ValueError(f"region indices must be integers, got {reg.dtype}")
        self.region: NDArray[np.int32] = reg.astype(np.int32)
        lo = int(self.region.min()) if self.region.size else 0
        hi = int(self.region.max()) + 1 if self.region.size else 0
        self.n_regions = hi if n_regions is None else int(n_regions)
        if lo < 0 or hi > self.n_regions:
            raise ValueError(f"region indices must lie in 0..{self.n_regions - 1}")
        n = self.region.shape[0]
        self.last_heartbeat: NDArray[np.float64] = np.full(n, np.nan)
        self.faults: NDArray[np.uint32] = np.zeros(n, dtype=np.uint32)
        self._total = np.bincount(self.region, minlength=self.n_regions).astype(np.int64)

    @property
    def size(self) -> int:
        """Number of endpoints."""
        return int(self.region.shape[0])

    def _indices(self, indices: ArrayLike) -> NDArray[np.intp]:
        idx = np.asarray(indices, dtype=np.intp).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.size):
            raise ValueError(f"endpoint index out of range 0..{self.size - 1}")
        return idx

    def heartbeat(self, indices: ArrayLike, ts: ArrayLike) -> None:
        """Record heartbeats of ``indices`` at ``ts`` (scalar or one per index).

        Keeps the newest time per endpoint, so late or duplicated heartbeats never move
        an endpoint's time backwards. NaN times are ignored.
        """
        idx = self._indices(indices)
        t = np.broadcast_to(np.asarray(ts, dtype=np.float64), idx.shape)
        np.fmax.at(self.last_heartbeat, idx, t)

    def set_faults(self, indices: ArrayLike, flags: ArrayLike) -> None:
        """Replace the fault bitmask of ``indices`` with ``flags`` (scalar or one per index)."""
        idx = self._indices(indices)
        f = np.asarray(flags)
        if f.size and (not np.issubdtype(f.dtype, np.integer) or f.min() < 0 or f.max() > 0xFFFFFFFF):
            raise ValueError("fault flags must be integers in 0..2**32-1")
        self.faults[idx] = np.broadcast_to(f.astype(np.uint32), idx.shape)

    def evaluate(
        self,
        now: float,
        offline_after: float,
        fault_mask: int = 0xFFFFFFFF,
        *,
        started: float | None = None,
    ) -> FleetStatus:
        """Per-region online and fault counts at ``now``.

        ``offline_after`` is the heartbeat age (s) beyond which an endpoint is offline;
        ``fault_mask`` selects the fault bits that count (all by default); ``started``
        is when monitoring began (None: long ago, so nobody is "not yet reported").
        """
        if not offline_after >= 0.0:
            raise ValueError(f"offline_after must be >= 0 s, got {offline_after!r}")
        # NaN (never heard) compares False: offline.
        online = self.last_heartbeat >= now - offline_after
        faulty = online & ((self.faults & np.uint32(fault_mask)) != 0)
        n_regions = self.n_regions
        online_n = np.bincount(self.region[online], minlength=n_regions).astype(np.int64)
        faulty_n = np.bincount(self.region[faulty], minlength=n_regions).astype(np.int64)
        if started is not None and now - started < offline_after:
            unreported = np.isnan(self.last_heartbeat)
        else:
            unreported = np.zeros(self.size, dtype=bool)
        unreported_n = np.bincount(self.region[unreported], minlength=n_regions).astype(np.int64)
        total = self._total
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(total > 0, online_n / np.maximum(total, 1), np.nan)
        return FleetStatus(
            now=float(now),
            total=total.copy(),
            online=online_n,
            online_ratio=ratio,
            faulty=faulty_n,
            online_mask=online,
            faulty_mask=faulty,
            region=self.region,
            unreported_mask=unreported,
            unreported=unreported_n,
        )
