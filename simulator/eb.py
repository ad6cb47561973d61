"""The emergency-broadcast (应急广播) fleet: village endpoints and the dispatch platform.

What the simulator publishes (the contract anbo's emergency-broadcast work consumes;
see ``docs/scenarios.md``):

- ``<prefix>/eb/<endpoint>/status`` every ``heartbeat`` seconds per endpoint
  (staggered evenly over the period), and at once when its state changes: values
  ``online`` (true), ``playing``, ``fault_amplifier``, ``fault_speaker_line``
  (booleans), info ``region``. An endpoint that goes offline simply stops
  publishing (it cannot say so); when it comes back it publishes at once.
- ``<prefix>/eb/platform/dispatch`` when the platform dispatches a message: values
  ``deadline_s``, info ``message_id`` (``M…``) and ``regions`` (comma-separated ids).
- ``<prefix>/eb/<endpoint>/playback`` when an endpoint starts playing a dispatched
  message: values ``playing`` (true), info ``message_id``.

Endpoint ids are ``eb-<region>-<nnnnn>`` with regions ``r01``, ``r02``…; endpoint
``i`` belongs to region ``i mod regions``. Sequence numbers count per (endpoint,
stream) from a time-derived base, as for station telemetry.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from monitor.inventory import EndpointRecord, Inventory
from monitor.wire import encode_readings
from simulator.scenario import EbDispatch, EbEndpointFault, EbOffline, region_id

__all__ = ["DISPATCH_ENDPOINT", "EbFleet", "endpoint_id"]

#: The pseudo-endpoint the platform publishes dispatches under.
DISPATCH_ENDPOINT = "platform"

Emit = Callable[[float, str, str, str, bytes], None]
"""``emit(t, topic, endpoint, stream, payload)`` — one JSON message at scenario time ``t``."""


def endpoint_id(region: int, number: int) -> str:
    """``eb-r01-00001``: region index (0-based) and endpoint number within the fleet."""
    return f"eb-{region_id(region)}-{number:05d}"


@dataclass(order=True, slots=True)
class _Event:
    t: float
    order: int
    kind: str = field(compare=False)  # status | playback
    endpoint: int = field(compare=False)
    message_id: str = field(compare=False, default="")


class EbFleet:
    """``endpoints`` endpoints in ``regions`` regions, heartbeating every ``heartbeat`` s."""

    def __init__(
        self,
        endpoints: int,
        regions: int,
        *,
        heartbeat: float,
        start: float,
        prefix: str,
        seed: int,
        faults: list[EbOffline | EbEndpointFault | EbDispatch],
    ) -> None:
        self.n = endpoints
        self.regions = regions
        self.heartbeat = heartbeat
        self.start = start
        self.prefix = prefix
        rng = np.random.default_rng([seed, 0xEB])
        idx = np.arange(endpoints)
        self.region_of: NDArray[np.int64] = idx % regions
        self.ids = [endpoint_id(int(r), int(i) + 1) for i, r in zip(idx, self.region_of, strict=True)]
        # Staggered heartbeats: evenly over the period, in a shuffled order, with jitter.
        spacing = heartbeat / max(endpoints, 1)
        slots = (rng.permutation(endpoints) + rng.uniform(0.0, 0.9, endpoints)) * spacing
        self._order = np.argsort(slots, kind="stable")
        self._phases = [float(p) for p in slots[self._order]]
        self.offline = np.zeros(endpoints, dtype=bool)
        self.fault_amplifier = np.zeros(endpoints, dtype=bool)
        self.fault_speaker_line = np.zeros(endpoints, dtype=bool)
        self.playing_until = np.full(endpoints, -math.inf)
        base = int(start // heartbeat)
        self._status_seq = np.full(endpoints, base, dtype=np.int64)
        self._playback_seq = np.full(endpoints, int(start), dtype=np.int64)
        self._dispatch_seq = int(start)
        self._events: list[_Event] = []
        self._event_order = 0
        self._faults = sorted(faults, key=lambda f: f.at)
        self._started: set[int] = set()
        self._ended: set[int] = set()
        self._members: dict[int, NDArray[np.int64]] = {}
        for i, f in enumerate(self._faults):
            self._members[i] = self._choose(f, rng)
        #: Dispatches made so far: message id → (time, regions, targeted endpoints).
        self.dispatches: dict[str, tuple[float, list[str], int]] = {}
        self._play_for: dict[str, float] = {}

    # -- the inventory anbo needs to know these endpoints
    def records(self) -> list[EndpointRecord]:
        """The fleet as inventory records: county and township are the region id."""
        return [
            EndpointRecord(
                id=eid,
                name=f"village loudspeaker {i + 1}",
                county=region_id(int(r)),
                township=region_id(int(r)),
                lat=None,
                lon=None,
            )
            for i, (eid, r) in enumerate(zip(self.ids, self.region_of, strict=True))
        ]

    def inventory(self) -> Inventory:
        """An :class:`Inventory` of the fleet (regions at ``region_level = "county"``)."""
        return Inventory.from_records(self.records())

    def inventory_csv(self) -> str:
        """The fleet as an inventory CSV for ``[eb] inventory`` (with ``region_level = "county"``)."""
        rows = ["id,name,county,township"]
        rows += [f"{r.id},{r.name},{r.county},{r.township}" for r in self.records()]
        return "\n".join(rows) + "\n"

    # -- selection
    def _region_index(self, region: str) -> int:
        return int(region[1:]) - 1

    def _choose(
        self, f: EbOffline | EbEndpointFault | EbDispatch, rng: np.random.Generator
    ) -> NDArray[np.int64]:
        if isinstance(f, EbDispatch):
            members = np.flatnonzero(np.isin(self.region_of, [self._region_index(r) for r in f.regions]))
            keep = rng.random(members.size) < f.confirm_share
            return members[keep]
        pool = (
            np.arange(self.n)
            if f.region is None
            else np.flatnonzero(self.region_of == self._region_index(f.region))
        )
        k = math.ceil(f.share * pool.size - 1e-9)
        return np.sort(rng.permutation(pool)[:k])

    def _schedule(self, t: float, kind: str, endpoint: int, message_id: str = "") -> None:
        self._event_order += 1
        heapq.heappush(self._events, _Event(t, self._event_order, kind, endpoint, message_id))

    # -- messages
    def _status(self, t: float, i: int, emit: Emit) -> None:
        self._status_seq[i] += 1
        values = {
            "online": True,
            "playing": bool(t < self.playing_until[i]),
            "fault_amplifier": bool(self.fault_amplifier[i]),
            "fault_speaker_line": bool(self.fault_speaker_line[i]),
        }
        payload = encode_readings(
            self.start + t,
            int(self._status_seq[i]),
            values,
            info={"region": region_id(int(self.region_of[i]))},
        )
        emit(t, f"{self.prefix}/eb/{self.ids[i]}/status", self.ids[i], "status", payload)

    def _apply_faults(self, t0: float, t1: float, emit: Emit, rng: np.random.Generator) -> None:
        for i, f in enumerate(self._faults):
            members = self._members[i]
            if i not in self._started and f.at < t1:
                self._started.add(i)
                at = max(f.at, t0)
                if isinstance(f, EbOffline):
                    self.offline[members] = True
                elif isinstance(f, EbEndpointFault):
                    flags = self.fault_amplifier if f.kind == "amplifier" else self.fault_speaker_line
                    flags[members] = True
                    for m in members:  # report the change at once (回传)
                        self._schedule(at + float(rng.uniform(0.0, 2.0)), "status", int(m))
                else:
                    self._dispatch(at, i, f, emit, rng)
            if i in self._started and i not in self._ended and f.end < t1:
                self._ended.add(i)
                if isinstance(f, EbOffline):
                    self.offline[members] = False
                    for m in members:  # back online: publish at once
                        self._schedule(max(f.end, t0) + float(rng.uniform(0.0, 5.0)), "status", int(m))
                elif isinstance(f, EbEndpointFault):
                    flags = self.fault_amplifier if f.kind == "amplifier" else self.fault_speaker_line
                    flags[members] = False
                    for m in members:
                        self._schedule(max(f.end, t0) + float(rng.uniform(0.0, 2.0)), "status", int(m))

    def _dispatch(self, t: float, index: int, f: EbDispatch, emit: Emit, rng: np.random.Generator) -> None:
        message_id = f.message_id or f"M{int(self.start + t)}{index:02d}"
        self._dispatch_seq += 1
        payload = encode_readings(
            self.start + t,
            self._dispatch_seq,
            {"deadline_s": f.deadline},
            info={"message_id": message_id, "regions": ",".join(f.regions)},
        )
        emit(t, f"{self.prefix}/eb/{DISPATCH_ENDPOINT}/dispatch", DISPATCH_ENDPOINT, "dispatch", payload)
        targeted = int(np.isin(self.region_of, [self._region_index(r) for r in f.regions]).sum())
        self.dispatches[message_id] = (t, list(f.regions), targeted)
        self._play_for[message_id] = f.for_
        for m in self._members[index]:
            lo, hi = f.latency
            self._schedule(t + float(rng.uniform(lo, hi)), "playback", int(m), message_id)

    def _playback(self, t: float, i: int, message_id: str, duration: float, emit: Emit) -> None:
        self._playback_seq[i] += 1
        self.playing_until[i] = t + duration
        payload = encode_readings(
            self.start + t, int(self._playback_seq[i]), {"playing": True}, info={"message_id": message_id}
        )
        emit(t, f"{self.prefix}/eb/{self.ids[i]}/playback", self.ids[i], "playback", payload)

    def emit(self, t0: float, t1: float, emit: Emit, rng: np.random.Generator) -> None:
        """Publish everything due in ``[t0, t1)`` (windows must follow each other)."""
        if self.n == 0:
            return
        self._apply_faults(t0, t1, emit, rng)
        h = self.heartbeat
        a, b = t0 % h, t1 % h
        cycle_start = t0 - a
        ranges = [(a, b, cycle_start)] if b > a else [(a, h, cycle_start), (0.0, b, cycle_start + h)]
        for lo, hi, base in ranges:
            i0 = bisect.bisect_left(self._phases, lo)
            i1 = bisect.bisect_left(self._phases, hi)
            for j in range(i0, i1):
                i = int(self._order[j])
                if not self.offline[i]:
                    self._status(base + self._phases[j], i, emit)
        while self._events and self._events[0].t < t1:
            ev = heapq.heappop(self._events)
            if self.offline[ev.endpoint]:
                continue
            if ev.kind == "status":
                self._status(ev.t, ev.endpoint, emit)
            else:
                self._playback(ev.t, ev.endpoint, ev.message_id, self._play_for[ev.message_id], emit)
