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
from monitor.alertmanager import AlertmanagerNotifier
from monitor.evaluation import Evaluator
from monitor.ingest import IngestQueue
from monitor.pipeline import Pipeline
from monitor.state import fresh_info, fresh_values
from monitor.stats import Stats
from monitor.wire import WIRE_VERSION
from probes.workers import MEASUREMENTS
from rules import AlertState, SuppressReason
from rules.catalogue import CATALOGUE

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
        evaluator: Callable[[], Evaluator | None] = lambda: None,
        notifier: Callable[[], AlertmanagerNotifier | None] = lambda: None,
    ) -> None:
        self.evaluator = evaluator
        self.notifier = notifier
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
        evaluator = self.evaluator()
        if evaluator is not None:
            yield from self._measurements(evaluator)
            yield from self._alerts(evaluator)
            # Components that own metrics expose their own collect().
            station = self.pipeline.settings.station.name
            yield from evaluator.migrations.collect(station)
            if evaluator.eb is not None:
                yield from evaluator.eb.collect(station)
        notifier = self.notifier()
        if notifier is not None:
            yield from notifier.collect()

    # -- probes' measurements and alert state --------------------------------------------
    def _measurements(self, evaluator: Evaluator) -> Iterator[Metric]:
        station = self.pipeline.settings.station.name
        families = {
            name: GaugeMetricFamily(f"anbo_{name}", text, labels=TARGET_LABELS)
            for name, text in MEASUREMENTS.items()
        }
        for name, values in evaluator.measurements.items():
            target = self.pipeline.targets.get(name)
            if target is None:
                continue
            t = target.settings
            labels = [station, t.name, t.kind.value, t.service]
            for key, value in values.items():
                family = families.get(key)
                # Unknown is no sample at all: absent, not zero and not silence.
                if family is not None and isinstance(value, float):
                    family.add_metric(labels, value)
        yield from families.values()

    def _alerts(self, evaluator: Evaluator) -> Iterator[Metric]:
        labels = ["alertname", "station", "target", "severity"]
        active = GaugeMetricFamily(
            "anbo_alert_active",
            "1 for each alert anbo is firing and notifying (suppressed ones are not listed).",
            labels=labels,
        )
        since = GaugeMetricFamily(
            "anbo_alert_firing_seconds",
            "Seconds since each firing alert started (suppressed too).",
            labels=[*labels, "suppressed"],
        )
        counts: dict[tuple[str, str], int] = {}
        wall = time.time()
        for alert in evaluator.engine.active():
            reason = alert.reason.value if alert.reason is not None else "none"
            key = (alert.state.value, reason)
            counts[key] = counts.get(key, 0) + 1
            if alert.state is not AlertState.FIRING:
                continue
            values = [alert.alertname, alert.labels.get("station", ""), alert.target, alert.severity.value]
            if alert.notify:
                active.add_metric(values, 1.0)
            since.add_metric([*values, reason], max(0.0, wall - alert.starts_at))
        yield active
        yield since
        states = GaugeMetricFamily(
            "anbo_alerts", "Alerts by state and suppression reason.", labels=["state", "suppressed"]
        )
        for state in (AlertState.PENDING, AlertState.FIRING):
            for reason in ("none", *(r.value for r in SuppressReason)):
                states.add_metric([state.value, reason], counts.get((state.value, reason), 0))
        yield states
        ticks = CounterMetricFamily("anbo_evaluations", "Evaluation ticks run.")
        ticks.add_metric([], evaluator.ticks)
        yield ticks
        writes = CounterMetricFamily("anbo_state_writes", "Alert-state saves by result.", labels=["result"])
        writes.add_metric(["success"], evaluator.state_writes)
        writes.add_metric(["failure"], evaluator.state_write_errors)
        yield writes

    # -- per target -------------------------------------------------------------------
    def _targets(self) -> Iterator[Metric]:
        settings = self.pipeline.settings
        station = settings.station.name
        now = self.mono()
        stale_after = settings.probes.readings_stale_after
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
            "anbo_stream_messages",
            "Messages accepted per stream.",
            labels=STREAM_LABELS,
        )
        gaps = CounterMetricFamily(
            "anbo_sequence_gaps",
            "Sequence gaps seen (jumps forward of more than one).",
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
            "anbo_sequence_duplicates",
            "Duplicate sequence numbers dropped (QoS 1 redelivery).",
            labels=STREAM_LABELS,
        )
        late = CounterMetricFamily(
            "anbo_sequence_late",
            "Messages that arrived after a later one (reordering).",
            labels=STREAM_LABELS,
        )
        resets = CounterMetricFamily(
            "anbo_sequence_resets",
            "Sequence restarts (publisher restarted).",
            labels=STREAM_LABELS,
        )
        values_dropped = CounterMetricFamily(
            "anbo_stream_values_dropped",
            "Reading values and info entries dropped from accepted messages, by reason "
            "(unknown_value: a name not in the measurement catalogue nor the target's extra_readings).",
            labels=[*STREAM_LABELS, "reason"],
        )
        for target in self.pipeline.targets.values():
            t = target.settings
            base = [station, t.name, t.kind.value, t.service]
            info.add_metric([*base, t.frequency_label, *(t.labels.get(k, "") for k in label_keys)], 1.0)
            for stream in target.streams.values():
                labels = [*base, stream.name]
                for name, value in fresh_values(stream, now, stale_after).items():
                    reading.add_metric([*labels, name], value)
                for name, text in fresh_info(stream, now, stale_after).items():
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
                entry = CATALOGUE.stream(t.kind.value, stream.name)
                if entry is None or entry.payload == "readings":  # audio streams carry no names
                    values_dropped.add_metric([*labels, "unknown_value"], stream.unknown_values)
        yield from (
            info,
            reading,
            reading_info,
            last_ts,
            age,
            accepted,
            gaps,
            missing,
            outstanding,
            dupes,
            late,
            resets,
            values_dropped,
        )

    # -- anbo itself ------------------------------------------------------------------
    def _self_metrics(self) -> Iterator[Metric]:
        stats = self.stats
        build = InfoMetricFamily("anbo_build", "anbo build information.")
        build.add_metric(
            [],
            {
                "version": __version__,
                "python_version": platform.python_version(),
                "wire_version": str(WIRE_VERSION),
            },
        )
        yield build
        start = GaugeMetricFamily("anbo_start_time_seconds", "Start time of the process (Unix seconds).")
        start.add_metric([], self.start_time)
        yield start

        connected = GaugeMetricFamily(
            "anbo_mqtt_connected", "1 if connected to this broker URL.", labels=["broker"]
        )
        for url, up in self.connected().items():
            connected.add_metric([url], 1.0 if up else 0.0)
        yield connected
        connects = CounterMetricFamily("anbo_mqtt_connects", "Successful broker connections.")
        connects.add_metric([], stats.connects)
        yield connects
        reconnects = CounterMetricFamily(
            "anbo_mqtt_reconnects", "Broker connections after the first (reconnects and failovers)."
        )
        reconnects.add_metric([], stats.reconnects)
        yield reconnects
        lost = CounterMetricFamily(
            "anbo_mqtt_sessions_lost",
            "Reconnects on which the broker had not kept anbo's session (CONNACK session present 0): "
            "what was published before the resubscription is lost to anbo.",
        )
        lost.add_metric([], stats.sessions_lost)
        yield lost
        errors = CounterMetricFamily(
            "anbo_mqtt_connection_errors", "Failed or lost broker connections by reason.", labels=["reason"]
        )
        for reason, n in stats.connect_errors.items():
            errors.add_metric([reason], n)
        yield errors

        messages = CounterMetricFamily(
            "anbo_messages", "MQTT messages by result and reason.", labels=["result", "reason"]
        )
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

        reloads = CounterMetricFamily(
            "anbo_config_reloads", "Configuration reloads (SIGHUP) by result.", labels=["result"]
        )
        reloads.add_metric(["success"], stats.reloads_ok)
        reloads.add_metric(["failure"], stats.reloads_failed)
        yield reloads
