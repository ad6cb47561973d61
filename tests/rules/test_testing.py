"""Rule unit tests (``anbo test-rules``): series notation, the runner, and the packs' own tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from rules.schema import RuleFileError, load_rules
from rules.testing import STALE, UNKNOWN, RuleTestFileError, builtin_test_files, expand_series, run_tests


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 2 3", [1.0, 2.0, 3.0]),
        ("1x3", [1.0] * 4),
        ("1+2x3", [1.0, 3.0, 5.0, 7.0]),
        ("10-1x2", [10.0, 9.0, 8.0]),
        ("-20x1 -60", [-20.0, -20.0, -60.0]),
        ("1e-3x1", [0.001, 0.001]),
        ("_x3", [UNKNOWN] * 3),
        ("_ 1", [UNKNOWN, 1.0]),
        ("stale stalex2", [STALE] * 3),
        ('"C201"x2', ["C201"] * 3),
        ("'a b' \"c\"", ["a b", "c"]),
        ("", []),
    ],
)
def test_expand_series(text: str, expected: list[object]) -> None:
    assert expand_series(text) == expected


@pytest.mark.parametrize("text", ["abc", "1+2", "1x", "inf", "1e999", '"open', "_+1x2"])
def test_expand_series_errors(text: str) -> None:
    with pytest.raises(ValueError, match=r"cannot read|step needs a count|finite"):
        expand_series(text)


# --------------------------------------------------------------------------- the packs' own tests


@pytest.mark.parametrize("path", builtin_test_files(), ids=lambda p: p.name)
def test_builtin_pack_tests_pass(path: Path) -> None:
    report = run_tests(path)
    assert report.cases
    assert report.ok, report.format()


def test_every_builtin_alert_has_positive_and_negative_tests() -> None:
    positive: set[str] = set()
    negative: set[str] = set()
    for path in builtin_test_files():
        data = yaml.safe_load(path.read_text())
        for case in data["tests"]:
            for check in case.get("alert_rule_test", []):
                (positive if check.get("exp_alerts") else negative).add(check["alertname"])
    alerts = {r.alert for r in load_rules().rules}
    assert alerts - positive == set()
    assert alerts - negative == set()
    assert {p.stem for p in builtin_test_files()} == {"fm", "dtv", "tx", "eb", "general", "migration"}


# --------------------------------------------------------------------------- runner


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


OVERRIDE = """\
groups:
  - name: site
    rules:
      - alert: DeadAir
        selector_regex: {kind: "fm|dtv"}
        expr: silence == 1
        for: 20s
        severity: critical
        annotations: {summary: "Site dead air on {{ target }}"}
"""


def test_operator_rules_relative_to_the_test_file(tmp_path: Path) -> None:
    (tmp_path / "rules.d").mkdir()
    write(tmp_path / "rules.d", "deadair.yml", OVERRIDE)
    test = write(
        tmp_path,
        "t.yml",
        """\
        rule_files: [builtin, rules.d]
        tests:
          - name: the site waits 20 s
            targets: [{name: fm1, kind: fm}]
            series: [{target: fm1, measurement: silence, values: "1x30"}]
            alert_rule_test:
              - {eval_time: 19s, alertname: DeadAir, exp_alerts: []}
              - eval_time: 20s
                alertname: DeadAir
                exp_alerts: [{annotations: {summary: Site dead air on fm1}}]
        """,
    )
    report = run_tests(test)
    assert report.ok, report.format()
    assert report.format().endswith("1/1 tests passed")


def test_failures_are_reported_with_expected_and_actual(tmp_path: Path) -> None:
    test = write(
        tmp_path,
        "t.yml",
        """\
        rule_files: [builtin]
        tests:
          - name: wrong expectation
            targets: [{name: fm1, kind: fm, labels: {service: News}}]
            series: [{target: fm1, measurement: silence, values: "1x30"}]
            alert_rule_test:
              - {eval_time: 10s, alertname: DeadAir, exp_alerts: []}
              - {eval_time: 10s, alertname: DeadAir, exp_alerts: [{labels: {severity: warning}}]}
              - {eval_time: 10s, alertname: DeadAir, exp_alerts: [{labels: {severity: critical}}]}
              - eval_time: 10s
                alertname: DeadAir
                exp_alerts: [{labels: {severity: critical}, notify: false}]
        """,
    )
    report = run_tests(test)
    assert not report.ok
    [case] = report.cases
    assert len(case.failures) == 3
    text = report.format()
    assert f"{test}:3: wrong expectation: FAILED" in text
    assert "alertname DeadAir at 10s:" in text and "expected 0 firing:" in text and "got 1 firing:" in text
    assert "'service': 'News'" in text
    assert text.endswith("0/1 tests passed")


def test_unknown_keeps_telemetry_stale_does_not(tmp_path: Path) -> None:
    test = write(
        tmp_path,
        "t.yml",
        """\
        rule_files: []
        stale_after: 5s
        tests:
          - targets: [{name: a, kind: fm}, {name: b, kind: fm}, {name: c, kind: fm}]
            series:
              - {target: a, measurement: x, values: "_x20"}
              - {target: b, measurement: x, values: "1 stalex20"}
              - {target: c, measurement: x, values: "1x2"}
            alert_rule_test:
              - eval_time: 10s
                alertname: TelemetryLost
                exp_alerts: [{labels: {target: b}}, {labels: {target: c}}]
        """,
    )
    report = run_tests(test)
    assert report.ok, report.format()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("tests: []\n", "t.yml:1: rule_files: required field missing"),
        (
            """\
            rule_files: [builtin]
            tests:
              - targets: [{name: a, kind: fm}]
                series:
                  - {target: a, measurement: x, values: "1 2 three"}
            """,
            "t.yml:5: tests[0].series[0].values: cannot read 'three'",
        ),
        (
            """\
            rule_files: [builtin]
            tests:
              - targets: [{name: a, kind: fm}]
                series:
                  - {target: b, measurement: x, values: "1"}
            """,
            "t.yml:5: tests[0].series[0].target: no target named 'b'",
        ),
        (
            """\
            rule_files: [builtin]
            evaluation_interval: 10s
            tests:
              - targets: [{name: a, kind: fm}]
                alert_rule_test:
                  - {eval_time: 15s, alertname: X}
            """,
            "t.yml:6: tests[0].alert_rule_test[0].eval_time: "
            "must be a multiple of the evaluation interval (10s)",
        ),
        (
            """\
            rule_files: [builtin]
            evaluation_interval: 0s
            tests: [{targets: []}]
            """,
            "t.yml:2: evaluation_interval: must be longer than 0s",
        ),
        (
            """\
            rule_files: [builtin]
            tests:
              - targets: [{name: a, kind: fm}, {name: a, kind: dtv}]
            """,
            "t.yml:3: tests[0].targets[1].name: duplicate target 'a'",
        ),
        (
            """\
            rule_files: [builtin]
            tests:
              - targets: [{name: a, kind: fm}]
                alert_rule_test:
                  - {eval_time: 1s, alertname: X, exp_alerts: [{reason: bored}]}
            """,
            "t.yml:5: tests[0].alert_rule_test[0].exp_alerts[0].reason: Input should be",
        ),
        ("rule_files: [\n", "t.yml:2: invalid YAML"),
    ],
)
def test_malformed_test_files(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, "t.yml", body)
    with pytest.raises(RuleTestFileError) as info:
        run_tests(path)
    messages = [str(e).replace(str(tmp_path) + "/", "") for e in info.value.errors]
    assert any(m.startswith(expected) for m in messages), messages


def test_rule_file_errors_propagate(tmp_path: Path) -> None:
    write(tmp_path, "bad.yml", "groups: [{name: g, rules: [{alert: A, expr: 'x =='}]}]\n")
    test = write(tmp_path, "t.yml", "rule_files: [bad.yml]\ntests: []\n")
    with pytest.raises(RuleFileError, match=r"bad\.yml:1"):
        run_tests(test)


def test_missing_test_file(tmp_path: Path) -> None:
    with pytest.raises(RuleTestFileError, match="cannot read"):
        run_tests(tmp_path / "nope.yml")
