"""The shipped Prometheus rules and Alertmanager example, checked by the real promtool and amtool.

A missing tool fails these tests (scripts/setup --dev installs them); they never skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import find_binary

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS = REPO / "config" / "prometheus"
RULES = PROMETHEUS / "anbo-alerts.yml"
RULE_TESTS = PROMETHEUS / "anbo-alerts.test.yml"
ALERTMANAGER_EXAMPLE = REPO / "config" / "alertmanager" / "alertmanager.example.yml"


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd=cwd)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_promtool_check_rules_is_clean() -> None:
    out = run(find_binary("promtool"), "check", "rules", str(RULES))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert f"SUCCESS: {len(rules())} rules found" in text
    assert "warning" not in text.lower(), text


def test_promtool_rule_unit_tests_pass() -> None:
    out = run(find_binary("promtool"), "test", "rules", RULE_TESTS.name, cwd=PROMETHEUS)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_every_rule_has_positive_and_negative_tests() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    positive: set[str] = set()
    negative: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (positive if check.get("exp_alerts") else negative).add(check["alertname"])
    names = {r["alert"] for r in rules()}
    assert names - positive == set(), "rules without a positive test"
    assert names - negative == set(), "rules without a negative test (exp_alerts: [])"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: str(r["alert"]))
def test_rule_conventions(rule: dict[str, Any]) -> None:
    """kubernetes-mixin style: a severity, a summary, a description and a runbook link per rule."""
    name = rule["alert"]
    assert name.startswith("Anbo")
    assert 'job="anbo"' in rule["expr"], "every rule selects anbo's scrape job"
    annotations = rule["annotations"]
    assert {"summary", "description"} <= annotations.keys()
    # The runbook is served by the console of the anbo the alert is about; absent() has no
    # instance, so AnboMetricsAbsent names its runbook in the description instead.
    console = "http://{{ $labels.instance }}/runbooks/"
    if name == "AnboMetricsAbsent":
        assert (
            "runbook_url" not in annotations and "/runbooks/AnboMetricsAbsent" in annotations["description"]
        )
    elif name == "AnboAlertFiring":  # the mirror keeps the severity of the alert it mirrors
        assert "severity" not in rule.get("labels", {})
        assert rule["labels"]["anbo_alertname"] == "{{ $labels.alertname }}"
        assert annotations["runbook_url"] == console + "{{ $labels.alertname }}"
    else:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert annotations["runbook_url"] == console + name
    if "runbook_url" in annotations:  # every alert that links keeps its instance in the labels
        assert "absent(" not in rule["expr"]


def test_alertmanager_example_config_is_valid() -> None:
    out = run(find_binary("amtool"), "check-config", str(ALERTMANAGER_EXAMPLE))
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


PAGE_AND_DESK = "oncall-pager,duty-desk"


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=CarrierLoss", "station=s1", "target=fm-97.5"], PAGE_AND_DESK),
        (["severity=critical", "alertname=AnboDown", "job=anbo", "instance=s1:9464"], PAGE_AND_DESK),
        (["severity=warning", "alertname=MerLow", "station=s1", "target=dtv-ds21"], "duty-desk"),
        (["severity=info", "alertname=Flapping"], "duty-desk"),
        (["alertname=AnboAlertFiring", "anbo_alertname=CarrierLoss", "severity=critical"], PAGE_AND_DESK),
    ],
)
def test_alertmanager_example_routes(labels: list[str], receivers: str) -> None:
    out = run(
        find_binary("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_EXAMPLE}", *labels
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == receivers
