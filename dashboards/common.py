"""What every anbo dashboard shares: variables, query and panel helpers, the board builder.

Every query names the ``${datasource}`` variable, every selector carries
``station=~"$station"`` (multi-value: one station, or a bureau's central Prometheus
with all of them), every panel a title, a one-line description, a unit and thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    VizLegendOptions,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    VisibilityMode,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards.thresholds import Step, limits, steps
from monitor.settings import ProbeSettings

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["anbo", "broadcast"]
#: The station console serves /runbooks/<Alert> on the listener Prometheus scrapes
#: (its ``instance`` label), see docs/console.md.
RUNBOOK_URL = "${console_scheme}://${__data.fields.instance}/runbooks/${__data.fields.alertname}"
#: One station or many (a central Prometheus), as a regex matcher.
ST = 'station=~"$station"'


#: anbo's own metrics (broker, queue, ledger...) carry no station label: joined on the
#: scrape's instance with anbo_target_info, they gain it, and the station filter.
STATION_JOIN = f"on (instance) group_left (station) max by (instance, station) (anbo_target_info{{{ST}}})"


def per_station(expr: str) -> str:
    """``expr`` over anbo's own metrics, labelled with (and filtered by) its station."""
    return f"({expr}) * {STATION_JOIN}"


def q(
    expr: str, legend: str = "", *, instant: bool = False, table_format: bool = False
) -> prometheus.Dataquery:
    """A Prometheus query on the ``datasource`` variable."""
    b = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        b = b.legend_format(legend)
    if table_format:
        b = b.format(PromQueryFormat.TABLE)
    return b.instant() if instant else b.range()


def qt(expr: str) -> prometheus.Dataquery:
    """An instant query in table format (one row per series, labels as columns)."""
    return q(expr, instant=True, table_format=True)


def thresholds(found: list[Step]) -> gd.ThresholdsConfig:
    return (
        gd.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=s.value, color=s.colour) for s in found])
    )


def rule_thresholds(
    measurement: str, *, kind: str | None = None, alerts: tuple[str, ...] = ()
) -> gd.ThresholdsConfig:
    """Thresholds from the rule packs (see dashboards.thresholds)."""
    return thresholds(steps(limits(measurement, kind=kind, alerts=alerts)))


def silence_thresholds() -> gd.ThresholdsConfig:
    """Audio level: red below [probes] silence_on_dbfs, green from silence_off_dbfs (the
    detector's defaults, read from the settings model)."""
    probes = ProbeSettings()
    return fixed_thresholds(
        (None, "red"), (probes.silence_on_dbfs, "orange"), (probes.silence_off_dbfs, "green")
    )


def fixed_thresholds(*pairs: tuple[float | None, str]) -> gd.ThresholdsConfig:
    """Thresholds for what no rule judges (the first pair is the base, value None)."""
    return thresholds([Step(v, c) for v, c in pairs])


def value_map(mapping: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    """Values → (text, colour)."""
    return [
        dm.ValueMap(
            options={
                k: dm.ValueMappingResult(text=text, color=colour, index=i)
                for i, (k, (text, colour)) in enumerate(mapping.items())
            }
        )
    ]


FLAG_OK = value_map({"0": ("no", "red"), "1": ("yes", "green")})
FLAG_BAD = value_map({"0": ("no", "green"), "1": ("YES", "red")})


def runbook_link() -> gd.DashboardLink:
    return gd.DashboardLink("Runbook for ${__data.fields.alertname}").url(RUNBOOK_URL).target_blank(True)


# -- variables --------------------------------------------------------------------------


def datasource_var() -> gd.DatasourceVariable:
    return gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def query_var(
    name: str, label: str, query: str, *, multi: bool = True, include_all: bool = True
) -> gd.QueryVariable:
    v = (
        gd.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(include_all)
    )
    if include_all:
        v = v.all_value(".*")
    return v


def station_var() -> gd.QueryVariable:
    return query_var("station", "Station", "label_values(anbo_target_info, station)")


def service_var(kinds: str = ".*") -> gd.QueryVariable:
    return query_var(
        "service", "Service", f'label_values(anbo_target_info{{{ST}, kind=~"{kinds}"}}, service)'
    )


def target_var(kinds: str = ".*") -> gd.QueryVariable:
    return query_var(
        "target",
        "Target",
        f'label_values(anbo_target_info{{{ST}, service=~"$service", kind=~"{kinds}"}}, target)',
    )


def scheme_var() -> gd.CustomVariable:
    """http or https: the scheme of the station console that serves the runbooks."""
    return (
        gd.CustomVariable("console_scheme")
        .label("Console scheme")
        .values("http,https")
        .current(dm.VariableOption(selected=True, text="http", value="http"))
    )


# -- panels ----------------------------------------------------------------------------


def _common(p: Any, title: str, description: str, unit: str, targets: Sequence[prometheus.Dataquery]) -> Any:
    p = p.title(title).description(description).unit(unit).datasource(DATASOURCE)
    for i, t in enumerate(targets):
        p = p.with_target(t.ref_id(chr(ord("A") + i)))
    return p


def ts(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    th: gd.ThresholdsConfig,
) -> timeseries.Panel:
    p: timeseries.Panel = _common(timeseries.Panel(), title, description, unit, targets)
    p = p.thresholds(th).legend(
        VizLegendOptions()
        .display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
    )
    if len(th.build().steps) > 1:  # draw the rule limits as dashed lines
        p = p.thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
    return p


def st(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    th: gd.ThresholdsConfig,
    *,
    calc: str = "lastNotNull",
) -> stat.Panel:
    p: stat.Panel = _common(stat.Panel(), title, description, unit, targets)
    return (
        p.thresholds(th)
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .reduce_options(ReduceDataOptions().calcs([calc]).values(False))
    )


def timeline(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    mappings: list[dm.ValueMapping],
) -> statetimeline.Panel:
    p: statetimeline.Panel = _common(statetimeline.Panel(), title, description, "none", targets)
    return (
        p.mappings(mappings)
        .thresholds(fixed_thresholds((None, "green")))
        .show_value(VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .legend(VizLegendOptions().show_legend(False))
    )


def tbl(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    th: gd.ThresholdsConfig,
    *,
    transformations: list[dm.DataTransformerConfig] = (),  # type: ignore[assignment]
) -> table.Panel:
    p: table.Panel = _common(table.Panel(), title, description, unit, targets)
    p = p.thresholds(th)
    for t in transformations:
        p = p.with_transformation(t)
    return p


def organize(exclude: list[str], rename: dict[str, str] | None = None) -> dm.DataTransformerConfig:
    """Drop the Time column and helper labels of an instant table query, rename the rest."""
    return dm.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": dict.fromkeys(exclude, True), "renameByName": rename or {}},
    )


def merge() -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val="merge", options={})


# -- shared panels ---------------------------------------------------------------------

#: anbo:service_state (config/prometheus/anbo-recording.yml): the ledger class advancing now.
STATES: dict[str, tuple[str, str]] = {
    "0": ("On air", "green"),
    "1": ("Degraded", "yellow"),
    "2": ("Filler", "orange"),
    "3": ("Wrong programme", "red"),
    "4": ("Outage", "dark-red"),
    "5": ("Unknown (unmonitored)", "purple"),
    "6": ("Maintenance", "blue"),
    "7": ("Off schedule", "text"),
}
SEVERITIES = value_map(
    {"critical": ("critical", "red"), "warning": ("warning", "orange"), "info": ("info", "blue")}
)


def rate_per_100h(sel: str, by: str) -> str:
    """停播率 over the dashboard's (or the panel's) range: counted outage s per 100 scheduled h."""
    return (
        f"360000 * sum by ({by}) (increase(anbo:service_counted_outage_seconds_total{{{sel}}}[$__range]))"
        f" / sum by ({by}) (increase(anbo:service_scheduled_seconds_total{{{sel}}}[$__range]))"
    )


def active_alerts(board: Board, sel: str, w: int = 24, h: int = 7) -> None:
    """The alerts anbo fires now, with severity and a runbook link per row."""
    panel = tbl(
        "Active alerts",
        "Alerts anbo is firing and notifying now (inhibited and held ones are not listed); "
        "the alert name links to its runbook on the station console.",
        "none",
        [qt(f"max by (station, target, alertname, severity, instance) (anbo_alert_active{{{sel}}})")],
        fixed_thresholds((None, "text")),
        transformations=[organize(["Time", "Value"])],
    )
    panel = panel.override_by_name(
        "alertname", [dm.DynamicConfigValue(id_val="links", value=[runbook_link().build()])]
    ).override_by_name(
        "severity",
        [
            dm.DynamicConfigValue(id_val="mappings", value=SEVERITIES),
            dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
        ],
    )
    board.add(panel, w, h)


# -- the board -------------------------------------------------------------------------


class Board:
    """An SDK dashboard being built: stable uid, numbered panels, placed on the grid."""

    def __init__(
        self,
        uid: str,
        title: str,
        description: str,
        variables: Sequence[cogbuilder.Builder[dm.VariableModel]],
        *,
        time_from: str = "now-6h",
        refresh: str = "30s",
    ) -> None:
        self.uid = uid
        self.next_id = 1
        self.dash = (
            gd.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .editable()
            .timezone("browser")
            .time(time_from, "now")
            .refresh(refresh)
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .fiscal_year_start_month(0)
            .variables(list(variables))
            .annotation(
                gd.AnnotationQuery()
                .name("Annotations & Alerts")
                .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                .built_in(1)
                .enable(True)
                .hide(True)
                .icon_color("rgba(0, 211, 255, 1)")
                .type("dashboard")
            )
            .link(
                gd.DashboardLink("anbo dashboards")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["anbo"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )

    def row(self, title: str, *, repeat: str | None = None) -> None:
        r = gd.Row(title).id(self.next_id)
        self.next_id += 1
        if repeat:
            r = r.repeat(repeat)
        self.dash = self.dash.with_row(r)

    def add(self, panel: Any, w: int = 6, h: int = 6) -> None:
        self.dash = self.dash.with_panel(panel.id(self.next_id).span(w).height(h))
        self.next_id += 1

    def annotation(self, name: str, expr: str, colour: str) -> None:
        self.dash = self.dash.annotation(
            gd.AnnotationQuery().name(name).datasource(DATASOURCE).enable(True).icon_color(colour).expr(expr)
        )

    def build(self) -> dm.Dashboard:
        return self.dash.build()
