"""The emergency-broadcast (应急广播) fleet: regions with their online ratio, faulty
endpoints, and what share of each dispatch was played."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    ST,
    Board,
    active_alerts,
    datasource_var,
    fixed_thresholds,
    merge,
    organize,
    q,
    qt,
    query_var,
    rule_thresholds,
    scheme_var,
    st,
    station_var,
    tbl,
    ts,
)
from dashboards.thresholds import builtin_rules

UID = "anbo-eb-fleet"
SEL = f'{ST}, region=~"$region"'


def eb_alerts() -> str:
    return "|".join(
        sorted({r.alert for r in builtin_rules() if r.selector.get("kind", "").startswith("eb_")})
    )


def build() -> dm.Dashboard:
    b = Board(
        UID,
        "anbo / Emergency broadcast fleet",
        "The village endpoints ([eb] inventory) per region: online ratio, faulty and not yet "
        "reported endpoints, and the coverage and latency of the latest dispatches.",
        [
            datasource_var(),
            station_var(),
            query_var("region", "Region", f"label_values(anbo_eb_endpoints{{{ST}}}, region)"),
            scheme_var(),
        ],
    )
    b.add(
        st(
            "Online ratio",
            "Share of each region's endpoints with a recent heartbeat; EbRegionOnlineLow below the minimum.",
            "percentunit",
            [q(f"anbo_eb_online_ratio{{{SEL}}}", "{{region}}")],
            rule_thresholds("eb_online_ratio", alerts=("EbRegionOnlineLow",)),
        ),
        12,
        5,
    )
    b.add(
        st(
            "Faulty endpoints",
            "Online endpoints reporting a fault (amplifier, speaker line...); EbEndpointFaults above zero.",
            "none",
            [q(f"anbo_eb_endpoints_faulty{{{SEL}}}", "{{region}}")],
            rule_thresholds("eb_faults", alerts=("EbEndpointFaults",)),
        ),
        12,
        5,
    )
    regions = tbl(
        "Regions",
        "Endpoints per region: in the inventory, online, faulty, not yet reported since anbo started.",
        "none",
        [
            qt(f"sum by (station, region) (anbo_eb_endpoints{{{SEL}}})"),
            qt(f"sum by (station, region) (anbo_eb_endpoints_online{{{SEL}}})"),
            qt(f"sum by (station, region) (anbo_eb_endpoints_faulty{{{SEL}}})"),
            qt(f"sum by (station, region) (anbo_eb_endpoints_unreported{{{SEL}}})"),
        ],
        fixed_thresholds((None, "text")),
        transformations=[
            merge(),
            organize(
                ["Time"],
                {
                    "Value #A": "endpoints",
                    "Value #B": "online",
                    "Value #C": "faulty",
                    "Value #D": "not yet reported",
                },
            ),
        ],
    )
    b.add(regions, 12, 8)
    b.add(
        ts(
            "Online ratio over time",
            "Online ratio per region; the EbRegionOnlineLow minimum is drawn.",
            "percentunit",
            [q(f"anbo_eb_online_ratio{{{SEL}}}", "{{region}}")],
            rule_thresholds("eb_online_ratio", alerts=("EbRegionOnlineLow",)),
        ),
        12,
        8,
    )
    dispatches = tbl(
        "Dispatch coverage",
        "Per dispatched message: endpoints targeted, share that confirmed playback within each deadline, "
        "median and 90th-percentile confirmation latency; DispatchUnderDelivered below the minimum.",
        "percentunit",
        [
            qt(f"max by (station, message_id, within_seconds) (anbo_eb_dispatch_coverage_ratio{{{ST}}})"),
            qt(f"max by (station, message_id) (anbo_eb_dispatch_targeted_endpoints{{{ST}}})"),
            qt(f"max by (station, message_id) (anbo_eb_dispatch_latency_p50_seconds{{{ST}}})"),
            qt(f"max by (station, message_id) (anbo_eb_dispatch_latency_p90_seconds{{{ST}}})"),
        ],
        rule_thresholds("dispatch_coverage", alerts=("DispatchUnderDelivered",)),
        transformations=[
            merge(),
            organize(
                ["Time"],
                {
                    "Value #A": "coverage",
                    "Value #B": "targeted",
                    "Value #C": "latency p50",
                    "Value #D": "latency p90",
                },
            ),
        ],
    )
    for name, unit in (("targeted", "none"), ("latency p50", "s"), ("latency p90", "s")):
        dispatches = dispatches.override_by_name(name, [dm.DynamicConfigValue(id_val="unit", value=unit)])
    dispatches = dispatches.override_by_name(
        "coverage", [dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"})]
    )
    b.add(dispatches, 24, 8)
    active_alerts(b, f'{ST}, alertname=~"{eb_alerts()}"')
    return b.build()
