"""Station overview: one row per service (state over time, RF, audio, loudness, 停播率)."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    ST,
    STATES,
    Board,
    active_alerts,
    datasource_var,
    fixed_thresholds,
    q,
    rate_per_100h,
    rule_thresholds,
    scheme_var,
    service_var,
    silence_thresholds,
    st,
    station_var,
    target_var,
    timeline,
    value_map,
)

UID = "anbo-station-overview"
PROGRAMME = "fm|dtv"  # services with a programme; transmitters are equipment
SEL = f'{ST}, service=~"$service", target=~"$target"'


def build() -> dm.Dashboard:
    b = Board(
        UID,
        "anbo / Station overview",
        "Every programme service of the selected stations: state over time, RF and audio level, "
        "loudness, the active alerts and the 停播率 of this quarter.",
        [datasource_var(), station_var(), service_var(PROGRAMME), target_var(PROGRAMME), scheme_var()],
    )
    b.row("Station")
    active_alerts(b, ST, w=16, h=8)
    b.add(
        st(
            "Alerts by severity",
            "How many alerts are firing now, per severity.",
            "none",
            [q(f"count by (severity) (anbo_alert_active{{{ST}}})", "{{severity}}")],
            fixed_thresholds((None, "green"), (1, "red")),
        ),
        8,
        8,
    )
    b.row("$service", repeat="service")
    b.add(
        timeline(
            "State",
            "On air, degraded, outage, unknown (unmonitored) or maintenance, as the outage ledger "
            "counts it (anbo:service_state).",
            [q(f"anbo:service_state{{{SEL}}}", "{{target}}")],
            value_map(STATES),
        ),
        24,
        5,
    )
    b.add(
        st(
            "RF level",
            "RF level at the monitoring receiver; red below the CarrierLoss floor.",
            "suffix: dBµV",
            [q(f'anbo_reading{{{SEL}, stream="rf", name="rf_level_dbuv"}}', "{{target}}")],
            rule_thresholds("rf_level_dbuv", alerts=("CarrierLoss",)),
        ),
        5,
        4,
    )
    b.add(
        st(
            "Audio level",
            "RMS level of the loudest channel; red below the silence level of [probes].",
            "suffix: dBFS",
            [q(f"anbo_audio_rms_dbfs{{{SEL}}}", "{{target}}")],
            silence_thresholds(),
        ),
        5,
        4,
    )
    b.add(
        st(
            "Loudness (short-term)",
            "EBU R128 short-term loudness (3 s window).",
            "suffix: LUFS",
            [q(f"anbo_loudness_shortterm_lufs{{{SEL}}}", "{{target}}")],
            fixed_thresholds((None, "blue")),
        ),
        5,
        4,
    )
    b.add(
        st(
            "Availability 1 h / 1 d / 30 d",
            "Share of scheduled time not counted as outage (recording rules anbo:service_availability:*).",
            "percentunit",
            [
                q(f"min by (service) (anbo:service_availability:ratio_1h{{{SEL}}})", "1 h"),
                q(f"min by (service) (anbo:service_availability:ratio_1d{{{SEL}}})", "1 d"),
                q(f"min by (service) (anbo:service_availability:ratio_30d{{{SEL}}})", "30 d"),
            ],
            fixed_thresholds((None, "red"), (0.99, "orange"), (0.999, "green")),
        ),
        5,
        4,
    )
    b.add(
        st(
            "停播率 this quarter",
            "Counted outage seconds per 100 scheduled hours since the quarter began (the ledger's "
            "rule: outage + wrong programme + filler share); anbo report gives the official figure.",
            "suffix: s/100 h",
            [q(rate_per_100h(SEL, "service"), "{{service}}", instant=True)],
            fixed_thresholds((None, "green")),
        ).time_from("now/fQ"),
        4,
        4,
    )
    return b.build()
