"""The engine's state machine, unknowns, staleness, inhibition, maintenance, flapping and persistence.

Time is simulated: ``now`` is the tick number in seconds and ``wall`` = WALL0 + now unless a
test says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from rules.engine import Engine, EngineConfig, InhibitRule, SnapshotError
from rules.maintenance import MaintenanceWindow
from rules.model import AlertState, OutageClass, Severity, SuppressReason, TargetView, Transition
from tests.rules.helpers import WALL0, Driver, one_rule, rules_from, states, view

X_GT_10 = """\
alert: High
expr: x > 10
for: {for_}
severity: warning
"""


def high(for_: str = "5s", extra: str = "") -> Driver:
    return Driver(one_rule(X_GT_10.format(for_=for_) + extra))


def fm(t: float, **m: float | str | None) -> TargetView:
    """fm1, seen at t, with measurements m."""
    return dataclasses.replace(view("fm1", last_seen=t), measurements=m)


# --------------------------------------------------------------------------- transitions


def test_inactive_pending_firing_resolved() -> None:
    d = high()
    log = d.run(0, 8, lambda t: [fm(t, x=20.0 if t < 7 else 0.0)])
    assert states(log) == [(0, "inactive", "pending"), (5, "pending", "firing"), (7, "firing", "resolved")]
    pending, firing, resolved = (tr for _, tr in log)
    assert not pending.notify and pending.reason is None and pending.starts_at == WALL0
    assert firing.notify and firing.starts_at == WALL0 + 5 and firing.ends_at is None
    assert resolved.notify and resolved.starts_at == WALL0 + 5 and resolved.ends_at == WALL0 + 7
    assert resolved.value == 0.0 and firing.value == 20.0
    assert d.engine.active() == []


def test_pending_to_inactive_when_condition_goes_before_for() -> None:
    d = high()
    log = d.run(0, 10, lambda t: [fm(t, x=20.0 if t < 3 else 0.0)])
    assert states(log) == [(0, "inactive", "pending"), (3, "pending", "inactive")]
    assert not any(tr.notify for _, tr in log)


def test_for_zero_fires_in_one_step() -> None:
    d = high("0s")
    log = d.run(0, 2, lambda t: [fm(t, x=20.0)])
    assert states(log) == [(0, "inactive", "firing")]
    assert log[0][1].notify


def test_active_lists_pending_and_firing() -> None:
    d = high()
    d.tick(0, fm(0, x=20.0))
    [alert] = d.engine.active()
    assert alert.state is AlertState.PENDING and not alert.notify and alert.starts_at == WALL0
    d.run(1, 6, lambda t: [fm(t, x=20.0)])
    [alert] = d.engine.active()
    assert alert.state is AlertState.FIRING and alert.notify and alert.starts_at == WALL0 + 5
    assert alert.ends_at is None and alert.reason is None and alert.value == 20.0


def test_clear_condition_and_clear_for_hysteresis() -> None:
    d = high("0s", "clear: x < 5\nclear_for: 3s\n")
    xs = {0: 20.0, 1: 7.0, 2: 4.0, 3: 4.0, 4: 7.0, 5: 4.0, 6: 4.0, 7: 4.0, 8: 4.0, 9: 4.0}
    log = d.run(0, 10, lambda t: [fm(t, x=xs[t])])
    # 7 is inside the band (neither fire nor clear); the clear run of t2–t3 is broken at t4
    assert states(log) == [(0, "inactive", "firing"), (8, "firing", "resolved")]


def test_keep_firing_for_holds_and_rearms() -> None:
    d = high("0s", "keep_firing_for: 5s\n")
    xs = [20.0, 0.0, 0.0, 20.0, 0.0] + [0.0] * 10
    log = d.run(0, 15, lambda t: [fm(t, x=xs[t])])
    # cleared at 1, condition back at 3 (re-armed), cleared at 4, resolved 5 s later
    assert states(log) == [(0, "inactive", "firing"), (9, "firing", "resolved")]


def test_selector_limits_the_targets() -> None:
    d = Driver(one_rule("alert: A\nexpr: x > 1\nselector: {kind: dtv}\n"))
    out = d.tick(0, view("fm1", x=5.0), view("dtv1", "dtv", x=5.0))
    assert [t.target for t in out] == ["dtv1"]


def test_target_leaving_the_configuration_resolves_its_alerts() -> None:
    d = high("0s")
    d.tick(0, fm(0, x=20.0), view("fm2", x=20.0, last_seen=0))
    out = d.tick(1, view("fm2", x=20.0, last_seen=1))
    assert [(t.target, t.to_state.value, t.notify) for t in out] == [("fm1", "resolved", True)]


def test_duplicate_target_names_are_refused() -> None:
    d = high()
    with pytest.raises(ValueError, match="duplicate target names"):
        d.tick(0, fm(0, x=1.0), fm(0, x=2.0))


def test_duplicate_rules_are_refused() -> None:
    rules = one_rule("alert: A\nexpr: x > 1\n")
    with pytest.raises(ValueError, match="duplicate rules"):
        Engine([*rules, *rules])


def test_labels_annotations_and_runbook() -> None:
    rules = one_rule(
        """\
        alert: DeadAir
        selector: {kind: fm}
        expr: audio_rms_dbfs < -40 and silence == 1
        for: 10s
        severity: critical
        outage_class: outage
        labels: {team: fm}
        annotations:
          summary: "Dead air on {{ service }} ({{ target }})"
          description: >-
            Audio RMS {{ value }} dBFS for {{ for }};
            PI {{ params.rds_pi }}, {{ labels.county }}, {{ nothing }}
        runbook_url: https://anbo.example/runbooks/DeadAir
        """
    )
    d = Driver(rules)
    v = view(
        "fm-news-97.5",
        labels={"service": "News", "county": "Qingshan"},
        params={"rds_pi": "C201"},
        audio_rms_dbfs=-63.456,
        silence=1.0,
    )
    log = d.run(0, 11, lambda t: [v])
    _, firing = log[-1]
    assert firing.labels == {
        "alertname": "DeadAir",
        "severity": "critical",
        "station": "s1",
        "target": "fm-news-97.5",
        "kind": "fm",
        "service": "News",
        "county": "Qingshan",
        "team": "fm",
    }
    assert firing.annotations == {
        "summary": "Dead air on News (fm-news-97.5)",
        "description": "Audio RMS -63.46 dBFS for 10s; PI C201, Qingshan, unknown",
        "runbook_url": "https://anbo.example/runbooks/DeadAir",
    }
    assert firing.runbook_url == "https://anbo.example/runbooks/DeadAir"
    assert firing.severity is Severity.CRITICAL and firing.outage_class is OutageClass.OUTAGE
    assert firing.value == -63.456


def test_active_alerts_show_the_values_of_this_tick() -> None:
    rules = one_rule(
        """\
        alert: Low
        expr: level < 10
        annotations:
          summary: "{{ value }} on {{ labels.county }}, PI {{ rds_pi }}"
        """
    )
    d = Driver(rules)
    shown = []
    for t, (level, pi) in enumerate(
        [(5.0, "C201"), (5.0, "C201"), (4.0, "C201"), (4.0, "C202"), (5.0, "C202")]
    ):
        d.tick(float(t), view(labels={"county": "A"}, level=level, rds_pi=pi))
        first, again = d.engine.active(), d.engine.active()
        assert first == again
        shown.append(first[0].annotations["summary"])
    assert shown == [
        "5 on A, PI C201",
        "5 on A, PI C201",
        "4 on A, PI C201",
        "4 on A, PI C202",
        "5 on A, PI C202",
    ]


# --------------------------------------------------------------------------- unknown


def test_unknown_neither_advances_nor_cancels_a_pending_alert() -> None:
    d = high()
    xs: list[float | None] = [20.0, 20.0] + [None] * 8 + [20.0] * 10
    log = d.run(0, 20, lambda t: [fm(t, x=xs[t])])
    # 1 s counted before the gap (0→1, plus 1→2 up to the first unknown tick), none during it
    assert states(log) == [(0, "inactive", "pending"), (13, "pending", "firing")]


def test_unknown_never_resolves_a_firing_alert() -> None:
    d = high("0s")
    xs: list[float | None] = [20.0] + [None] * 50 + [0.0]
    log = d.run(0, 52, lambda t: [fm(t, x=xs[t])])
    assert states(log) == [(0, "inactive", "firing"), (51, "firing", "resolved")]


def test_unknown_does_not_interrupt_a_clear_run_it_pauses_it() -> None:
    d = high("0s", "clear_for: 4s\n")
    xs: list[float | None] = [20.0, 0.0, 0.0, None, None, 0.0, 0.0, 0.0]
    log = d.run(0, 8, lambda t: [fm(t, x=xs[t])])
    # clear since 1; frozen 3→5 shifts it to 3; 4 s of clear reached at 7
    assert states(log) == [(0, "inactive", "firing"), (7, "firing", "resolved")]


def test_kleene_logic_in_rules() -> None:
    d = Driver(
        rules_from(
            """\
            groups:
              - name: g
                rules:
                  - {alert: Either, expr: a > 1 or b > 1}
                  - {alert: Both, expr: a > 1 and b > 1}
            """
        )
    )
    out = d.tick(0, fm(0, b=5.0))  # a unknown: true or unknown = true; unknown and true = unknown
    assert [(t.alertname, t.to_state.value) for t in out] == [("Either", "firing")]
    out = d.tick(1, fm(1, b=0.0))  # unknown or false = unknown: Either stays firing
    assert out == []
    assert [a.alertname for a in d.engine.active()] == ["Either"]


def test_false_and_unknown_is_false() -> None:
    d = Driver(one_rule("alert: Both\nexpr: a > 1 and b > 1\nfor: 5s\n"))
    d.tick(0, fm(0, a=5.0, b=5.0))
    out = d.tick(1, fm(1, b=0.0))  # a unknown, b false → false → pending ends
    assert [(t.from_state.value, t.to_state.value) for t in out] == [("pending", "inactive")]


# --------------------------------------------------------------------------- staleness


def test_telemetry_lost_after_stale_after() -> None:
    d = high("0s")
    log = d.run(0, 40, lambda t: [fm(min(t, 5), x=20.0)])
    assert states(log, "TelemetryLost") == [(36, "inactive", "firing")]
    _, lost = log[-1]
    assert lost.severity is Severity.CRITICAL and lost.outage_class is OutageClass.NONE
    assert lost.notify and lost.labels["target"] == "fm1" and lost.labels["alertname"] == "TelemetryLost"
    assert lost.annotations["summary"] == "No telemetry from fm1"
    assert lost.value == 31.0
    assert lost.runbook_url == "https://anbo.example/runbooks/TelemetryLost"


def test_stale_target_freezes_its_other_alerts() -> None:
    d = high("40s")

    def make(t: int) -> list[TargetView]:
        seen = 0 if t < 50 else t  # no telemetry from 1 s to 49 s
        return [fm(seen, x=20.0)]  # the last value keeps saying "true"

    log = d.run(0, 70, make)
    assert states(log) == [
        (0, "inactive", "pending"),
        (31, "inactive", "firing"),  # TelemetryLost
        (50, "firing", "resolved"),  # TelemetryLost
        (59, "pending", "firing"),  # High: 31 s counted before the loss, 9 more after
    ]


def test_stale_target_keeps_a_firing_alert_firing() -> None:
    d = high("0s")
    log = d.run(0, 100, lambda t: [fm(t, x=20.0)] if t <= 40 else [fm(0, x=0.0)])
    # from 41 the value says "clear", but the target is stale (last seen 0): nothing resolves
    assert states(log, "High") == [(0, "inactive", "firing")]
    assert {a.alertname for a in d.engine.active()} == {"High", "TelemetryLost"}


def test_never_seen_targets_get_a_startup_grace() -> None:
    d = high()
    log = d.run(0, 40, lambda t: [view("fm1", last_seen=None)])
    assert states(log) == [(30, "inactive", "firing")]
    assert log[0][1].value is None
    assert "last: never" in log[0][1].annotations["description"]


def test_stale_after_is_configurable() -> None:
    d = Driver(one_rule("alert: A\nexpr: x > 1\n"), EngineConfig.model_validate({"stale_after": "5s"}))
    log = d.run(0, 10, lambda t: [fm(0)])
    assert states(log, "TelemetryLost") == [(6, "inactive", "firing")]


# --------------------------------------------------------------------------- inhibition

CARRIER_AND_AUDIO = """\
groups:
  - name: g
    rules:
      - {alert: CarrierLoss, expr: rf_level_dbuv < 20, severity: critical, outage_class: outage}
      - {alert: DeadAir, expr: silence == 1, severity: critical, outage_class: outage}
"""


def test_carrier_loss_inhibits_dead_air_on_the_same_target() -> None:
    d = Driver(rules_from(CARRIER_AND_AUDIO))
    out = d.tick(0, fm(0, rf_level_dbuv=5.0, silence=1.0))
    got = {t.alertname: (t.to_state.value, t.notify, t.reason) for t in out}
    assert got == {
        "CarrierLoss": ("firing", True, None),
        "DeadAir": ("firing", False, SuppressReason.INHIBITED),
    }
    dead = next(a for a in d.engine.active() if a.alertname == "DeadAir")
    assert dead.state is AlertState.FIRING and not dead.notify and dead.reason is SuppressReason.INHIBITED

    # carrier back, programme still silent: held for the inhibit rule's hold (30 s) ...
    out = d.tick(5, fm(5, rf_level_dbuv=60.0, silence=1.0))
    assert [(t.alertname, t.to_state.value, t.notify) for t in out] == [("CarrierLoss", "resolved", True)]
    out = d.tick(34, fm(34, rf_level_dbuv=60.0, silence=1.0))
    assert out == []
    # ... then, still silent, DeadAir is an incident of its own: delivered with its original start
    out = d.tick(35, fm(35, rf_level_dbuv=60.0, silence=1.0))
    got2 = {t.alertname: (t.from_state.value, t.to_state.value, t.notify, t.starts_at) for t in out}
    assert got2 == {"DeadAir": ("firing", "firing", True, WALL0)}
    out = d.tick(38, fm(38, rf_level_dbuv=60.0, silence=0.0))
    assert [(t.alertname, t.to_state.value, t.notify) for t in out] == [("DeadAir", "resolved", True)]


def test_consequences_that_clear_soon_after_their_cause_are_never_notified() -> None:
    """The audio returns a few seconds after the carrier: no DeadAir page in between."""
    d = Driver(rules_from(CARRIER_AND_AUDIO))
    d.tick(0, fm(0, rf_level_dbuv=5.0, silence=1.0))
    out = d.tick(5, fm(5, rf_level_dbuv=60.0, silence=1.0))
    assert [(t.alertname, t.notify) for t in out] == [("CarrierLoss", True)]
    out = d.tick(12, fm(12, rf_level_dbuv=60.0, silence=0.0))
    assert [(t.alertname, t.to_state.value, t.notify, t.reason) for t in out] == [
        ("DeadAir", "resolved", False, SuppressReason.INHIBITED)
    ]


def test_a_consequence_firing_during_the_hold_waits_for_it() -> None:
    d = Driver(rules_from(CARRIER_AND_AUDIO))
    d.tick(0, fm(0, rf_level_dbuv=5.0, silence=0.0))
    d.tick(5, fm(5, rf_level_dbuv=60.0, silence=0.0))  # CarrierLoss resolved at 5
    out = d.tick(10, fm(10, rf_level_dbuv=60.0, silence=1.0))
    assert [(t.alertname, t.notify, t.reason) for t in out] == [("DeadAir", False, SuppressReason.INHIBITED)]
    out = d.tick(35, fm(35, rf_level_dbuv=60.0, silence=1.0))
    assert [(t.alertname, t.to_state.value, t.notify) for t in out] == [("DeadAir", "firing", True)]


def test_a_reload_keeps_the_hold_in_progress() -> None:
    d = Driver(rules_from(CARRIER_AND_AUDIO))
    d.tick(0, fm(0, rf_level_dbuv=5.0, silence=1.0))
    d.tick(5, fm(5, rf_level_dbuv=60.0, silence=1.0))  # CarrierLoss resolved: the hold runs
    old = d.engine
    d.engine = Engine(rules_from(CARRIER_AND_AUDIO))
    d.engine.restore(old.snapshot(), 5.0, WALL0 + 5.0, tolerance=math.inf)
    d.engine.carry_history(old)
    assert d.tick(6, fm(6, rf_level_dbuv=60.0, silence=1.0)) == []  # DeadAir still held
    out = d.tick(35, fm(35, rf_level_dbuv=60.0, silence=1.0))
    assert [(t.alertname, t.to_state.value, t.notify) for t in out] == [("DeadAir", "firing", True)]


def test_hold_is_per_inhibit_rule() -> None:
    rule = InhibitRule(source="CarrierLoss", targets=["DeadAir"], hold=0.0)
    d = Driver(rules_from(CARRIER_AND_AUDIO), EngineConfig(inhibit_rules=[rule]))
    d.tick(0, fm(0, rf_level_dbuv=5.0, silence=1.0))
    out = d.tick(5, fm(5, rf_level_dbuv=60.0, silence=1.0))
    got = {t.alertname: (t.to_state.value, t.notify) for t in out}
    assert got == {"CarrierLoss": ("resolved", True), "DeadAir": ("firing", True)}


def test_an_inhibited_alert_resolves_silently() -> None:
    d = Driver(rules_from(CARRIER_AND_AUDIO))
    d.tick(0, fm(0, rf_level_dbuv=5.0, silence=1.0))
    out = d.tick(1, fm(1, rf_level_dbuv=5.0, silence=0.0))
    assert [(t.alertname, t.to_state.value, t.notify, t.reason) for t in out] == [
        ("DeadAir", "resolved", False, SuppressReason.INHIBITED)
    ]


def test_an_alert_notified_before_the_inhibition_stays_notified() -> None:
    d = Driver(rules_from(CARRIER_AND_AUDIO))
    d.tick(0, fm(0, rf_level_dbuv=60.0, silence=1.0))
    d.tick(1, fm(1, rf_level_dbuv=5.0, silence=1.0))
    dead = next(a for a in d.engine.active() if a.alertname == "DeadAir")
    assert dead.notify and dead.reason is SuppressReason.INHIBITED
    out = d.tick(2, fm(2, rf_level_dbuv=5.0, silence=0.0))
    assert [(t.alertname, t.to_state.value, t.notify) for t in out] == [("DeadAir", "resolved", True)]


def test_inhibition_needs_equal_labels() -> None:
    d = Driver(rules_from(CARRIER_AND_AUDIO))
    out = d.tick(0, view("fm1", rf_level_dbuv=5.0, silence=0.0), view("fm2", rf_level_dbuv=60.0, silence=1.0))
    assert {(t.alertname, t.target, t.notify) for t in out} == {
        ("CarrierLoss", "fm1", True),
        ("DeadAir", "fm2", True),
    }


def test_pending_source_does_not_inhibit() -> None:
    rules = rules_from(CARRIER_AND_AUDIO.replace("severity: critical, outage_class: outage}", "for: 10s}", 1))
    d = Driver(rules)
    out = d.tick(0, fm(0, rf_level_dbuv=5.0, silence=1.0))
    assert {(t.alertname, t.to_state.value, t.notify) for t in out} == {
        ("CarrierLoss", "pending", False),
        ("DeadAir", "firing", True),
    }


def test_inhibit_rules_are_configurable() -> None:
    d = Driver(rules_from(CARRIER_AND_AUDIO), EngineConfig(inhibit_rules=[]))
    out = d.tick(0, fm(0, rf_level_dbuv=5.0, silence=1.0))
    assert all(t.notify for t in out) and len(out) == 2
    custom = [InhibitRule(source="DeadAir", targets=["CarrierLoss"], equal=["station"])]
    d = Driver(rules_from(CARRIER_AND_AUDIO), EngineConfig(inhibit_rules=custom))
    out = d.tick(0, view("fm1", rf_level_dbuv=5.0), view("fm2", silence=1.0))
    assert {(t.alertname, t.notify) for t in out} == {("CarrierLoss", False), ("DeadAir", True)}


def test_critical_variant_inhibits_the_warning_variant() -> None:
    rules = rules_from(
        """\
        groups:
          - name: g
            rules:
              - {alert: VswrHigh, expr: vswr >= 1.5, severity: warning}
              - {alert: VswrHigh, expr: vswr >= 2.0, severity: critical}
        """
    )
    d = Driver(rules)
    out = d.tick(0, view("tx1", "tx", vswr=1.7))
    assert [(t.labels["severity"], t.notify) for t in out] == [("warning", True)]
    d2 = Driver(rules)
    out = d2.tick(0, view("tx1", "tx", vswr=2.5))
    assert {(t.labels["severity"], t.notify, t.reason) for t in out} == {
        ("warning", False, SuppressReason.INHIBITED),
        ("critical", True, None),
    }


# --------------------------------------------------------------------------- maintenance


def window(start: float, end: float, **kw: object) -> MaintenanceWindow:
    data = {
        "start": datetime.fromtimestamp(WALL0 + start, UTC),
        "end": datetime.fromtimestamp(WALL0 + end, UTC),
        **kw,
    }
    return MaintenanceWindow.model_validate(data)


def test_maintenance_records_without_notifying() -> None:
    config = EngineConfig(maintenance=[window(10, 20, targets=["fm1"])])
    d = Driver(rules_from(CARRIER_AND_AUDIO), config)
    log = d.run(0, 19, lambda t: [fm(t, silence=1.0 if 12 <= t < 15 else 0.0)])
    assert [(t, tr.to_state.value, tr.notify, tr.reason) for t, tr in log] == [
        (12, "firing", False, SuppressReason.MAINTENANCE),
        (15, "resolved", False, SuppressReason.MAINTENANCE),
    ]


def test_maintenance_overrun_raises_its_own_alert() -> None:
    config = EngineConfig(maintenance=[window(10, 20, targets=["fm1"])])
    d = Driver(rules_from(CARRIER_AND_AUDIO), config)
    log = d.run(0, 26, lambda t: [fm(t, rf_level_dbuv=5.0 if 12 <= t < 25 else 60.0, silence=0.0)])
    got = [(t, tr.alertname, tr.from_state.value, tr.to_state.value, tr.notify) for t, tr in log]
    assert got == [
        (12, "CarrierLoss", "inactive", "firing", False),
        (20, "MaintenanceOverrun", "inactive", "firing", True),
        (20, "CarrierLoss", "firing", "firing", True),  # delivered now, with its start at 12
        (25, "CarrierLoss", "firing", "resolved", True),
        (25, "MaintenanceOverrun", "firing", "resolved", True),
    ]
    overrun = log[1][1]
    assert overrun.severity is Severity.CRITICAL and overrun.labels["target"] == "fm1"
    assert "CarrierLoss is still firing" in overrun.annotations["description"]
    assert log[2][1].starts_at == WALL0 + 12


def test_no_overrun_for_degraded_alerts_but_they_are_delivered() -> None:
    rules = one_rule("alert: Overmodulation\nexpr: modulation_percent >= 105\noutage_class: degraded\n")
    d = Driver(rules, EngineConfig(maintenance=[window(0, 5)]))
    log = d.run(0, 7, lambda t: [fm(t, modulation_percent=110.0)])
    assert [(t, tr.alertname, tr.to_state.value, tr.notify) for t, tr in log] == [
        (0, "Overmodulation", "firing", False),
        (5, "Overmodulation", "firing", True),
    ]


def test_station_wide_window() -> None:
    rules = one_rule("alert: A\nexpr: x > 1\n")
    d = Driver(rules, EngineConfig(maintenance=[window(0, 100, station="s1")]))
    out = d.tick(0, view("fm1", x=5.0), view("tx1", "tx", x=5.0))
    assert [(t.target, t.reason) for t in out] == [
        ("fm1", SuppressReason.MAINTENANCE),
        ("tx1", SuppressReason.MAINTENANCE),
    ]
    d = Driver(rules, EngineConfig(maintenance=[window(0, 100, station="other")]))
    assert all(t.notify for t in d.tick(0, view("fm1", x=5.0)))


def test_telemetry_lost_is_suppressed_in_maintenance() -> None:
    d = Driver(one_rule("alert: A\nexpr: x > 1\n"), EngineConfig(maintenance=[window(0, 100)]))
    log = d.run(0, 40, lambda t: [fm(0)])
    assert [(tr.alertname, tr.notify, tr.reason) for _, tr in log] == [
        ("TelemetryLost", False, SuppressReason.MAINTENANCE)
    ]


def test_weekly_window_in_the_engine() -> None:
    weekly = MaintenanceWindow.model_validate(
        {"days": ["tue"], "start": "02:00", "end": "04:00", "tz": "Asia/Shanghai"}
    )
    d = Driver(one_rule("alert: A\nexpr: x > 1\n"), EngineConfig(maintenance=[weekly]))
    tue_0159 = datetime.fromisoformat("2024-05-14T01:59:00+08:00").timestamp()
    out = d.tick(0, fm(0, x=5.0), wall=tue_0159 + 60)
    assert [(t.to_state.value, t.reason) for t in out] == [("firing", SuppressReason.MAINTENANCE)]
    out = d.tick(1, fm(1, x=0.0), wall=tue_0159 + 61)
    assert [(t.to_state.value, t.notify) for t in out] == [("resolved", False)]
    out = d.tick(2, fm(2, x=5.0), wall=tue_0159)
    assert [(t.to_state.value, t.notify) for t in out] == [("firing", True)]


def test_set_maintenance_replaces_windows() -> None:
    d = Driver(one_rule("alert: A\nexpr: x > 1\n"))
    d.engine.set_maintenance([window(0, 10)])
    assert [t.reason for t in d.tick(0, fm(0, x=5.0))] == [SuppressReason.MAINTENANCE]


# --------------------------------------------------------------------------- flapping


def flappy(threshold: int = 3, window_s: str = "60s") -> Driver:
    return Driver(
        one_rule("alert: High\nexpr: x > 10\nseverity: critical\n"),
        EngineConfig.model_validate({"flap_threshold": threshold, "flap_window": window_s}),
    )


def test_flapping_becomes_one_alert_and_holds_notifications() -> None:
    d = flappy()
    log = d.run(0, 10, lambda t: [fm(t, x=20.0 if t % 2 == 0 else 0.0)])
    got = [(t, tr.alertname, tr.to_state.value, tr.notify, tr.reason) for t, tr in log]
    assert got[:5] == [
        (0, "High", "firing", True, None),
        (1, "High", "resolved", True, None),
        (2, "High", "firing", True, None),
        (3, "High", "resolved", True, None),  # a notified firing always gets its resolution
        (3, "Flapping", "firing", True, None),  # 4 transitions > 3 within 60 s
    ]
    assert got[5:] == [
        (4, "High", "firing", False, SuppressReason.FLAPPING),
        (5, "High", "resolved", False, SuppressReason.FLAPPING),
        (6, "High", "firing", False, SuppressReason.FLAPPING),
        (7, "High", "resolved", False, SuppressReason.FLAPPING),
        (8, "High", "firing", False, SuppressReason.FLAPPING),
        (9, "High", "resolved", False, SuppressReason.FLAPPING),
    ]
    flapping = log[4][1]
    assert flapping.labels["alertname"] == "Flapping" and flapping.labels["flapping_alertname"] == "High"
    assert flapping.labels["flapping_severity"] == "critical" and flapping.labels["severity"] == "warning"
    assert flapping.annotations["summary"] == "High on fm1 is flapping"
    assert flapping.outage_class is OutageClass.NONE


def test_flapping_ends_after_a_stable_window_and_delivers_the_outcome() -> None:
    d = flappy()
    # toggles until 6, then stays true: last transition (firing) at 6
    log = d.run(0, 70, lambda t: [fm(t, x=20.0 if t % 2 == 0 or t >= 6 else 0.0)])
    tail = [(t, tr.alertname, tr.from_state.value, tr.to_state.value, tr.notify) for t, tr in log if t > 6]
    assert tail == [
        (66, "Flapping", "firing", "resolved", True),
        (66, "High", "firing", "firing", True),
    ]
    assert log[-1][1].starts_at == WALL0 + 6


def test_flapping_of_an_alert_that_settles_resolved() -> None:
    d = flappy()
    log = d.run(0, 70, lambda t: [fm(t, x=20.0 if t % 2 == 0 and t <= 6 else 0.0)])
    tail = [(t, tr.alertname, tr.to_state.value, tr.notify) for t, tr in log if t > 7]
    assert tail == [(67, "Flapping", "resolved", True)]
    assert d.engine.active() == []


def test_slow_changes_are_not_flapping() -> None:
    d = flappy(threshold=3, window_s="10s")
    log = d.run(0, 60, lambda t: [fm(t, x=20.0 if (t // 5) % 2 == 0 else 0.0)])
    assert all(tr.alertname == "High" and tr.notify for _, tr in log)


# --------------------------------------------------------------------------- windows (vectorized history)


def test_windowed_functions_over_many_targets() -> None:
    rules = rules_from(
        """\
        groups:
          - name: g
            rules:
              - {alert: AvgLow, expr: "avg_over(mer_db, 4s) < 20", annotations: {v: "{{ value }}"}}
              - {alert: MinLow, expr: "min_over(mer_db, 4s) < 10"}
              - {alert: MaxHigh, expr: "max_over(mer_db, 4s) > 40"}
              - {alert: Changes, expr: "changes_over(rds_pi, 1m) >= 2"}
        """
    )
    d = Driver(rules)
    series: dict[str, list[float | None]] = {
        "a": [30.0, 30.0, 30.0, 10.0, 10.0, 10.0, 10.0],  # avg of last 5 at t6: 14 → AvgLow
        "b": [5.0, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0],  # the 5 is out of the window at t6
        "c": [50.0, None, None, None, None, None, 30.0],  # one known 30 in window, 50 is older
        "d": [None] * 7,
    }
    pis: dict[str, list[str | None]] = {
        "a": ["A", "A", "B", "B", "A", "A", "A"],  # two changes
        "b": ["A"] * 7,
        "c": ["A", None, "B", None, "B", "B", "B"],  # one change, across unknowns
        "d": [None] * 7,
    }
    out: list[Transition] = []
    for t in range(7):
        views = [view(n, last_seen=t, mer_db=series[n][t], rds_pi=pis[n][t]) for n in "abcd"]
        out = d.tick(t, *views)
    # at t = 6 the 4 s window holds the samples of t = 2 … 6
    firing = {(a.alertname, a.target) for a in d.engine.active() if a.state is AlertState.FIRING}
    assert firing == {("AvgLow", "a"), ("Changes", "a")}
    avg = next(a for a in d.engine.active() if a.alertname == "AvgLow")
    assert avg.value == pytest.approx(14.0) and avg.annotations["v"] == "14"
    # b's early 5 fired MinLow until it left the window; c's 50 fired MaxHigh, frozen while
    # its window held no known sample (t = 5), resolved when 30 arrived
    assert [(t.alertname, t.target, t.to_state.value) for t in out] == [("MaxHigh", "c", "resolved")]
    assert states(d.log, "MinLow") == [(0, "inactive", "firing"), (5, "firing", "resolved")]


def test_history_grows_for_long_windows_and_is_bounded() -> None:
    rule = one_rule("alert: Avg\nexpr: avg_over(x, 100s) > 0\nannotations: {v: '{{ value }}'}\n")
    d = Driver(rule)
    for t in range(200):
        d.tick(t, fm(t, x=float(t)))
    [alert] = d.engine.active()
    assert alert.value == pytest.approx(np.mean(np.arange(99, 200)))
    assert d.engine._history.capacity >= 101

    small = Driver(rule, EngineConfig(history_max_samples=32))
    for t in range(200):
        small.tick(t, fm(t, x=float(t)))
    [alert] = small.engine.active()
    assert small.engine._history.capacity == 32
    assert alert.value == pytest.approx(np.mean(np.arange(168, 200)))


def test_only_windowed_measurements_are_kept() -> None:
    d = Driver(rules_from("groups: [{name: g, rules: [{alert: A, expr: 'avg_over(x, 5s) > 1 and y > 1'}]}]"))
    assert d.engine._history.names == ("x",)
    d0 = Driver(one_rule("alert: A\nexpr: y > 1\n"))
    d0.tick(0, fm(0, y=3.0))
    assert d0.engine._history.names == ()


def test_reloaded_rules_carry_the_window_history_over() -> None:
    """SIGHUP rebuilds the engine: a half-full window stays half full (numbers and strings)."""
    text = """\
        groups:
          - name: g
            rules:
              - {alert: AvgLow, expr: "avg_over(mer_db, 10s) < 20", annotations: {v: "{{ value }}"}}
              - {alert: Changes, expr: "changes_over(rds_pi, 1m) >= 2"}
        """
    reloaded_text = """\
        groups:
          - name: g
            rules:
              - {alert: AvgLow, expr: "avg_over(mer_db, 10s) < 20", annotations: {v: "{{ value }}"}}
              - {alert: Changes, expr: "changes_over(rds_pi, 1m) >= 2"}
              - {alert: NewOne, expr: "max_over(c_n_db, 1m) < 0"}
        """
    mer = [30.0, 30.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    pi = ["A", "B", "B", "B", "B", "A", "A", "A"]

    def views(t: int) -> list[TargetView]:
        return [view("a", last_seen=t, mer_db=mer[t], rds_pi=pi[t]), view("b", last_seen=t, mer_db=30.0)]

    straight = Driver(rules_from(text))
    for t in range(8):
        straight.tick(t, *views(t))

    d = Driver(rules_from(text))
    for t in range(4):
        d.tick(t, *views(t))
    old = d.engine
    d.engine = Engine(rules_from(reloaded_text))
    d.engine.restore(old.snapshot(), 3.0, WALL0 + 3.0, tolerance=math.inf)
    assert d.engine.carry_history(old) == 4
    assert d.engine._history.names == ("c_n_db", "mer_db", "rds_pi")
    for t in range(4, 8):
        d.tick(t, *views(t))

    def summary(engine: Engine) -> set[tuple[str, str, str, object]]:
        return {(a.alertname, a.target, a.state.value, a.value) for a in engine.active()}

    assert summary(d.engine) == summary(straight.engine)
    avg = next(a for a in d.engine.active() if a.alertname == "AvgLow")
    assert avg.value == pytest.approx(15.0)  # t = 0 … 7: (2 × 30 + 6 × 10) / 8
    assert {a.alertname for a in d.engine.active()} == {"AvgLow", "Changes"}


def test_nothing_to_carry_over_is_harmless() -> None:
    windowed = Engine(rules_from("groups: [{name: g, rules: [{alert: A, expr: 'avg_over(x, 5s) > 1'}]}]"))
    plain = Engine(one_rule("alert: A\nexpr: y > 1\n"))
    assert windowed.carry_history(plain) == 0
    assert plain.carry_history(windowed) == 0


# --------------------------------------------------------------------------- snapshot / restore


def roundtrip(engine: Engine) -> dict[str, Any]:
    snap = engine.snapshot()
    data: dict[str, Any] = json.loads(json.dumps(snap, allow_nan=False))
    return data


def test_restart_keeps_firing_alerts_without_reannouncing_them() -> None:
    d = high("0s")
    d.run(0, 10, lambda t: [fm(t, x=20.0)])
    snap = roundtrip(d.engine)

    e2 = Driver(one_rule(X_GT_10.format(for_="0s")))
    assert e2.engine.restore(snap, now=1000.0, wall=WALL0 + 15, tolerance=60) == 1
    [alert] = e2.engine.active()
    assert alert.state is AlertState.FIRING and alert.starts_at == WALL0 and alert.notify
    assert e2.tick(1000, fm(1000, x=20.0), wall=WALL0 + 15) == []
    out = e2.tick(1001, fm(1001, x=0.0), wall=WALL0 + 16)
    assert [(t.to_state.value, t.notify, t.starts_at, t.ends_at) for t in out] == [
        ("resolved", True, WALL0, WALL0 + 16)
    ]


def _lost_snapshot() -> dict[str, Any]:
    """A snapshot with TelemetryLost firing on fm1 (telemetry stopped at 5, fired at 36)."""
    d = high("0s")
    d.run(0, 40, lambda t: [fm(min(t, 5), x=0.0)])
    assert [a.alertname for a in d.engine.active()] == ["TelemetryLost"]
    return roundtrip(d.engine)


def test_restored_telemetry_lost_holds_until_data_could_have_arrived() -> None:
    """After a restart nothing has been heard yet: that is not a clear (issue #11 item 2)."""
    snap = _lost_snapshot()
    e2 = high("0s")
    assert e2.engine.restore(snap, now=1000.0, wall=WALL0 + 45, tolerance=60) == 1
    never = view("fm1", last_seen=None)
    e2.engine.set_listening(None)  # not connected to the broker yet
    for t in range(1000, 1060):  # a whole minute without a connection: held, not judged
        assert e2.tick(t, never, wall=WALL0 + 45 + (t - 1000)) == []
    e2.engine.set_listening(1060.0)  # subscribed at 1060: 30 s of grace
    for t in range(1060, 1100):
        assert e2.tick(t, never, wall=WALL0 + 45 + (t - 1000)) == []
    [alert] = e2.engine.active()
    assert alert.alertname == "TelemetryLost" and alert.state is AlertState.FIRING
    assert alert.starts_at == WALL0 + 36 and alert.notify
    # heard from again: now it resolves, with the original startsAt
    out = e2.tick(1100, fm(1100, x=0.0), wall=WALL0 + 145)
    assert [(t.alertname, t.to_state.value, t.starts_at) for t in out] == [
        ("TelemetryLost", "resolved", WALL0 + 36)
    ]


def test_restored_telemetry_lost_without_listening_info_holds_for_stale_after() -> None:
    snap = _lost_snapshot()
    e2 = high("0s")
    e2.engine.restore(snap, now=1000.0, wall=WALL0 + 45, tolerance=60)
    log = e2.run(1000, 1100, lambda t: [view("fm1", last_seen=None)])
    assert log == []
    assert [a.alertname for a in e2.engine.active()] == ["TelemetryLost"]


def test_never_seen_target_is_lost_stale_after_the_subscription() -> None:
    d = high("0s")
    d.engine.set_listening(None)
    assert d.run(0, 100, lambda t: [view("fm1", last_seen=None)]) == []
    d.engine.set_listening(100.0)
    log = d.run(100, 140, lambda t: [view("fm1", last_seen=None)])
    assert states(log, "TelemetryLost") == [(130, "inactive", "firing")]


def test_restart_resumes_pending_timers() -> None:
    d = high("10s")
    d.run(0, 5, lambda t: [fm(t, x=20.0)])  # pending since 0, last tick at 4
    snap = roundtrip(d.engine)
    e2 = Driver(one_rule(X_GT_10.format(for_="10s")))
    assert e2.engine.restore(snap, now=500.0, wall=WALL0 + 6, tolerance=60) == 1
    [alert] = e2.engine.active()
    assert alert.state is AlertState.PENDING and alert.starts_at == WALL0
    # 4 s before the snapshot + 2 s of downtime = 6 s elapsed: fires 4 s after the restart
    for t in range(500, 506):
        e2.tick(t, fm(t, x=20.0), wall=WALL0 + 6 + (t - 500))
    assert states(e2.log) == [(504, "pending", "firing")]
    assert e2.log[0][1].starts_at == WALL0 + 10


def test_restore_beyond_tolerance_starts_afresh() -> None:
    d = high("0s")
    d.tick(0, fm(0, x=20.0))
    snap = roundtrip(d.engine)
    e2 = Driver(one_rule(X_GT_10.format(for_="0s")))
    assert e2.engine.restore(snap, now=0.0, wall=WALL0 + 3600, tolerance=300) == 0
    out = e2.tick(0, fm(0, x=20.0), wall=WALL0 + 3600)
    assert [(t.from_state.value, t.to_state.value) for t in out] == [("inactive", "firing")]


def test_restore_drops_alerts_of_rules_that_no_longer_exist() -> None:
    d = high("0s")
    d.tick(0, fm(0, x=20.0))
    snap = roundtrip(d.engine)
    other = Driver(one_rule("alert: Other\nexpr: x > 10\n"))
    assert other.engine.restore(snap, now=0.0, wall=WALL0 + 1, tolerance=60) == 0


def test_restore_keeps_suppressed_alerts_unnotified_and_flapping_state() -> None:
    d = flappy()
    d.run(0, 9, lambda t: [fm(t, x=20.0 if t % 2 == 0 else 0.0)])  # flapping, High firing unnotified at 8
    snap = roundtrip(d.engine)
    e2 = flappy()
    assert e2.engine.restore(snap, now=100.0, wall=WALL0 + 9, tolerance=60) == 2  # High and Flapping
    active = {a.alertname: a for a in e2.engine.active()}
    assert not active["High"].notify and active["Flapping"].notify
    log = e2.run(100, 170, lambda t: [fm(t, x=20.0)])
    assert [(t, tr.alertname, tr.to_state.value, tr.notify) for t, tr in log] == [
        (159, "Flapping", "resolved", True),  # last transition at 8 (wall) ≙ 99 after the restart
        (159, "High", "firing", True),
    ]


def test_restore_keeps_maintenance_memory_for_overruns() -> None:
    config = EngineConfig(maintenance=[window(0, 10, targets=["fm1"])])
    d = Driver(rules_from(CARRIER_AND_AUDIO), config)
    d.run(0, 9, lambda t: [fm(t, rf_level_dbuv=5.0)])
    snap = roundtrip(d.engine)
    e2 = Driver(rules_from(CARRIER_AND_AUDIO), config)
    e2.engine.restore(snap, now=9.0, wall=WALL0 + 9, tolerance=60)
    log = e2.run(9, 11, lambda t: [fm(t, rf_level_dbuv=5.0)])
    assert ("MaintenanceOverrun", "firing") in [(tr.alertname, tr.to_state.value) for _, tr in log]


def test_snapshot_before_any_tick_and_malformed_snapshots() -> None:
    engine = Engine(one_rule("alert: A\nexpr: x > 1\n"))
    snap = engine.snapshot()
    assert snap["instances"] == [] and Engine(engine.rules).restore(snap, 0.0, WALL0, 60) == 0
    with pytest.raises(SnapshotError, match="version"):
        engine.restore({"version": 99}, 0.0, WALL0, 60)
    with pytest.raises(SnapshotError, match="malformed"):
        engine.restore({"version": 1, "wall": WALL0, "instances": [{"kind": "rule"}]}, 0.0, WALL0, 60)
    with pytest.raises(SnapshotError, match="malformed"):
        engine.restore({"version": 1, "wall": "yesterday", "instances": []}, 0.0, WALL0, 60)


def test_snapshot_is_json_with_wall_clock_ages() -> None:
    d = high("10s")
    d.run(0, 4, lambda t: [fm(t, x=20.0)])
    snap = roundtrip(d.engine)
    [inst] = snap["instances"]
    assert inst["state"] == "pending" and inst["active_age"] == 3.0 and inst["active_wall"] == WALL0
    assert snap["wall"] == WALL0 + 3
    assert not math.isnan(inst["active_age"])


# --------------------------------------------------------------------------- `for` from the data's arrival


def timed(t: float, arrived: float | None, **m: float | str | None) -> TargetView:
    """fm1 at tick t whose measurements arrived at ``arrived`` (None: no arrival times)."""
    times = {} if arrived is None else dict.fromkeys(m, arrived)
    return dataclasses.replace(view("fm1", last_seen=t), measurements=m, data_times=times)


def test_for_counts_from_the_arrival_of_the_data_that_made_the_condition_true() -> None:
    d = high("5s")
    d.tick(0.0, timed(0.0, -0.2, x=0.0))
    assert d.engine.next_deadline() is None
    # The reading arrived 0.6 s before the tick that saw it: the 5 s run from its arrival.
    pending = d.tick(1.0, timed(1.0, 0.4, x=20.0))
    assert states([(1, t) for t in pending]) == [(1, "inactive", "pending")]
    assert pending[0].starts_at == pytest.approx(WALL0 + 0.4)
    assert d.engine.next_deadline() == pytest.approx(5.4)
    assert d.tick(5.0, timed(5.0, 4.4, x=20.0)) == []  # 4.6 s: not yet
    fired = d.tick(5.4, timed(5.4, 4.4, x=20.0))  # the evaluator's extra tick, on time
    assert states([(5.4, t) for t in fired]) == [(5.4, "pending", "firing")]
    assert fired[0].starts_at == pytest.approx(WALL0 + 5.4)
    assert d.engine.next_deadline() is None


def test_for_counts_from_the_tick_when_the_data_came_before_the_previous_tick() -> None:
    # The condition turned true by time alone (e.g. an age), or with no news since the
    # last tick: the data's arrival says nothing of when.
    d = high("5s")
    d.tick(0.0, timed(0.0, -0.5, x=0.0))
    d.tick(1.0, timed(1.0, -0.5, x=20.0))
    assert d.engine.next_deadline() == pytest.approx(6.0)


def test_data_received_before_a_tick_but_handled_after_it_counts_from_its_arrival() -> None:
    # Received at 0.98 (its receive time is its arrival) but still queued behind the tick
    # of 1.0 on the event loop: that tick saw the old reading, the next one sees this.
    d = high("5s")
    d.tick(0.0, timed(0.0, -0.2, x=0.0))
    d.tick(1.0, timed(1.0, -0.2, x=0.0))
    pending = d.tick(2.0, timed(2.0, 0.98, x=20.0))
    assert pending[0].starts_at == pytest.approx(WALL0 + 0.98)
    assert d.engine.next_deadline() == pytest.approx(5.98)  # not 7.0, a tick late


def test_for_counts_from_the_tick_without_arrival_times_or_on_the_first_tick() -> None:
    d = high("5s")
    d.tick(0.0, timed(0.0, None, x=0.0))
    d.tick(1.0, timed(1.0, None, x=20.0))
    assert d.engine.next_deadline() == pytest.approx(6.0)
    first = high("5s")  # a first tick has no previous one to bound the onset
    first.tick(3.0, timed(3.0, 2.5, x=20.0))
    assert first.engine.next_deadline() == pytest.approx(8.0)


def test_a_condition_reading_a_time_driven_input_counts_from_the_tick() -> None:
    d = Driver(one_rule("alert: Old\nexpr: x > 10 and age_seconds > 3\nfor: 5s\nseverity: warning"))
    v0 = dataclasses.replace(timed(0.0, -0.2, x=0.0), measurements={"x": 0.0, "age_seconds": 0.0})
    d.tick(0.0, v0)
    v1 = dataclasses.replace(timed(1.0, 0.4, x=20.0), measurements={"x": 20.0, "age_seconds": 4.0})
    d.tick(1.0, v1)  # age_seconds has no arrival time: from the tick
    assert d.engine.next_deadline() == pytest.approx(6.0)


def test_a_windowed_condition_counts_from_the_tick() -> None:
    d = Driver(one_rule("alert: Avg\nexpr: avg_over(x, 10s) > 10\nfor: 5s\nseverity: warning"))
    d.tick(0.0, timed(0.0, -0.2, x=0.0))
    d.tick(1.0, timed(1.0, 0.9, x=100.0))
    assert d.engine.next_deadline() == pytest.approx(6.0)


def test_a_for_shorter_than_the_gap_since_the_data_fires_at_once() -> None:
    d = high("0.5s")
    d.tick(0.0, timed(0.0, -0.2, x=0.0))
    fired = d.tick(1.0, timed(1.0, 0.3, x=20.0))
    assert states([(1, t) for t in fired]) == [(1, "inactive", "firing")]
