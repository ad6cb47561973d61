"""When it is wrong: rule schema, built-in packs and the evaluation engine.

The names below are loaded on first use (PEP 562): importing a light submodule such as
``rules.durations`` (a command-line option's type) must not import the engine, the
schema and YAML, which ``anbo analyze`` would otherwise pay at every start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rules.engine import Engine, EngineConfig, InhibitRule, SnapshotError, default_inhibit_rules
    from rules.expr import ExprError, parse, parse_condition
    from rules.maintenance import MaintenanceWindow
    from rules.model import (
        Alert,
        AlertState,
        OutageClass,
        Severity,
        SuppressReason,
        TargetView,
        Transition,
    )
    from rules.schema import Rule, RuleFileError, RuleSet, builtin_pack_files, load_rule_paths, load_rules
    from rules.testing import TestReport, builtin_test_files, run_tests
    from rules.yamlsource import SourceError

#: exported name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("Engine", "EngineConfig", "InhibitRule", "SnapshotError", "default_inhibit_rules"), "rules.engine"
    ),
    **dict.fromkeys(("ExprError", "parse", "parse_condition"), "rules.expr"),
    "MaintenanceWindow": "rules.maintenance",
    **dict.fromkeys(
        ("Alert", "AlertState", "OutageClass", "Severity", "SuppressReason", "TargetView", "Transition"),
        "rules.model",
    ),
    **dict.fromkeys(
        ("Rule", "RuleFileError", "RuleSet", "builtin_pack_files", "load_rule_paths", "load_rules"),
        "rules.schema",
    ),
    **dict.fromkeys(("TestReport", "builtin_test_files", "run_tests"), "rules.testing"),
    "SourceError": "rules.yamlsource",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rules' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Alert",
    "AlertState",
    "Engine",
    "EngineConfig",
    "ExprError",
    "InhibitRule",
    "MaintenanceWindow",
    "OutageClass",
    "Rule",
    "RuleFileError",
    "RuleSet",
    "Severity",
    "SnapshotError",
    "SourceError",
    "SuppressReason",
    "TargetView",
    "TestReport",
    "Transition",
    "builtin_pack_files",
    "builtin_test_files",
    "default_inhibit_rules",
    "load_rule_paths",
    "load_rules",
    "parse",
    "parse_condition",
    "run_tests",
]
