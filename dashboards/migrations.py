"""The 700 MHz migration and FM re-frequencing board: every planned move, its phase, the
old channel after vacating, the new channel's level and the programme identity check."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    FLAG_OK,
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
    timeline,
    ts,
    value_map,
)
from dashboards.thresholds import builtin_rules

UID = "anbo-migrations"
SEL = f'{ST}, service=~"$service", migration=~"$migration"'
MOVE = "station, migration, service, old, new"
PHASES = value_map(
    {"0": ("Before simulcast", "blue"), "1": ("Simulcast", "yellow"), "2": ("After cutover", "green")}
)
MATCH = value_map({"0": ("WRONG programme", "red"), "1": ("expected programme", "green")})


def new_channel_reading(name: str) -> str:
    """A reading of the target that receives a plan's new channel, labelled with the plan:
    the target's ``frequency`` label (anbo_target_info) is the plan's ``new`` label."""
    reading = (
        f'anbo_reading{{{ST}, stream="rf", name="{name}"}}'
        f" * on (station, target) group_left (frequency) anbo_target_info{{{ST}}}"
    )
    plans = f'0 * label_replace(anbo_migration_phase{{{SEL}}}, "frequency", "$1", "new", "(.*)") + 1'
    join = "on (station, frequency) group_left (migration, new)"
    return f"max by (station, migration, new) (({reading}) * {join} ({plans}))"


def migration_alerts() -> str:
    """The migration pack's alert names, as a regex (from the rules, not a copied list)."""
    return "|".join(sorted({r.alert for r in builtin_rules() if r.selector.get("kind") == "migration"}))


def build() -> dm.Dashboard:
    b = Board(
        UID,
        "anbo / 700 MHz migration and FM re-frequencing",
        "Every planned move ([[migrations]]) with its phase and countdown, emission left on the "
        "vacated channel, the new channel's level and the programme identity check.",
        [
            datasource_var(),
            station_var(),
            query_var("service", "Service", f"label_values(anbo_migration_phase{{{ST}}}, service)"),
            query_var(
                "migration",
                "Migration",
                f'label_values(anbo_migration_phase{{{ST}, service=~"$service"}}, migration)',
            ),
            scheme_var(),
        ],
    )
    moves = tbl(
        "Planned moves",
        "Each migration plan: old and new channel or frequency, phase, seconds to the cutover "
        "(negative after it).",
        "s",
        [
            qt(f"max by (station, migration, service, old, new) (anbo_migration_phase{{{SEL}}})"),
            qt(
                f"max by (station, migration, service, old, new) (anbo_migration_seconds_to_cutover{{{SEL}}})"
            ),
        ],
        fixed_thresholds((None, "text")),
        transformations=[
            merge(),
            organize(["Time"], {"Value #A": "phase", "Value #B": "to cutover"}),
        ],
    ).override_by_name(
        "phase",
        [
            dm.DynamicConfigValue(id_val="mappings", value=PHASES),
            dm.DynamicConfigValue(id_val="unit", value="none"),
            dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
        ],
    )
    b.add(moves, 16, 7)
    b.add(
        st(
            "Next cutover in",
            "Time to the nearest cutover still ahead.",
            "s",
            [q(f"min(anbo_migration_seconds_to_cutover{{{SEL}}} > 0)", "next cutover", instant=True)],
            fixed_thresholds((None, "orange"), (86400, "green")),
        ).no_value("no cutover ahead"),
        8,
        7,
    )
    b.add(
        timeline(
            "Phase",
            "Before simulcast, simulcast (both on air, same programme), after cutover (old switched off).",
            [q(f"anbo_migration_phase{{{SEL}}}", "{{migration}}")],
            PHASES,
        ),
        24,
        5,
    )
    b.add(
        ts(
            "Old channel after vacating",
            "RF level received on the old channel; after the cutover VacatedChannelEmission fires above the "
            "drawn limit (interference with the services that take over the band).",
            "suffix: dBµV",
            [q(f"anbo_migration_old_rf_level_dbuv{{{SEL}}}", "{{migration}} old {{old}}")],
            rule_thresholds("old_rf_level_dbuv", alerts=("VacatedChannelEmission",)),
        ),
        12,
        7,
    )
    b.add(
        ts(
            "New channel level",
            "RF level received on the new channel; after the cutover NewChannelOffAir fires below the limit.",
            "suffix: dBµV",
            [q(f"anbo_migration_new_rf_level_dbuv{{{SEL}}}", "{{migration}} new {{new}}")],
            rule_thresholds("new_rf_level_dbuv", alerts=("NewChannelOffAir",)),
        ),
        12,
        7,
    )
    b.add(
        timeline(
            "New channel lock (DTV)",
            "Whether the receiver of the new channel is locked to the multiplex (the target whose "
            "channel is the plan's new one; DtvLockLoss when it is not).",
            [q(new_channel_reading("lock"), "{{migration}} new {{new}}")],
            FLAG_OK,
        ),
        24,
        4,
    )
    b.add(
        timeline(
            "Programme identity (RDS PI / service id)",
            "Whether the new channel carries the expected RDS PI (FM) or service and TS ids (DTV); "
            "WrongProgramme (错播) when not.",
            [
                q(
                    f"anbo_migration_pi_match{{{SEL}}} or anbo_migration_service_id_match{{{SEL}}}",
                    "{{migration}}",
                )
            ],
            MATCH,
        ),
        12,
        6,
    )
    b.add(
        ts(
            "Programme identity (audio)",
            "Correlation of the old and new channels' loudness envelopes during the simulcast; "
            "WrongProgramme's minimum is drawn.",
            "none",
            [q(f"anbo_migration_identity_similarity{{{SEL}}}", "{{migration}}")],
            rule_thresholds("identity_similarity", alerts=("WrongProgramme",)),
        ),
        12,
        6,
    )
    active_alerts(b, f'{ST}, alertname=~"{migration_alerts()}"')
    return b.build()
