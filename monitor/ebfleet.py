"""The emergency-broadcast fleet at run time: heartbeats, faults, dispatch coverage.

Endpoints in the ``[eb] inventory`` publish (wire contract, section on endpoints):

- ``<prefix>/eb/<endpoint>/status``: JSON readings, the heartbeat; values
  ``fault_*`` flags (amplifier, speaker line...) and optionally ``online``/``playing``;
- ``<prefix>/eb/<endpoint>/playback``: JSON readings with ``info.message_id`` and
  ``values.playing == 1``: the endpoint confirms it played that dispatch;
- ``<prefix>/eb/<platform>/dispatch``: the platform announces a dispatch with
  ``info.message_id`` and ``info.regions`` (region names at ``[eb] region_level``,
  comma separated; ``*`` for all).

Everything is kept as arrays over the whole fleet (``probes.eb.Fleet``,
``probes.dispatch.DispatchTracker``); per-region figures become Prometheus series and
rule targets (kind ``eb_region``), never per-endpoint series. Sequence numbers of
endpoints are not tracked (a heartbeat is idempotent; a hundred thousand trackers
would cost more than they tell).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitor.inventory import Inventory, load_inventory
from monitor.settings import EbSettings
from monitor.stats import DropReason
from monitor.wire import Payload, Readings
from probes.dispatch import DispatchReport, DispatchTracker, dispatch_measurements, truncated_ids
from probes.eb import Fleet, FleetStatus
from rules import TargetView

log = structlog.get_logger(__name__)

STREAMS = frozenset({"status", "playback"})
PLATFORM_STREAMS = frozenset({"dispatch"})


@dataclass(slots=True)
class EbCounters:
    heartbeats: int = 0
    confirmations: int = 0
    dispatches: int = 0
    unknown_regions: int = 0


class EbMonitor:
    """One station's view of its emergency-broadcast endpoints."""

    def __init__(self, settings: EbSettings, inventory: Inventory, station: str) -> None:
        self.settings = settings
        self.inventory = inventory
        self.station = station
        self.level = settings.region_level
        self.region_names = inventory.region_names(self.level)
        self._region_index = {name: i for i, name in enumerate(self.region_names)}
        self.fleet: Fleet = inventory.fleet(self.level)
        self.tracker = DispatchTracker(
            deadlines=settings.dispatch_deadlines, retention_s=settings.dispatch_retention
        )
        self.counters = EbCounters()
        self.status: FleetStatus | None = None
        #: Wall time of the first evaluation: until offline_after has passed since, an
        #: endpoint not yet heard from is not known to be offline (it may not be due).
        self.started: float | None = None
        self.reports: list[DispatchReport] = []
        self._fault_keys: dict[str, int] = {}
        # Heartbeats are queued per message (three list appends) and applied to the
        # fleet arrays once per tick, in one vectorized batch.
        self._hb_index: list[int] = []
        self._hb_ts: list[float] = []
        self._hb_flags: list[int] = []

    @classmethod
    def from_settings(cls, settings: EbSettings, station: str) -> EbMonitor | None:
        if not settings.inventory:
            return None
        return cls(settings, load_inventory(settings.inventory), station)

    # -- routing (pipeline side) --------------------------------------------------------
    def check(self, endpoint: str, stream: str) -> DropReason | None:
        """Why a message from ``endpoint``/``stream`` is not for us (before decoding)."""
        if endpoint == self.settings.platform:
            return None if stream in PLATFORM_STREAMS else DropReason.UNKNOWN_STREAM
        if endpoint not in self.inventory.index:
            return DropReason.UNKNOWN_ENDPOINT
        return None if stream in STREAMS else DropReason.UNKNOWN_STREAM

    def handle(self, endpoint: str, stream: str, payload: Payload) -> None:
        if not isinstance(payload, Readings):
            return
        if endpoint == self.settings.platform:
            self._dispatch(payload)
            return
        i = self.inventory.index[endpoint]
        if stream == "status":
            self.counters.heartbeats += 1
            flags = 0
            for key, value in payload.values.items():
                if value and key.startswith("fault_"):
                    flags |= self._fault_bit(key)
            self._hb_index.append(i)
            self._hb_ts.append(payload.ts)
            self._hb_flags.append(flags)
        elif stream == "playback" and payload.values.get("playing", 1.0) and "message_id" in payload.info:
            self.counters.confirmations += 1
            self.fleet.heartbeat(np.array([i]), np.array([payload.ts]))  # playing proves it is alive
            self.tracker.confirm(payload.info["message_id"], np.array([i]), np.array([payload.ts]))

    def _apply_heartbeats(self) -> None:
        if not self._hb_index:
            return
        index = np.array(self._hb_index, dtype=np.intp)
        ts = np.array(self._hb_ts)
        flags = np.array(self._hb_flags, dtype=np.uint32)
        self._hb_index, self._hb_ts, self._hb_flags = [], [], []
        self.fleet.heartbeat(index, ts)
        # Fault flags: the newest heartbeat of each endpoint wins.
        order = np.argsort(ts, kind="stable")
        self.fleet.set_faults(index[order], flags[order])

    def _fault_bit(self, key: str) -> int:
        bit = self._fault_keys.get(key)
        if bit is None:
            bit = 1 << min(len(self._fault_keys), 31)
            self._fault_keys[key] = bit
        return bit

    def _dispatch(self, payload: Readings) -> None:
        self._apply_heartbeats()  # who is online at the dispatch
        message_id = payload.info.get("message_id")
        if not message_id:
            log.warning("dispatch announcement without info.message_id; ignored", rate_key="eb_dispatch")
            return
        wanted = [r.strip() for r in payload.info.get("regions", "*").split(",") if r.strip()]
        if wanted == ["*"]:
            regions = list(range(len(self.region_names)))
        else:
            regions = [self._region_index[r] for r in wanted if r in self._region_index]
            unknown = [r for r in wanted if r not in self._region_index]
            if unknown:
                self.counters.unknown_regions += len(unknown)
                log.warning(
                    "dispatch names regions not in the inventory",
                    message_id=message_id,
                    regions=unknown[:10],
                    rate_key="eb_dispatch_regions",
                )
        deadlines = None
        if "deadline_s" in payload.values and payload.values["deadline_s"] > 0:
            deadlines = sorted({*self.settings.dispatch_deadlines, payload.values["deadline_s"]})
        targeted = self.tracker.dispatch(
            message_id,
            np.array(regions, dtype=np.intp),
            payload.ts,
            self.fleet,
            self.settings.offline_after,
            deadlines=deadlines,
        )
        self.counters.dispatches += 1
        log.info("dispatch announced", message_id=message_id, regions=len(regions), targeted=targeted)

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, wall: float, now: float) -> list[TargetView]:
        """Region and dispatch views for the rule engine (at wall-clock ``wall``)."""
        self._apply_heartbeats()
        if self.started is None:
            self.started = wall
        status = self.fleet.evaluate(wall, self.settings.offline_after, started=self.started)
        self.status = status
        settling = wall - self.started < self.settings.offline_after
        self.tracker.evict(wall)
        self.reports = self.tracker.reports(wall)
        ids = self.inventory.ids
        views: list[TargetView] = []
        params = dict(self.settings.params)
        offline_counts = status.offline  # computed per call
        for r, name in enumerate(self.region_names):
            total = int(status.total[r])
            if total == 0:
                continue
            ratio = float(status.online_ratio[r])
            offline = status.offline_indices(r)
            faulty = status.faulty_indices(r)
            m: dict[str, float | str | None] = {
                "eb_total": float(total),
                "eb_online": float(status.online[r]),
                "eb_unreported": float(status.unreported[r]),
                "eb_offline": float(offline_counts[r]),
                "eb_online_ratio": ratio if math.isfinite(ratio) and not settling else None,
                "eb_faults": float(status.faulty[r]),
                "eb_offline_ids": truncated_ids(
                    [ids[i] for i in offline[: self.settings.max_ids]],
                    self.settings.max_ids,
                    total=int(offline.shape[0]),
                ),
                "eb_fault_ids": truncated_ids(
                    [ids[i] for i in faulty[: self.settings.max_ids]],
                    self.settings.max_ids,
                    total=int(faulty.shape[0]),
                ),
            }
            views.append(
                TargetView(
                    name=f"eb:{name}",
                    kind="eb_region",
                    labels={
                        "station": self.station,
                        "target": f"eb:{name}",
                        "kind": "eb_region",
                        "service": "emergency broadcast",
                        "region": name,
                    },
                    params=params,
                    measurements=m,
                    last_seen=now,
                )
            )
        for report in self.reports:
            views.append(
                TargetView(
                    name=f"dispatch:{report.message_id}",
                    kind="eb_dispatch",
                    labels={
                        "station": self.station,
                        "target": f"dispatch:{report.message_id}",
                        "kind": "eb_dispatch",
                        "service": "emergency broadcast",
                        "message_id": report.message_id,
                    },
                    params=params,
                    measurements=dispatch_measurements(report, ids, max_ids=self.settings.max_ids),
                    last_seen=now,
                )
            )
        return views

    def status_json(self) -> dict[str, Any]:
        """Offline and faulty endpoints per region, for the duty operator's HTTP view."""
        return self._status(None)

    def console_json(self) -> dict[str, Any]:
        """What the console's live view shows, pushed to it every tick: per region the
        counts and the first ``max_ids`` faulty endpoints (``faulty_count`` says how many
        there are); every endpoint's name is in :meth:`status_json` (``/api/v1/eb/status``).

        With 100 000 endpoints and some thousands offline, the full lists cost more than
        the rest of a tick and made every console update megabytes long.
        """
        return self._status(self.settings.max_ids)

    def _status(self, limit: int | None) -> dict[str, Any]:
        status = self.status
        if status is None:
            return {"evaluated_at": None, "regions": []}
        ids, names = self.inventory.ids, self.inventory.names

        def endpoints(indices: NDArray[np.intp]) -> list[dict[str, str]]:
            return [{"id": ids[i], "name": names[i]} for i in indices]

        regions = []
        offline_counts = status.offline  # computed per call
        for r, region in enumerate(self.region_names):
            if int(status.total[r]) == 0:
                continue
            row: dict[str, Any] = {
                "region": region,
                "total": int(status.total[r]),
                "online": int(status.online[r]),
                "online_ratio": None
                if not math.isfinite(float(status.online_ratio[r]))
                else round(float(status.online_ratio[r]), 4),
            }
            if limit is None:
                # Not heard from since anbo started, first heartbeat not yet due.
                row["not_yet_reported"] = endpoints(status.unreported_indices(r))
                row["offline"] = endpoints(status.offline_indices(r))
                row["faulty"] = endpoints(status.faulty_indices(r))
            else:
                row["not_yet_reported"] = int(status.unreported[r])
                row["offline"] = int(offline_counts[r])
                faulty = status.faulty_indices(r)
                row["faulty"] = endpoints(faulty[:limit])
                row["faulty_count"] = int(faulty.shape[0])
            regions.append(row)
        dispatches = [
            {
                "message_id": rep.message_id,
                "targeted": rep.targeted,
                "confirmed_within": dict(
                    zip([str(d) for d in rep.deadlines], rep.confirmed_within, strict=True)
                ),
                "coverage_final": rep.final_coverage,
                "past_deadline": rep.past_deadline,
                "latency_p50_s": rep.latency_p50_s,
                "latency_p90_s": rep.latency_p90_s,
            }
            for rep in self.reports
        ]
        return {"evaluated_at": status.now, "level": self.level, "regions": regions, "dispatches": dispatches}

    def collect(self, station: str) -> Iterator[Metric]:
        """The ``anbo_eb_*`` metrics: per region (never per endpoint) and per dispatch."""
        labels = ["station", "region"]
        total = GaugeMetricFamily(
            "anbo_eb_endpoints", "Emergency-broadcast endpoints per region.", labels=labels
        )
        online = GaugeMetricFamily(
            "anbo_eb_endpoints_online", "Endpoints with a recent heartbeat.", labels=labels
        )
        ratio = GaugeMetricFamily(
            "anbo_eb_online_ratio", "Share of a region's endpoints online.", labels=labels
        )
        faulty = GaugeMetricFamily(
            "anbo_eb_endpoints_faulty", "Online endpoints reporting a fault.", labels=labels
        )
        unreported = GaugeMetricFamily(
            "anbo_eb_endpoints_unreported",
            "Endpoints not heard from since anbo started, their first heartbeat not yet due "
            "(neither online nor offline).",
            labels=labels,
        )
        status = self.status
        if status is not None:
            for r, region in enumerate(self.region_names):
                n = int(status.total[r])
                if n == 0:
                    continue
                total.add_metric([station, region], n)
                online.add_metric([station, region], int(status.online[r]))
                faulty.add_metric([station, region], int(status.faulty[r]))
                unreported.add_metric([station, region], int(status.unreported[r]))
                value = float(status.online_ratio[r])
                if math.isfinite(value):
                    ratio.add_metric([station, region], value)
        yield from (total, online, ratio, faulty, unreported)
        msgs = CounterMetricFamily("anbo_eb_messages", "Endpoint messages handled, by kind.", labels=["kind"])
        msgs.add_metric(["heartbeat"], self.counters.heartbeats)
        msgs.add_metric(["confirmation"], self.counters.confirmations)
        msgs.add_metric(["dispatch"], self.counters.dispatches)
        yield msgs
        dl = ["station", "message_id"]
        targeted = GaugeMetricFamily(
            "anbo_eb_dispatch_targeted_endpoints",
            "Endpoints a dispatch targeted (online in its regions).",
            labels=dl,
        )
        coverage = GaugeMetricFamily(
            "anbo_eb_dispatch_coverage_ratio",
            "Share of targeted endpoints that confirmed playback within a deadline.",
            labels=[*dl, "within_seconds"],
        )
        p50 = GaugeMetricFamily(
            "anbo_eb_dispatch_latency_p50_seconds", "Median confirmation latency.", labels=dl
        )
        p90 = GaugeMetricFamily("anbo_eb_dispatch_latency_p90_seconds", "90th percentile latency.", labels=dl)
        for rep in self.reports:
            targeted.add_metric([station, rep.message_id], rep.targeted)
            for deadline, cov in zip(rep.deadlines, rep.coverage, strict=True):
                if cov is not None:
                    coverage.add_metric([station, rep.message_id, f"{deadline:g}"], cov)
            if rep.latency_p50_s is not None:
                p50.add_metric([station, rep.message_id], rep.latency_p50_s)
            if rep.latency_p90_s is not None:
                p90.add_metric([station, rep.message_id], rep.latency_p90_s)
        yield from (targeted, coverage, p50, p90)
