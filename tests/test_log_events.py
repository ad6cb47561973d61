"""One convention for log event names, checked over every package.

An event name is a fixed, lowercase phrase (``"alert resolved"``, ``"outage ledger
cannot be written: ..."``): never built from values, which go in key-value fields, so a
duty operator can grep and count an event in journald (``jq 'select(.event == ...)'``)
and a test can wait for it. It starts lowercase (or with a proper name such as MQTT or
PostgreSQL) and has no trailing full stop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("anbo", "simulator", "gateways", "bureau", "dashboards", "monitor", "probes", "rules")
LEVELS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "msg"})
#: Names that keep their capital when they start an event.
PROPER = ("MQTT", "PostgreSQL", "Alertmanager", "SQLite", "SNMP", "Modbus", "RDS", "DTV", "FM", "EB", "TLS")


def logger_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls ``<something log-like>.<level>(...)``: ``log.info``, ``self.log.warning``, ``logger.error``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LEVELS:
            target = node.func.value
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name in {"log", "logger", "_log", "_logger"}:
                out.append(node)
    return out


def problems_of(call: ast.Call) -> list[str]:
    if not call.args:
        return ["no event name"]
    event = call.args[0]
    if isinstance(event, ast.JoinedStr | ast.BinOp) or (
        isinstance(event, ast.Call) and isinstance(event.func, ast.Attribute) and event.func.attr == "format"
    ):
        return ["event name built from values (put them in fields)"]
    literals = [event] if not isinstance(event, ast.IfExp) else [event.body, event.orelse]
    out = []
    for lit in literals:
        if isinstance(lit, ast.Constant) and isinstance(lit.value, str):
            text = lit.value
            if not text or text != text.strip():
                out.append(f"{text!r}: empty or padded")
            elif text.endswith("."):
                out.append(f"{text!r}: trailing full stop")
            elif text[0].isupper() and not text.startswith(PROPER):
                out.append(f"{text!r}: starts with a capital")
    return out


def test_the_checker_sees_bad_names() -> None:
    tree = ast.parse(
        'log.info(f"{x} starting")\nself.log.warning("Broker lost.")\nlog.error("alert resolved", n=1)\n'
        'log.info("MQTT connected")\nlogger.info("a" if x else "B")\n'
    )
    found = [problems_of(c) for c in logger_calls(tree)]
    assert [bool(p) for p in found] == [True, True, False, False, True]


@pytest.mark.parametrize("package", [p for p in PACKAGES if (ROOT / p).is_dir()])
def test_event_names_follow_the_convention(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{call.lineno}: {problem}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for call in logger_calls(ast.parse(path.read_text(encoding="utf-8")))
        for problem in problems_of(call)
    ]
    assert bad == []
