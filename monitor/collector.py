"""The Prometheus collector: reads anbo's current state at scrape time.

Registered on a registry the daemon creates (never the global default one). It runs
inside the event loop (the HTTP handler calls it there), so it sees a consistent
state without locks.

Only configured targets and streams produce series; label values come from the
configuration and from closed enums, never from what a publisher chose, except
reading names, which are capped per stream by the pipeline.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.ingest import IngestQueue
from monitor.pipeline import Pipeline
from monitor.stats import Stats
from monitor.wire import WIRE_VERSION

TARGET_LABELS = ["station", "target", "kind", "service"]
STREAM_LABELS = [*TARGET_LABELS, "stream"]


class AnboCollector(Collector):
    """Exposes per-target readings and anbo's self-metrics."""

    def __init__(
        self,
        pipeline: Pipeline,
        stats: Stats,
        queue: IngestQueue,
        connected: Callable[[], dict[str, bool]],
        *,
        mono: Callable[[], float] = time.monotonic,
        start_time: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.stats = stats
        self.queue = queue
        self.connected = connected
        self.mono = mono
        self.start_time = time.time() if start_time is None else start_time

    def describe(self) -> list[Metric]:
        # Returning nothing keeps registration from calling collect() up front.
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._self_metrics()
        yield from self._targets()

    # -- per target -------------------------------------------------------------------
    def _targets(self) -> Iterator[Metric]:
        settings = self.pipeline.settings
        station = settings.station.name
        now = self.mono()
        label_keys = sorted({k for t in settings.targets for k in t.labels})
        info = GaugeMetricFamily(
            "anbo_target_info",
            "Configured targets with their frequency/channel and the operator's labels (value 1).",
            labels=[*TARGET_LABELS, "frequency", *label_keys],
        )
        reading = GaugeMetricFamily(
            "anbo_reading",
            "Latest telemetry reading of a target, as published (unit in the name label's suffix).",
            labels=[*STREAM_LABELS, "name"],
        )
        reading_info = GaugeMetricFamily(
            "anbo_reading_info",
            "Latest identity reading of a target (RDS PI, service id...), value 1.",
            labels=[*STREAM_LABELS, "name", "value"],
        )
        last_ts = GaugeMetricFamily(
            "anbo_last_sample_timestamp_seconds",
            "Publisher timestamp of the newest sample of a stream (Unix seconds).",
            labels=STREAM_LABELS,
        )
        age = GaugeMetricFamily(
            "anbo_sample_age_seconds",
            "Seconds since the last accepted message of a stream; +Inf if none since start.",
            labels=STREAM_LABELS,
        )
        accepted = CounterMetricFamily(
            "anbo_stream_messages", "Messages accepted per stream.", labels=STREAM_LABELS,
        )
        gaps = CounterMetricFamily(
            "anbo_sequence_gaps", "Sequence gaps seen (jumps forward of more than one).",
            labels=STREAM_LABELS,
        )
        missing = CounterMetricFamily(
            "anbo_sequence_missing_messages",
            "Messages missing at the time a gap was seen (late arrivals are counted apart).",
            labels=STREAM_LABELS,
        )
        outstanding = GaugeMetricFamily(
            "anbo_sequence_outstanding_messages",
            "Messages still missing: gaps not (yet) filled by late arrivals since the last reset.",
            labels=STREAM_LABELS,
        )
        dupes = CounterMetricFamily(
            "anbo_sequence_duplicates", "Duplicate sequence numbers dropped (QoS 1 redelivery).",
            labels=STREAM_LABELS,
        )
        late = CounterMetricFamily(
            "anbo_sequence_late", "Messages that arrived after a later one (reordering).",
            labels=STREAM_LABELS,
        )
        resets = CounterMetricFamily(
            "anbo_sequence_resets", "Sequence restarts (publisher restarted).", labels=STREAM_LABELS,
        )
        for target in self.pipeline.targets.values():
            t = target.settings
            base = [station, t.name, t.kind.value, t.service]
            info.add_metric([*base, t.frequency_label, *(t.labels.get(k, "") for k in label_keys)], 1.0)
            for stream in target.streams.values():
                labels = [*base, stream.name]
                for name, value in stream.values.items():
                    reading.add_metric([*labels, name], value)
                for name, text in stream.info.items():
                    reading_info.add_metric([*labels, name, text], 1.0)
                if stream.last_ts is not None:
                    last_ts.add_metric(labels, stream.last_ts)
                age.add_metric(labels, math.inf if stream.last_rx is None else max(0.0, now - stream.last_rx))
                accepted.add_metric(labels, stream.accepted)
                gaps.add_metric(labels, stream.gaps)
                missing.add_metric(labels, stream.missing)
                outstanding.add_metric(labels, stream.seq.missing)
                dupes.add_metric(labels, stream.duplicates)
                late.add_metric(labels, stream.late)
                resets.add_metric(labels, stream.resets)
        yield from (info, reading, reading_info, last_ts, age, accepted, gaps, missing, outstanding, dupes,
                    late, resets)

    # -- anbo itself ------------------------------------------------------------------
    def _self_metrics(self) -> Iterator[Metric]:
        stats = self.stats
        build = InfoMetricFamily("anbo_build", "anbo build information.")
        build.add_metric([], {"version": __version__, "python_version": platform.python_version(),
                              "wire_version": str(WIRE_VERSION)})
        yield build
        start = GaugeMetricFamily("anbo_start_time_seconds", "Start time of the process (Unix seconds).")
        start.add_metric([], self.start_time)
        yield start

        connected = GaugeMetricFamily("anbo_mqtt_connected", "1 if connected to this broker URL.",
                                      labels=["broker"])
        for url, up in self.connected().items():
            connected.add_metric([url], 1.0 if up else 0.0)
        yield connected
        connects = CounterMetricFamily("anbo_mqtt_connects", "Successful broker connections.")
        connects.add_metric([], stats.connects)
        yield connects
        reconnects = CounterMetricFamily("anbo_mqtt_reconnects",
                                         "Broker connections after the first (reconnects and failovers).")
        reconnects.add_metric([], stats.reconnects)
        yield reconnects
        errors = CounterMetricFamily("anbo_mqtt_connection_errors",
                                     "Failed or lost broker connections by reason.", labels=["reason"])
        for reason, n in stats.connect_errors.items():
            errors.add_metric([reason], n)
        yield errors

        messages = CounterMetricFamily("anbo_messages", "MQTT messages by result and reason.",
                                       labels=["result", "reason"])
        for (result, reason), n in stats.messages.items():
            messages.add_metric([result, reason], n)
        yield messages

        depth = GaugeMetricFamily("anbo_ingest_queue_depth", "Messages waiting in the ingest queue.")
        depth.add_metric([], self.queue.qsize())
        yield depth
        capacity = GaugeMetricFamily("anbo_ingest_queue_capacity", "Capacity of the ingest queue.")
        capacity.add_metric([], self.queue.maxsize)
        yield capacity

        hist = HistogramMetricFamily(
            "anbo_processing_latency_seconds",
            "Time from receipt of a message to the end of its processing.",
        )
        hist.add_metric([], stats.latency.cumulative(), stats.latency.total)
        yield hist

        reloads = CounterMetricFamily("anbo_config_reloads", "Configuration reloads (SIGHUP) by result.",
                                      labels=["result"])
        reloads.add_metric(["success"], stats.reloads_ok)
        reloads.add_metric(["failure"], stats.reloads_failed)
        yield reloads
