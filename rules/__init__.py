"""When it is wrong: rule schema, built-in packs and the evaluation engine."""

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
