"""Rule unit tests, in the spirit of ``promtool test rules``.

A test file::

    rule_files: [builtin, ../rules.d/]     # files or directories, relative to this file;
                                           # "builtin" = the built-in packs (loaded first)
    evaluation_interval: 1s
    stale_after: 30s                       # optional engine settings
    tests:
      - name: dead air fires after the silence flag holds 5 s
        start_time: "2024-05-14T01:00:00+08:00"   # optional wall time of t = 0 (default the epoch)
        targets:
          - name: fm-news
            kind: fm
            labels: {service: News, station: s1}
            params: {rds_pi: C201}
        series:
          - target: fm-news
            measurement: silence
            values: "0x9 1x30"
        maintenance: []                    # optional maintenance windows
        alert_rule_test:
          - eval_time: 20s
            alertname: DeadAir
            exp_alerts:
              - labels: {target: fm-news, severity: critical}
                annotations: {summary: "Dead air on News (fm-news)"}
          - eval_time: 5s
            alertname: DeadAir
            exp_alerts: []                 # negative case: nothing fires

``values`` use promtool's expanding notation, one sample per evaluation interval from
t = 0: ``a`` one value; ``axN`` the value N+1 times; ``a+bxN`` / ``a-bxN`` N+1 values
stepping by b; ``"C201"`` / ``"C201"xN`` a string (N+1 times); ``_`` / ``_xN`` telemetry
arrived but this measurement is unknown (N times); ``stale`` / ``stalexN`` no
telemetry at all (N times). After its last value a series has no telemetry.
A target's ``last_seen`` is the last tick at which any of its series had a sample
(``_`` included); a target without series has never been seen.

At each ``eval_time`` (a multiple of the interval) the **firing** alerts named
``alertname`` must match ``exp_alerts`` one to one: every expected label and
annotation must be equal (other labels and annotations are not compared), and when
given, ``notify`` (true/false) and ``reason`` (inhibited, maintenance, flapping,
none) too. Pending alerts are not listed, as in promtool.

:func:`run_tests` reads only the files named; time is simulated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rules.engine import Engine, EngineConfig, InhibitRule
from rules.maintenance import MaintenanceWindow
from rules.model import Alert, AlertState, MeasurementValue, TargetView
from rules.schema import (
    BUILTIN,
    Duration,
    RuleFileError,
    builtin_pack_files,
    load_rule_paths,
    merge_layers,
    pydantic_errors,
)
from rules.yamlsource import SourceError, YamlDocument, format_path, load_yaml

__all__ = [
    "STALE",
    "UNKNOWN",
    "CaseResult",
    "RuleTestFileError",
    "TestReport",
    "builtin_test_files",
    "expand_series",
    "run_tests",
]

#: Directory of the built-in packs' rule tests.
PACK_TESTS_DIR: Final = Path(__file__).resolve().parent / "packs" / "tests"


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: A sample whose telemetry arrived but this measurement is unknown (``_``).
UNKNOWN: Final = _Marker("_")
#: No telemetry at this tick (``stale``).
STALE: Final = _Marker("stale")

Sample = float | str | _Marker


class RuleTestFileError(RuleFileError):
    """A malformed rule-test file (errors name file, line and field)."""


# --------------------------------------------------------------------------- file schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TestTarget(_Strict):
    __test__ = False  # not a pytest class

    name: str
    kind: str
    labels: dict[str, str] = Field(default_factory=dict)
    params: dict[str, float | str] = Field(default_factory=dict)


class TestSeries(_Strict):
    __test__ = False

    target: str
    measurement: str
    values: str

    @field_validator("values", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("values")
    @classmethod
    def _parse(cls, value: str) -> str:
        expand_series(value)
        return value


class ExpectedAlert(_Strict):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    notify: bool | None = None
    reason: Literal["inhibited", "maintenance", "flapping", "none"] | None = None


class AlertRuleTest(_Strict):
    eval_time: Duration
    alertname: str
    exp_alerts: list[ExpectedAlert] = Field(default_factory=list)


class TestCase(_Strict):
    __test__ = False

    name: str = ""
    interval: Duration | None = None
    start_time: datetime | None = None
    targets: list[TestTarget]
    series: list[TestSeries] = Field(default_factory=list)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    alert_rule_test: list[AlertRuleTest] = Field(default_factory=list)


class RuleTestFile(_Strict):
    rule_files: list[str]
    evaluation_interval: Duration = 1.0
    stale_after: Duration | None = None
    flap_threshold: int | None = None
    flap_window: Duration | None = None
    inhibit_rules: list[InhibitRule] | None = None
    tests: list[TestCase]


# --------------------------------------------------------------------------- series notation

_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_STEP = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_NUMERIC_TOKEN: Final = re.compile(rf"({_NUM})(?:([-+])({_STEP}))?(?:x([0-9]+))?")
_MARKER_TOKEN: Final = re.compile(r"(_|stale)(?:x([0-9]+))?")
_STRING_TOKEN: Final = re.compile(r"""("[^"]*"|'[^']*')(?:x([0-9]+))?""")
_TOKEN_SPLIT: Final = re.compile(r"""(?:"[^"]*"|'[^']*'|\S)+""")
_MAX_SAMPLES: Final = 1_000_000


def expand_series(text: str) -> list[Sample]:
    """Expand promtool-style notation (see the module docstring); ``ValueError`` if malformed."""
    out: list[Sample] = []
    for token in _TOKEN_SPLIT.findall(text):
        if m := _MARKER_TOKEN.fullmatch(token):
            marker = UNKNOWN if m.group(1) == "_" else STALE
            out += [marker] * (int(m.group(2)) if m.group(2) else 1)
        elif m := _STRING_TOKEN.fullmatch(token):
            count = int(m.group(2)) + 1 if m.group(2) else 1
            out += [m.group(1)[1:-1]] * count
        elif m := _NUMERIC_TOKEN.fullmatch(token):
            start = float(m.group(1))
            step = float(m.group(3)) * (-1.0 if m.group(2) == "-" else 1.0) if m.group(3) else 0.0
            if m.group(4) is None:
                if m.group(2):
                    raise ValueError(f"{token!r}: a step needs a count, as in 1+2x5")
                out.append(start)
            else:
                n = int(m.group(4))
                if n > _MAX_SAMPLES:
                    raise ValueError(f"{token!r}: too many samples")
                out += [start + step * i for i in range(n + 1)]
        else:
            raise ValueError(
                f"cannot read {token!r}: expected a number, 'a+bxN', 'axN', "
                '"text", _, _xN, stale or stalexN'
            )
        if len(out) > _MAX_SAMPLES:
            raise ValueError("too many samples")
    for value in out:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("values must be finite numbers (use _ for unknown)")
    return out


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class CaseResult:
    """The outcome of one entry of ``tests``."""

    name: str
    line: int | None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class TestReport:
    """The outcome of one rule-test file."""

    __test__ = False

    path: str
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cases)

    @property
    def failures(self) -> list[str]:
        return [f for c in self.cases for f in c.failures]

    def format(self) -> str:
        """Human-readable summary: one line per case, failure details indented."""
        lines: list[str] = []
        for case in self.cases:
            status = "ok" if case.ok else "FAILED"
            lines.append(f"{self.path}:{case.line}: {case.name}: {status}")
            lines += [f"    {line}" for failure in case.failures for line in failure.splitlines()]
        passed = sum(c.ok for c in self.cases)
        lines.append(f"{self.path}: {passed}/{len(self.cases)} tests passed")
        return "\n".join(lines)


def builtin_test_files() -> list[Path]:
    """The rule tests that ship with the built-in packs."""
    return sorted(PACK_TESTS_DIR.glob("*.yml"))


# --------------------------------------------------------------------------- runner


def run_tests(path: str | Path) -> TestReport:
    """Run one rule-test file.

    Raises :class:`RuleTestFileError` if the test file is malformed and
    :class:`~rules.schema.RuleFileError` if a rule file it names is.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleTestFileError([SourceError(str(p), None, "", f"cannot read: {exc}")]) from None
    doc, errors = load_yaml(text, str(p))
    if doc is None or errors:
        raise RuleTestFileError(errors)
    try:
        spec = RuleTestFile.model_validate(doc.data)
    except ValidationError as exc:
        raise RuleTestFileError(pydantic_errors(exc, doc)) from None
    _check_references(spec, doc)

    base_dir = p.parent
    builtin = builtin_pack_files() if BUILTIN in spec.rule_files else []
    operator = [base_dir / f for f in spec.rule_files if f != BUILTIN]
    rules = merge_layers(load_rule_paths(builtin), load_rule_paths(operator)).rules

    updates: dict[str, object] = {}
    if spec.stale_after is not None:
        updates["stale_after"] = spec.stale_after
    if spec.flap_threshold is not None:
        updates["flap_threshold"] = spec.flap_threshold
    if spec.flap_window is not None:
        updates["flap_window"] = spec.flap_window
    if spec.inhibit_rules is not None:
        updates["inhibit_rules"] = spec.inhibit_rules
    base_config = EngineConfig.model_validate(updates)

    report = TestReport(str(p))
    for ci, case in enumerate(spec.tests):
        line = doc.line_of(("tests", ci))
        result = CaseResult(case.name or f"tests[{ci}]", line)
        config = base_config.model_copy(update={"maintenance": list(case.maintenance)})
        _run_case(case, spec.evaluation_interval, Engine(rules, config), result)
        report.cases.append(result)
    return report


def _check_references(spec: RuleTestFile, doc: YamlDocument) -> None:
    errors: list[SourceError] = []
    interval_default = spec.evaluation_interval
    for ci, case in enumerate(spec.tests):
        names = [t.name for t in case.targets]
        for ti, name in enumerate(names):
            if names.index(name) != ti:
                loc = ("tests", ci, "targets", ti, "name")
                errors.append(
                    SourceError(doc.source, doc.line_of(loc), _path(loc), f"duplicate target {name!r}")
                )
        for si, series in enumerate(case.series):
            if series.target not in names:
                loc = ("tests", ci, "series", si, "target")
                errors.append(
                    SourceError(
                        doc.source, doc.line_of(loc), _path(loc), f"no target named {series.target!r}"
                    )
                )
        interval = case.interval if case.interval is not None else interval_default
        if interval <= 0:
            where: tuple[str | int, ...] = (
                ("tests", ci, "interval") if case.interval is not None else ("evaluation_interval",)
            )
            errors.append(SourceError(doc.source, doc.line_of(where), _path(where), "must be longer than 0s"))
            continue
        for ai, test in enumerate(case.alert_rule_test):
            ticks = test.eval_time / interval
            if abs(ticks - round(ticks)) > 1e-6:
                loc = ("tests", ci, "alert_rule_test", ai, "eval_time")
                errors.append(
                    SourceError(
                        doc.source,
                        doc.line_of(loc),
                        _path(loc),
                        f"must be a multiple of the evaluation interval ({interval:g}s)",
                    )
                )
    if errors:
        raise RuleTestFileError(errors)


def _path(loc: Sequence[str | int]) -> str:
    return format_path(loc)


def _run_case(case: TestCase, default_interval: float, engine: Engine, result: CaseResult) -> None:
    interval = case.interval if case.interval is not None else default_interval
    start_wall = case.start_time.timestamp() if case.start_time is not None else 0.0
    checks: dict[int, list[AlertRuleTest]] = {}
    for test in case.alert_rule_test:
        checks.setdefault(round(test.eval_time / interval), []).append(test)
    if not checks:
        return
    series = [(s.target, s.measurement, expand_series(s.values)) for s in case.series]
    last_seen: dict[str, float | None] = {t.name: None for t in case.targets}
    for k in range(max(checks) + 1):
        now = k * interval
        measurements: dict[str, dict[str, MeasurementValue]] = {t.name: {} for t in case.targets}
        for target, name, samples in series:
            if k >= len(samples) or samples[k] is STALE:
                continue
            sample = samples[k]
            last_seen[target] = now
            measurements[target][name] = None if isinstance(sample, _Marker) else sample
        views = [
            TargetView(
                name=t.name,
                kind=t.kind,
                labels={"target": t.name, "kind": t.kind, **t.labels},
                params=t.params,
                measurements=measurements[t.name],
                last_seen=last_seen[t.name],
            )
            for t in case.targets
        ]
        engine.evaluate(views, now, start_wall + now)
        for test in checks.get(k, []):
            failure = _check(test, engine.active())
            if failure:
                result.failures.append(failure)


def _check(test: AlertRuleTest, active: Sequence[Alert]) -> str | None:
    got = [a for a in active if a.state is AlertState.FIRING and a.alertname == test.alertname]
    if len(got) == len(test.exp_alerts) and _assign(test.exp_alerts, got):
        return None
    expected = "\n".join(f"  - {_describe_expected(e)}" for e in test.exp_alerts) or "  (none)"
    actual = "\n".join(f"  - {_describe_alert(a)}" for a in got) or "  (none)"
    return (
        f"alertname {test.alertname} at {test.eval_time:g}s:\n"
        f"expected {len(test.exp_alerts)} firing:\n{expected}\n"
        f"got {len(got)} firing:\n{actual}"
    )


def _assign(expected: Sequence[ExpectedAlert], got: Sequence[Alert]) -> bool:
    """Whether each expected alert can be matched to a different actual alert."""
    if not expected:
        return True
    first, rest = expected[0], expected[1:]
    for i, alert in enumerate(got):
        if _matches(first, alert) and _assign(rest, [*got[:i], *got[i + 1 :]]):
            return True
    return False


def _matches(exp: ExpectedAlert, alert: Alert) -> bool:
    if any(alert.labels.get(k) != v for k, v in exp.labels.items()):
        return False
    if any(alert.annotations.get(k) != v for k, v in exp.annotations.items()):
        return False
    if exp.notify is not None and alert.notify != exp.notify:
        return False
    if exp.reason is not None:
        want = None if exp.reason == "none" else exp.reason
        if alert.reason != want:
            return False
    return True


def _describe_expected(exp: ExpectedAlert) -> str:
    parts = [f"labels={dict(sorted(exp.labels.items()))}"]
    if exp.annotations:
        parts.append(f"annotations={dict(sorted(exp.annotations.items()))}")
    if exp.notify is not None:
        parts.append(f"notify={exp.notify}")
    if exp.reason is not None:
        parts.append(f"reason={exp.reason}")
    return " ".join(parts)


def _describe_alert(alert: Alert) -> str:
    annotations = {k: v for k, v in sorted(alert.annotations.items()) if k != "runbook_url"}
    reason = alert.reason.value if alert.reason is not None else "none"
    return (
        f"labels={dict(sorted(alert.labels.items()))} annotations={annotations} "
        f"notify={alert.notify} reason={reason}"
    )
