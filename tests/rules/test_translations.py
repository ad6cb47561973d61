"""Every built-in alert speaks Chinese as well as English (issue #15, item 4).

`[alerting] language = "zh"` sends `summary_zh`/`description_zh` to Alertmanager in place
of the English; the console shows `summary_zh` on the Chinese page. A translation must
exist for every built-in rule and for the engine's own alerts, be Chinese, and name the
same placeholders as the English text (a placeholder lost in translation would hide the
value the on-call engineer needs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from monitor.evaluation import localized
from rules.engine import Engine
from rules.schema import load_rules
from rules.templates import placeholders

CJK = re.compile(r"[\u4e00-\u9fff]")
RULES = load_rules().rules


def _check(name: str, annotations: Mapping[str, str]) -> None:
    for key in ("summary", "description"):
        en, zh = annotations.get(key, ""), annotations.get(f"{key}_zh", "")
        assert en, f"{name}: no {key}"
        assert CJK.search(zh), f"{name}: no Chinese {key}_zh"
        same = sorted(map(str, placeholders(zh))) == sorted(map(str, placeholders(en)))
        assert same, f"{name}: {key}_zh does not name the placeholders of {key}"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.uid)
def test_every_builtin_rule_has_chinese_annotations(rule: object) -> None:
    _check(rule.uid, rule.annotations)  # type: ignore[attr-defined]


def test_the_engines_own_alerts_have_chinese_annotations() -> None:
    engine = Engine(RULES)
    _check("TelemetryLost", engine._telemetry_spec.annotations)
    _check("MaintenanceOverrun", engine._overrun_spec().annotations)
    _check("Flapping", engine._flapping_spec(engine._telemetry_spec).annotations)


def test_chinese_is_what_alertmanager_receives() -> None:
    rule = next(r for r in RULES if r.alert == "CarrierLoss")
    zh = localized(rule.annotations, "zh")
    assert zh["summary"] == rule.annotations["summary_zh"] and "summary_zh" not in zh
    assert localized(rule.annotations, "en")["summary"] == rule.annotations["summary"]
