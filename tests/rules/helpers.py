"""Small builders for the rules tests: rules from YAML text, targets, and a tick driver."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

from rules.engine import Engine, EngineConfig
from rules.model import MeasurementValue, TargetView, Transition
from rules.schema import Rule, parse_rule_text

WALL0 = 1_700_000_000.0


def rules_from(text: str, source: str = "test.yml") -> list[Rule]:
    """Rules from a rule file's text (dedented)."""
    return parse_rule_text(textwrap.dedent(text), source)


def one_rule(body: str) -> list[Rule]:
    """A rule file with a single rule; ``body`` is the rule's YAML mapping (dedented)."""
    lines = textwrap.dedent(body).strip().splitlines()
    rule = "\n".join(["      - " + lines[0], *("        " + line for line in lines[1:])])
    return rules_from("groups:\n  - name: g\n    rules:\n" + rule + "\n")


def view(
    name: str = "fm1",
    kind: str = "fm",
    *,
    labels: Mapping[str, str] | None = None,
    params: Mapping[str, float | str] | None = None,
    last_seen: float | None = 0.0,
    **measurements: MeasurementValue,
) -> TargetView:
    base = {"station": "s1", "target": name, "kind": kind, "service": f"svc-{name}"}
    base.update(labels or {})
    return TargetView(name, kind, base, dict(params or {}), measurements, last_seen)


class Driver:
    """Runs an engine tick by tick with ``now`` = seconds and ``wall`` = WALL0 + now."""

    def __init__(self, rules: Sequence[Rule], config: EngineConfig | None = None) -> None:
        self.engine = Engine(rules, config)
        self.log: list[tuple[float, Transition]] = []

    def tick(self, now: float, *views: TargetView, wall: float | None = None) -> list[Transition]:
        out = self.engine.evaluate(list(views), now, WALL0 + now if wall is None else wall)
        self.log += [(now, t) for t in out]
        return out

    def run(self, start: int, stop: int, make: object) -> list[tuple[float, Transition]]:
        """Tick at start … stop-1 with views from ``make(t)`` (a callable returning a list)."""
        assert callable(make)
        out: list[tuple[float, Transition]] = []
        for t in range(start, stop):
            views = make(t)
            out += [(float(t), tr) for tr in self.tick(float(t), *views)]
        return out


def states(
    log: Sequence[tuple[float, Transition]], alertname: str | None = None
) -> list[tuple[float, str, str]]:
    """``(time, from, to)`` of the transitions in ``log`` (of ``alertname`` if given)."""
    return [
        (t, tr.from_state.value, tr.to_state.value)
        for t, tr in log
        if alertname is None or tr.alertname == alertname
    ]
