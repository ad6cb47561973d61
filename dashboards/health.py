"""anbo's self-health: broker connection, message rates by result and reason, the ingest
queue, sequence gaps, telemetry age, processing latency, Alertmanager delivery, the
ledger, restarts and reloads."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    FLAG_OK,
    ST,
    Board,
    datasource_var,
    fixed_thresholds,
    per_station,
    q,
    st,
    station_var,
    timeline,
    ts,
)
from monitor.settings import AlertingSettings, ProbeSettings

UID = "anbo-self-health"
RATE = "$__rate_interval"


def build() -> dm.Dashboard:
    stale = AlertingSettings().stale_after
    b = Board(
        UID,
        "anbo / Self-health",
        "anbo itself at each station: broker connection, messages by result and reason, ingest queue, "
        "sequence gaps, telemetry age, latency, Alertmanager delivery, the ledger, restarts.",
        [datasource_var(), station_var()],
        time_from="now-6h",
    )
    b.row("Ingest")
    b.add(
        timeline(
            "Broker connection",
            "1 while anbo is connected to that broker URL (AnboBrokerDisconnected when not).",
            [q(per_station("anbo_mqtt_connected"), "{{station}} {{broker}}")],
            FLAG_OK,
        ),
        12,
        5,
    )
    b.add(
        ts(
            "Broker reconnects and errors",
            "Reconnects and failed or lost connections per second, by reason.",
            "reqps",
            [
                q(per_station(f"rate(anbo_mqtt_reconnects_total[{RATE}])"), "{{station}} reconnects"),
                q(
                    per_station(
                        f"sum by (instance, reason) (rate(anbo_mqtt_connection_errors_total[{RATE}]))"
                    ),
                    "{{station}} error {{reason}}",
                ),
            ],
            fixed_thresholds((None, "green")),
        ),
        12,
        5,
    )
    b.add(
        ts(
            "Messages by result and reason",
            "MQTT messages per second: accepted, rejected (why) and dropped (why).",
            "reqps",
            [
                q(
                    per_station(f"sum by (instance, result, reason) (rate(anbo_messages_total[{RATE}]))"),
                    "{{station}} {{result}} {{reason}}",
                )
            ],
            fixed_thresholds((None, "green")),
        ),
        12,
        7,
    )
    b.add(
        ts(
            "Ingest queue",
            "Messages waiting in the bounded ingest queue, and its capacity (AnboIngestSaturation near it).",
            "none",
            [
                q(per_station("anbo_ingest_queue_depth"), "{{station}} depth"),
                q(per_station("anbo_ingest_queue_capacity"), "{{station}} capacity"),
            ],
            fixed_thresholds((None, "green")),
        ),
        12,
        7,
    )
    b.add(
        ts(
            "Processing latency",
            "Receipt of a message to the end of its processing: 50th and 99th percentile.",
            "s",
            [
                q(
                    per_station(
                        "histogram_quantile(0.5, sum by (instance, le) "
                        f"(rate(anbo_processing_latency_seconds_bucket[{RATE}])))"
                    ),
                    "{{station}} p50",
                ),
                q(
                    per_station(
                        "histogram_quantile(0.99, sum by (instance, le) "
                        f"(rate(anbo_processing_latency_seconds_bucket[{RATE}])))"
                    ),
                    "{{station}} p99",
                ),
            ],
            fixed_thresholds((None, "green"), (ProbeSettings().tick, "orange")),
        ),
        12,
        7,
    )
    b.add(
        ts(
            "Evaluation ticks",
            "Rule evaluation ticks per second (one per [probes] tick while anbo is healthy).",
            "reqps",
            [q(per_station(f"rate(anbo_evaluations_total[{RATE}])"), "{{station}}")],
            fixed_thresholds((None, "green")),
        ),
        12,
        7,
    )
    b.row("Telemetry")
    b.add(
        ts(
            "Telemetry age",
            "Seconds since each stream's last accepted message; TelemetryLost after [alerting] stale_after.",
            "s",
            [q(f"clamp_max(anbo_sample_age_seconds{{{ST}}}, 3600)", "{{target}} {{stream}}")],
            fixed_thresholds((None, "green"), (stale, "red")),
        ),
        12,
        7,
    )
    b.add(
        ts(
            "Sequence gaps and duplicates",
            "Messages missing in sequence gaps, and duplicates dropped, per second and stream.",
            "reqps",
            [
                q(
                    "sum by (station, target, stream) "
                    f"(rate(anbo_sequence_missing_messages_total{{{ST}}}[{RATE}]))",
                    "{{target}} {{stream}} missing",
                ),
                q(
                    "sum by (station, target, stream) "
                    f"(rate(anbo_sequence_duplicates_total{{{ST}}}[{RATE}]))",
                    "{{target}} {{stream}} duplicates",
                ),
            ],
            fixed_thresholds((None, "green")),
        ),
        12,
        7,
    )
    b.row("Delivery and state")
    b.add(
        ts(
            "Alertmanager delivery",
            "Alerts accepted by each Alertmanager, and alerts in failed POSTs by reason, per second.",
            "reqps",
            [
                q(
                    per_station(
                        "sum by (instance, alertmanager) "
                        f"(rate(anbo_alertmanager_notifications_sent_total[{RATE}]))"
                    ),
                    "{{station}} {{alertmanager}} sent",
                ),
                q(
                    per_station(
                        "sum by (instance, alertmanager, reason) "
                        f"(rate(anbo_alertmanager_notifications_failed_total[{RATE}]))"
                    ),
                    "{{station}} {{alertmanager}} failed {{reason}}",
                ),
            ],
            fixed_thresholds((None, "green")),
        ),
        12,
        7,
    )
    b.add(
        ts(
            "Alertmanager queue",
            "Alerts waiting to be delivered to each Alertmanager.",
            "none",
            [q(per_station("anbo_alertmanager_queue_length"), "{{station}} {{alertmanager}}")],
            fixed_thresholds((None, "green")),
        ),
        12,
        7,
    )
    b.add(
        timeline(
            "Outage ledger",
            "1 while the outage ledger can be written (LedgerUnavailable when not).",
            [q(per_station("anbo_ledger_up"), "{{station}}")],
            FLAG_OK,
        ),
        12,
        5,
    )
    b.add(
        st(
            "Restarts and reloads",
            "Process starts and configuration reloads (SIGHUP) over the dashboard's range.",
            "none",
            [
                q(per_station("changes(anbo_start_time_seconds[$__range])"), "{{station}} restarts"),
                q(
                    per_station("sum by (instance, result) (increase(anbo_config_reloads_total[$__range]))"),
                    "{{station}} reloads {{result}}",
                ),
            ],
            fixed_thresholds((None, "green"), (1, "orange")),
            calc="max",
        ),
        12,
        5,
    )
    return b.build()
