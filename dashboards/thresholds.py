"""Panel thresholds read from the rule packs: the same numbers the alerts fire on.

A rule such as ``mer_db < param("mer_warning_db", 26)`` (warning) and
``mer_db < param("mer_critical_db", 20)`` (critical) becomes the Grafana steps
red below 20, orange from 20, green from 26. Only comparisons of a measurement (or a
window over it) with a constant count: a number, a ``param()`` with a default, or
arithmetic of those; a ``param()`` without a default (``rf_reference_dbuv``) is per
target and gives no fixed step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from rules import Rule, load_rules
from rules.expr import Arith, Compare, Logic, Measurement, Negate, Node, Number, Param, Window

#: Colours per severity (Grafana's named palette); no alert: green.
COLOURS = {"critical": "red", "warning": "orange", "info": "blue", None: "green"}
_RANK = {None: 0, "info": 1, "warning": 2, "critical": 3}


@dataclass(frozen=True, slots=True)
class Limit:
    """One comparison of a rule: ``measurement op value`` fires ``alert`` at ``severity``."""

    alert: str
    severity: str
    op: str
    value: float

    def fires(self, x: float) -> bool:
        return {
            "<": x < self.value,
            "<=": x <= self.value,
            ">": x > self.value,
            ">=": x >= self.value,
        }[self.op]


@dataclass(frozen=True, slots=True)
class Step:
    """A Grafana threshold step: ``colour`` from ``value`` up (None: the base)."""

    value: float | None
    colour: str


@cache
def builtin_rules() -> tuple[Rule, ...]:
    """The built-in packs (rules/packs/*.yml) through the rules package's own loader."""
    return load_rules().rules


def _constant(node: Node) -> float | None:
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Param):
        return float(node.default) if isinstance(node.default, int | float) else None
    if isinstance(node, Negate):
        v = _constant(node.operand)
        return None if v is None else -v
    if isinstance(node, Arith):
        a, b = _constant(node.left), _constant(node.right)
        if a is None or b is None:
            return None
        ops = {"+": a + b, "-": a - b, "*": a * b}
        if node.op in ops:
            return ops[node.op]
        return a / b if node.op == "/" and b != 0 else None
    return None


def _reads(node: Node, name: str) -> bool:
    return (isinstance(node, Measurement) and node.name == name) or (
        isinstance(node, Window) and node.measurement == name
    )


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _compares(node: Node) -> list[Compare]:
    if isinstance(node, Compare):
        return [node]
    if isinstance(node, Logic):
        return _compares(node.left) + _compares(node.right)
    return []  # under not/present/abs a comparison is no threshold of its own


def limits(measurement: str, *, kind: str | None = None, alerts: tuple[str, ...] = ()) -> list[Limit]:
    """Every constant comparison of ``measurement`` in the built-in rules (of ``kind``,
    of the named ``alerts`` only when given)."""
    out: list[Limit] = []
    for rule in builtin_rules():
        if kind is not None and rule.selector.get("kind", kind) != kind:
            continue
        if alerts and rule.alert not in alerts:
            continue
        for cmp in _compares(rule.expr):
            if cmp.op not in _FLIP:
                continue
            if _reads(cmp.left, measurement):
                op, value = cmp.op, _constant(cmp.right)
            elif _reads(cmp.right, measurement):
                op, value = _FLIP[cmp.op], _constant(cmp.left)
            else:
                continue
            if value is not None and math.isfinite(value):
                out.append(Limit(rule.alert, rule.severity.value, op, value))
    return out


def steps(found: list[Limit]) -> list[Step]:
    """Grafana steps: each region between the limits coloured by the worst alert that fires there."""
    points = sorted({lim.value for lim in found})
    if not points:
        return [Step(None, COLOURS[None])]

    def colour(x: float) -> str:
        worst: str | None = None
        for lim in found:
            if lim.fires(x) and _RANK[lim.severity] > _RANK[worst]:
                worst = lim.severity
        return COLOURS[worst]

    def below(v: float) -> float:
        return v - max(abs(v), 1e-12)

    out = [Step(None, colour(below(points[0])))]
    for i, v in enumerate(points):
        nxt = points[i + 1] if i + 1 < len(points) else v + max(abs(v), 1.0)
        # A step covers [v, next): judged inside it (at v itself a limit's own >= or <= may
        # differ; Grafana gives v the step's colour).
        c = colour((v + nxt) / 2)
        if c != out[-1].colour:
            out.append(Step(v, c))
    return out


def alert_names() -> list[str]:
    """Every built-in alert name, sorted (the runbook links' targets)."""
    return sorted({r.alert for r in builtin_rules()})
