"""Rule files: validation errors name file, line and field; layering of packs and operator rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rules.model import OutageClass, Severity
from rules.schema import (
    RuleFileError,
    builtin_pack_files,
    load_rule_file,
    load_rule_paths,
    load_rules,
    merge_layers,
    parse_rule_text,
)

GOOD = """\
groups:
  - name: fm-audio
    rules:
      - alert: DeadAir
        selector: {kind: fm}
        expr: audio_rms_dbfs < -40 and silence == 1
        for: 10s
        clear: audio_rms_dbfs > -30
        clear_for: 5s
        keep_firing_for: 1m
        severity: critical
        outage_class: outage
        labels: {team: fm}
        annotations:
          summary: "Dead air on {{ service }} ({{ target }})"
        runbook_url: https://example.org/runbooks/deadair
"""


def errors_of(text: str, source: str = "ops.yml") -> list[str]:
    with pytest.raises(RuleFileError) as info:
        parse_rule_text(textwrap.dedent(text), source)
    return [str(e) for e in info.value.errors]


def test_a_good_file() -> None:
    [rule] = parse_rule_text(GOOD, "ops.yml")
    assert rule.alert == "DeadAir"
    assert rule.for_seconds == 10.0
    assert rule.clear_for_seconds == 5.0
    assert rule.keep_firing_for_seconds == 60.0
    assert rule.severity is Severity.CRITICAL
    assert rule.outage_class is OutageClass.OUTAGE
    assert rule.labels == {"team": "fm"}
    assert rule.line == 4
    assert rule.where == "ops.yml:4"
    assert rule.uid == 'DeadAir{kind="fm"}/critical'
    assert rule.key == ("DeadAir", '{kind="fm"}')
    assert rule.matches({"kind": "fm"}) and not rule.matches({"kind": "dtv"}) and not rule.matches({})


def test_defaults() -> None:
    [rule] = parse_rule_text("groups: [{name: g, rules: [{alert: A, expr: x == 1}]}]", "f.yml")
    assert rule.for_seconds == 0.0 and rule.clear is None and rule.severity is Severity.WARNING
    assert rule.outage_class is OutageClass.NONE and rule.selector == {} and rule.matches({})


def test_selector_regex_is_anchored() -> None:
    [rule] = parse_rule_text(
        'groups: [{name: g, rules: [{alert: A, expr: x == 1, selector_regex: {kind: "fm|dtv"}, '
        "selector: {county: Qingshan}}]}]",
        "f.yml",
    )
    assert rule.matches({"kind": "fm", "county": "Qingshan"})
    assert rule.matches({"kind": "dtv", "county": "Qingshan"})
    assert not rule.matches({"kind": "fmx", "county": "Qingshan"})
    assert not rule.matches({"kind": "fm"})
    assert rule.selector_text == '{county="Qingshan", kind=~"fm|dtv"}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: x == 1
                    for: 10 parsecs
            """,
            "ops.yml:6: groups[0].rules[0] (A).for: expected a duration",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: x == 1
                    severity: urgent
            """,
            "ops.yml:6: groups[0].rules[0] (A).severity: Input should be 'critical', 'warning' or 'info'",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: x == 1
                    colour: red
            """,
            "ops.yml:6: groups[0].rules[0] (A).colour: unknown field",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - expr: x == 1
            """,
            "ops.yml:4: groups[0].rules[0].alert: required field missing",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: x == 1
                  - alert: B
                    expr: audio_rms_dbfs < -40 and and silence == 1
            """,
            "ops.yml:7: groups[0].rules[1] (B).expr: column 26 of the expression: "
            "expected a value before 'and'",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: |
                      x == 1 or
                      y = 2
            """,
            "ops.yml:7: groups[0].rules[0] (A).expr: column 13 of the expression: unexpected character '='",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: 'import("os")'
            """,
            "ops.yml:5: groups[0].rules[0] (A).expr: column 1 of the expression: unknown function 'import'",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
            """,
            "ops.yml:4: groups[0].rules[0] (A).expr: required unless enabled: false",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: TelemetryLost
                    expr: x == 1
            """,
            "ops.yml:4: groups[0].rules[0] (TelemetryLost).alert: TelemetryLost is raised by the engine",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: x == 1
                    labels: {severity: low}
            """,
            "ops.yml:6: groups[0].rules[0] (A).labels: label(s) severity are set by anbo",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: x == 1
                    selector_regex: {kind: "fm("}
            """,
            "ops.yml:6: groups[0].rules[0] (A).selector_regex: kind: invalid regular expression",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: x == 1
                    annotations:
                      summary: "Dead air on {{ service"
            """,
            "ops.yml:7: groups[0].rules[0] (A).annotations.summary: malformed placeholder",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: x == 1
                    annotations:
                      summary: "{{ foo.bar }}"
            """,
            "ops.yml:7: groups[0].rules[0] (A).annotations.summary: unknown qualifier 'foo'",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: x == 1
                    expr: y == 1
            """,
            "ops.yml:6: groups[0].rules[0].expr: duplicate key (first at line 5)",
        ),
        (
            """\
            groups:
              - name: g
                rules:
                  - alert: A
                    expr: [x == 1
            """,
            "ops.yml:6: invalid YAML",
        ),
        (
            """\
            groups:
              - name: g
                rules: []
              - name: g
                rules: []
            """,
            "ops.yml:4: groups[1].name: duplicate group name 'g' (first at line 2)",
        ),
        ("", "ops.yml:1: empty rule file"),
        ("groups: 3\n", "ops.yml:1: groups: Input should be a valid list"),
    ],
)
def test_errors_name_file_line_and_field(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


def test_every_error_of_a_file_is_reported() -> None:
    errors = errors_of(
        """\
        groups:
          - name: g
            rules:
              - alert: A
                expr: x ==
                for: soon
              - alert: B
                expr: y == 1
                severity: loud
        """
    )
    assert [e.split(": ")[0] for e in errors] == ["ops.yml:5", "ops.yml:6", "ops.yml:9"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="cannot read"):
        load_rule_file(tmp_path / "missing.yml")


# --------------------------------------------------------------------------- layers


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_builtin_packs_load() -> None:
    names = {p.name for p in builtin_pack_files()}
    assert names == {"fm.yml", "dtv.yml", "tx.yml", "eb.yml", "general.yml", "migration.yml"}
    rules = load_rules().rules
    alerts = {r.alert for r in rules}
    assert {
        "DeadAir", "Hiss", "StuckTone", "CarrierLoss", "LowRF", "Overmodulation", "PilotLoss",
        "RdsPiMismatch", "MerLow", "BerHigh", "CnLow", "DtvLockLoss", "ForwardPowerDrop", "VswrHigh",
        "PaOverTemperature", "TransmitterFault", "EbRegionOnlineLow", "EbEndpointFaults",
    } <= alerts  # fmt: skip
    for rule in rules:
        # No link of their own: the engine adds [alerting] runbook_base_url + alert name.
        assert rule.runbook_url is None
        assert "summary" in rule.annotations
    assert {r.severity for r in rules if r.alert == "VswrHigh"} == {Severity.WARNING, Severity.CRITICAL}


def test_operator_rule_replaces_builtin_with_same_alert_and_selector(tmp_path: Path) -> None:
    write(
        tmp_path / "deadair.yml",
        """\
        groups:
          - name: mine
            rules:
              - alert: DeadAir
                selector_regex: {kind: "fm|dtv"}
                expr: silence == 1
                for: 20s
                severity: warning
                runbook_url: https://wiki.example/deadair
        """,
    )
    ruleset = load_rules([tmp_path])
    deadair = [r for r in ruleset.rules if r.alert == "DeadAir"]
    assert len(deadair) == 1
    assert deadair[0].for_seconds == 20.0 and deadair[0].severity is Severity.WARNING
    assert any("replaces the built-in rule" in n for n in ruleset.notes)


def test_operator_rule_with_another_selector_is_added(tmp_path: Path) -> None:
    write(
        tmp_path / "county.yml",
        """\
        groups:
          - name: mine
            rules:
              - alert: DeadAir
                selector: {kind: fm, county: Qingshan}
                expr: silence == 1
                for: 60s
        """,
    )
    deadair = [r for r in load_rules([tmp_path]).rules if r.alert == "DeadAir"]
    assert len(deadair) == 2


def test_enabled_false_disables_all_variants(tmp_path: Path) -> None:
    write(
        tmp_path / "off.yml",
        """\
        groups:
          - name: mine
            rules:
              - alert: VswrHigh
                selector: {kind: tx}
                enabled: false
              - alert: Nothing
                enabled: false
        """,
    )
    ruleset = load_rules([tmp_path / "off.yml"])
    assert not [r for r in ruleset.rules if r.alert == "VswrHigh"]
    assert any("disables the built-in rule" in n for n in ruleset.notes)
    assert any("Nothing{}" in n and "no built-in rule" in n for n in ruleset.notes)


def test_duplicates_within_a_layer_are_errors(tmp_path: Path) -> None:
    body = """\
        groups:
          - name: {name}
            rules:
              - alert: A
                expr: x == 1
        """
    write(tmp_path / "a.yml", body.replace("{name}", "one"))
    write(tmp_path / "b.yml", body.replace("{name}", "two"))
    with pytest.raises(RuleFileError) as info:
        load_rule_paths([tmp_path])
    [err] = info.value.errors
    assert str(err).startswith(f"{tmp_path / 'b.yml'}:4: rule A: duplicate")
    assert f"{tmp_path / 'a.yml'}:4" in str(err)


def test_all_files_are_checked_before_failing(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "groups: [{name: g, rules: [{alert: A, expr: 'x =='}]}]\n")
    write(tmp_path / "b.yml", "groups: [{name: g, rules: [{alert: B, for: x, expr: y == 1}]}]\n")
    write(tmp_path / "notes.txt", "not a rule file")
    with pytest.raises(RuleFileError) as info:
        load_rules([tmp_path])
    assert [Path(e.file).name for e in info.value.errors] == ["a.yml", "b.yml"]


def test_merge_keeps_builtin_order_and_appends_operator_rules() -> None:
    base = parse_rule_text(
        "groups: [{name: g, rules: [{alert: A, expr: x == 1}, {alert: B, expr: x == 2}]}]", "b"
    )
    mine = parse_rule_text(
        "groups: [{name: g, rules: [{alert: A, expr: x == 3}, {alert: C, expr: x == 4}]}]", "o"
    )
    merged = merge_layers(base, mine)
    assert [(r.alert, r.source) for r in merged.rules] == [("B", "b"), ("A", "o"), ("C", "o")]
