"""Outages and availability: per service, the ledger's seconds by class over the chosen
range and the quarter, the 停播率 and the availability ratios."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    STATES,
    Board,
    datasource_var,
    fixed_thresholds,
    organize,
    q,
    qt,
    rate_per_100h,
    scheme_var,
    service_var,
    st,
    station_var,
    target_var,
    tbl,
    timeline,
    ts,
    value_map,
)
from dashboards.overview import PROGRAMME, SEL

UID = "anbo-outages"
CLASSES = value_map(
    {
        "outage": ("停播 outage", "dark-red"),
        "wrong_programme": ("错播 wrong programme", "red"),
        "filler": ("垫播 filler", "orange"),
        "degraded": ("劣播 degraded", "yellow"),
        "unmonitored": ("未监测 unmonitored", "purple"),
        "maintenance": ("检修 maintenance", "blue"),
    }
)


def build() -> dm.Dashboard:
    b = Board(
        UID,
        "anbo / Outages and availability",
        "Per service, the outage ledger's seconds by class (outage, wrong programme, filler, degraded, "
        "unmonitored, maintenance) over the chosen range and this quarter, the 停播率 and availability.",
        [datasource_var(), station_var(), service_var(PROGRAMME), target_var(PROGRAMME), scheme_var()],
        time_from="now-7d",
        refresh="1m",
    )
    b.add(
        timeline(
            "State",
            "Each service's state as the ledger counts it (anbo:service_state).",
            [q(f"anbo:service_state{{{SEL}}}", "{{service}} ({{target}})")],
            value_map(STATES),
        ),
        24,
        6,
    )
    by_class = tbl(
        "Seconds by class over the range",
        "Scheduled seconds each service spent in each ledger class over the dashboard's time range.",
        "s",
        [qt(f"sum by (station, service, class) (increase(anbo_outage_seconds_total{{{SEL}}}[$__range]))")],
        fixed_thresholds((None, "text")),
        transformations=[organize(["Time"], {"Value": "seconds"})],
    ).override_by_name(
        "class",
        [
            dm.DynamicConfigValue(id_val="mappings", value=CLASSES),
            dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        ],
    )
    b.add(by_class, 12, 9)
    b.add(
        ts(
            "Outage and degraded seconds per hour",
            "Scheduled seconds per hour counted as outage (停播, 错播, 垫播) or degraded (劣播).",
            "s",
            [
                q(
                    f"sum by (service, class) (increase(anbo_outage_seconds_total{{{SEL}, "
                    f'class=~"outage|wrong_programme|filler|degraded"}}[1h]))',
                    "{{service}} {{class}}",
                )
            ],
            fixed_thresholds((None, "green")),
        ),
        12,
        9,
    )
    b.add(
        st(
            "停播率 over the range",
            "Counted outage seconds per 100 scheduled hours over the dashboard's time range.",
            "suffix: s/100 h",
            [q(rate_per_100h(SEL, "service"), "{{service}}", instant=True)],
            fixed_thresholds((None, "green")),
        ),
        12,
        5,
    )
    b.add(
        st(
            "停播率 this quarter",
            "Counted outage seconds per 100 scheduled hours since the quarter began; the official "
            "figure is `anbo report --quarter`.",
            "suffix: s/100 h",
            [q(rate_per_100h(SEL, "service"), "{{service}}", instant=True)],
            fixed_thresholds((None, "green")),
        ).time_from("now/fQ"),
        12,
        5,
    )
    b.add(
        ts(
            "Availability",
            "Share of scheduled time not counted as outage over the last hour, day and 30 days "
            "(recording rules anbo:service_availability:*).",
            "percentunit",
            [
                q(f"anbo:service_availability:ratio_1h{{{SEL}}}", "{{service}} 1 h"),
                q(f"anbo:service_availability:ratio_1d{{{SEL}}}", "{{service}} 1 d"),
                q(f"anbo:service_availability:ratio_30d{{{SEL}}}", "{{service}} 30 d"),
            ],
            fixed_thresholds((None, "red"), (0.99, "orange"), (0.999, "green")),
        ),
        24,
        8,
    )
    return b.build()
