"""Rule files: the YAML schema, validation with file:line errors, and pack loading.

A rule file::

    groups:
      - name: fm-audio
        rules:
          - alert: DeadAir
            selector: {kind: fm}               # label equality (all must match)
            selector_regex: {kind: "fm|dtv"}   # anchored regular expressions on labels
            expr: silence == 1
            for: 10s
            clear: silence == 0                # optional; default: not expr
            clear_for: 5s
            keep_firing_for: 0s
            severity: critical                 # critical | warning | info
            outage_class: outage               # outage | wrong_programme | filler | degraded | none
            labels: {team: fm}
            annotations:
              summary: "Dead air on {{ service }} ({{ target }})"
            runbook_url: https://anbo.example/runbooks/DeadAir
            enabled: true

Loading order: the built-in packs (``rules/packs/*.yml``), then the operator's
directory. A rule's *key* is its ``alert`` name plus its selector (``selector`` and
``selector_regex``). Operator rules with a key replace **all** built-in rules with that
key (a built-in may have several severity variants; the operator's file then says
which variants remain); an operator entry with ``enabled: false`` and that key
removes them. Within one layer, two rules with the same key and severity are an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from rules.catalogue import Vocabulary, check_rule
from rules.durations import parse_duration
from rules.expr import ExprError, Node, parse_condition, value_node
from rules.model import OutageClass, Severity
from rules.templates import check_template
from rules.yamlsource import Location, SourceError, YamlDocument, format_path, load_yaml

__all__ = [
    "BUILTIN",
    "PACKS_DIR",
    "RESERVED_ALERTS",
    "RESERVED_LABELS",
    "Duration",
    "Rule",
    "RuleFileError",
    "RuleFileModel",
    "RuleGroupModel",
    "RuleSet",
    "RuleSpec",
    "builtin_pack_files",
    "load_rule_file",
    "load_rule_paths",
    "load_rules",
    "merge_layers",
    "parse_rule_text",
    "pydantic_errors",
]

#: Where the built-in packs live (shipped as package data).
PACKS_DIR: Final = Path(__file__).resolve().parent / "packs"
#: The name standing for the built-in packs in lists of rule files.
BUILTIN: Final = "builtin"
#: Alert names the engine raises itself; rule files may not define them.
RESERVED_ALERTS: Final = frozenset({"TelemetryLost", "Flapping", "MaintenanceOverrun"})
#: Labels the engine sets; rule labels may not override them.
RESERVED_LABELS: Final = frozenset({"alertname", "severity", "station", "target", "kind", "service"})

_ALERT_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_LABEL_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RuleFileError(Exception):
    """One or more problems in rule files; ``errors`` name file, line and field."""

    def __init__(self, errors: Sequence[SourceError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def _duration(value: object) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {value!r}")


Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds; written ``30s``, ``5m``, ``1h30m`` or a bare number of seconds."""


def _template(text: str) -> str:
    check_template(text)  # a ValueError: pydantic reports it at the annotation's key
    return text


Template = Annotated[str, AfterValidator(_template)]
"""An annotation template (see :mod:`rules.templates`)."""


def _check_label_names(names: Iterable[str], what: str) -> None:
    for name in names:
        if not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"{what} {name!r} is not a valid label name ([A-Za-z_][A-Za-z0-9_]*)")


class RuleSpec(BaseModel):
    """One rule as written in a file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alert: str
    selector: dict[str, str] = Field(default_factory=dict)
    selector_regex: dict[str, str] = Field(default_factory=dict)
    expr: str | None = None
    for_: Duration = Field(default=0.0, alias="for")
    clear: str | None = None
    clear_for: Duration = 0.0
    keep_firing_for: Duration = 0.0
    severity: Severity = Severity.WARNING
    outage_class: OutageClass = OutageClass.NONE
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, Template] = Field(default_factory=dict)
    runbook_url: str | None = None
    enabled: bool = True

    @field_validator("alert")
    @classmethod
    def _alert_name(cls, value: str) -> str:
        if not _ALERT_NAME.fullmatch(value):
            raise ValueError(f"alert name {value!r} must be a letter followed by letters, digits or _")
        if value in RESERVED_ALERTS:
            raise ValueError(f"{value} is raised by the engine itself and cannot be defined in a rule file")
        return value

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        _check_label_names(value, "selector label")
        return value

    @field_validator("selector_regex")
    @classmethod
    def _selector_regex(cls, value: dict[str, str]) -> dict[str, str]:
        _check_label_names(value, "selector_regex label")
        for name, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{name}: invalid regular expression {pattern!r}: {exc}") from None
        return value

    @field_validator("expr", "clear")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            parse_condition(value)  # ExprError is a ValueError: pydantic reports it at this field
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        _check_label_names(value, "label")
        reserved = sorted(RESERVED_LABELS.intersection(value))
        if reserved:
            raise ValueError(f"label(s) {', '.join(reserved)} are set by anbo and cannot be overridden")
        return value

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        _check_label_names(value, "annotation")
        return value


class RuleGroupModel(BaseModel):
    """A named group of rules (the name is for people; it does not change evaluation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    rules: list[RuleSpec]


class RuleFileModel(BaseModel):
    """A whole rule file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: list[RuleGroupModel]


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A validated, compiled rule ready for the engine.

    ``for_seconds`` is how long ``expr`` must hold (pending) before the alert fires;
    ``clear`` (None = ``not expr``) must then hold for ``clear_for_seconds`` before the
    alert clears, and it keeps firing ``keep_firing_for_seconds`` more unless ``expr``
    comes back. ``value_expr`` computes the alert's reported ``value``.
    """

    alert: str
    selector: Mapping[str, str]
    selector_regex: Mapping[str, re.Pattern[str]]
    expr_text: str
    expr: Node
    clear_text: str | None
    clear: Node | None
    value_expr: Node | None
    for_seconds: float
    clear_for_seconds: float
    keep_firing_for_seconds: float
    severity: Severity
    outage_class: OutageClass
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    runbook_url: str | None
    enabled: bool
    group: str
    source: str
    line: int | None

    @property
    def selector_text(self) -> str:
        """The selector in PromQL style: ``{kind="fm", service=~"News.*"}``."""
        parts = [f'{k}="{v}"' for k, v in sorted(self.selector.items())]
        parts += [f'{k}=~"{p.pattern}"' for k, p in sorted(self.selector_regex.items())]
        return "{" + ", ".join(parts) + "}"

    @property
    def key(self) -> tuple[str, str]:
        """What operator rules override by: (alert, selector)."""
        return (self.alert, self.selector_text)

    @property
    def uid(self) -> str:
        """Stable identity across restarts: ``DeadAir{kind="fm"}/critical``."""
        return f"{self.alert}{self.selector_text}/{self.severity.value}"

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else self.source

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a target with ``labels`` is selected (every equality and regex must hold)."""
        for name, want in self.selector.items():
            if labels.get(name) != want:
                return False
        for name, pattern in self.selector_regex.items():
            got = labels.get(name)
            if got is None or pattern.fullmatch(got) is None:
                return False
        return True


def compile_rule(spec: RuleSpec, group: str, source: str, line: int | None) -> Rule:
    """Turn a validated :class:`RuleSpec` into a :class:`Rule` (parses its expressions)."""
    if spec.expr is None:
        # Only disabled entries have no expression; they never reach the engine.
        expr: Node = parse_condition("false")
        expr_text = ""
    else:
        expr = parse_condition(spec.expr)
        expr_text = spec.expr
    clear = parse_condition(spec.clear) if spec.clear is not None else None
    return Rule(
        alert=spec.alert,
        selector=dict(spec.selector),
        selector_regex={k: re.compile(v) for k, v in spec.selector_regex.items()},
        expr_text=expr_text,
        expr=expr,
        clear_text=spec.clear,
        clear=clear,
        value_expr=value_node(expr),
        for_seconds=spec.for_,
        clear_for_seconds=spec.clear_for,
        keep_firing_for_seconds=spec.keep_firing_for,
        severity=spec.severity,
        outage_class=spec.outage_class,
        labels=dict(spec.labels),
        annotations=dict(spec.annotations),
        runbook_url=spec.runbook_url,
        enabled=spec.enabled,
        group=group,
        source=source,
        line=line,
    )


def pydantic_errors(exc: ValidationError, doc: YamlDocument, prefix: Location = ()) -> list[SourceError]:
    """Turn pydantic's errors into ``file:line: field: message`` (expression errors with their column)."""
    out: list[SourceError] = []
    for err in exc.errors():
        loc: Location = (*prefix, *(p for p in err["loc"] if isinstance(p, str | int)))
        # Drop pydantic's internal location parts (e.g. union member tags) that are not in the file.
        loc = _known_prefix(doc, loc)
        line = doc.line_of(loc)
        cause = (err.get("ctx") or {}).get("error")
        message = err["msg"]
        if isinstance(cause, ExprError):
            message = f"column {cause.column} of the expression: {cause.message}"
            if loc in doc.nodes:
                line = doc.line_of_column(loc, cause.column)
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "missing":
            message = "required field missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        out.append(SourceError(doc.source, line, _describe(doc, loc), message))
    return out


def _known_prefix(doc: YamlDocument, loc: Location) -> Location:
    """``loc`` up to its last part that exists in the file, plus a final missing key name."""
    for end in range(len(loc), -1, -1):
        node = doc.nodes.get(loc[:end])
        if node is not None:
            if end < len(loc) and isinstance(loc[end], str) and isinstance(node, yaml.MappingNode):
                return loc[: end + 1]
            return loc[:end]
    return loc


def _describe(doc: YamlDocument, loc: Location) -> str:
    """The field path, with the rule's alert name when the path is inside a rule."""
    text = format_path(loc)
    for i in range(len(loc) - 1):
        if loc[i] == "rules" and isinstance(loc[i + 1], int):
            alert = doc.get((*loc[: i + 2], "alert"))
            if isinstance(alert, str):
                rest = format_path(loc[i + 2 :])
                head = format_path(loc[: i + 2])
                return f"{head} ({alert})" + (f".{rest}" if rest else "")
    return text


def parse_rule_text(text: str, source: str, vocabulary: Vocabulary | None = None) -> list[Rule]:
    """Validate one rule file's text; return its rules (disabled entries included).

    With a ``vocabulary`` (the measurement catalogue and the station's additions) every
    enabled rule is also checked against it: unknown measurements, params, kinds and
    annotation placeholders, and measurements of another kind, are errors.
    Raises :class:`RuleFileError` listing every problem found.
    """
    doc, errors = load_yaml(text, source)
    if doc is None:
        raise RuleFileError(errors)
    if doc.data is None:
        raise RuleFileError([*errors, SourceError(source, 1, "", "empty rule file (expected `groups:`)")])
    try:
        model = RuleFileModel.model_validate(doc.data)
    except ValidationError as exc:
        raise RuleFileError([*errors, *pydantic_errors(exc, doc)]) from None
    rules: list[Rule] = []
    group_lines: dict[str, int | None] = {}
    for gi, group in enumerate(model.groups):
        if group.name in group_lines:
            errors.append(
                SourceError(
                    source,
                    doc.line_of(("groups", gi, "name")),
                    f"groups[{gi}].name",
                    f"duplicate group name {group.name!r} (first at line {group_lines[group.name]})",
                )
            )
        group_lines.setdefault(group.name, doc.line_of(("groups", gi, "name")))
        for ri, spec in enumerate(group.rules):
            loc: Location = ("groups", gi, "rules", ri)
            line = doc.line_of(loc)
            if spec.enabled and spec.expr is None:
                errors.append(
                    SourceError(
                        source, line, _describe(doc, (*loc, "expr")), "required unless enabled: false"
                    )
                )
                continue
            rule = compile_rule(spec, group.name, source, line)
            if vocabulary is not None and rule.enabled:
                errors += _vocabulary_errors(vocabulary, rule, doc, loc)
            rules.append(rule)
    if errors:
        raise RuleFileError(errors)
    return rules


def _vocabulary_errors(
    vocabulary: Vocabulary, rule: Rule, doc: YamlDocument, loc: Location
) -> list[SourceError]:
    conditions = {"expr": rule.expr}
    if rule.clear is not None:
        conditions["clear"] = rule.clear
    problems = check_rule(
        vocabulary,
        selector=rule.selector,
        selector_regex=rule.selector_regex,
        conditions=conditions,
        annotations=rule.annotations,
        labels=rule.labels,
    )
    out = []
    for problem in problems:
        where: Location = (*loc, *problem.where)
        line = doc.line_of(where)
        if problem.column is not None:
            line = doc.line_of_column(where, problem.column)
        out.append(SourceError(doc.source, line, _describe(doc, where), problem.message))
    return out


def load_rule_file(path: str | Path, vocabulary: Vocabulary | None = None) -> list[Rule]:
    """Read and validate one rule file (see :func:`parse_rule_text`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError([SourceError(str(p), None, "", f"cannot read: {exc}")]) from None
    return parse_rule_text(text, str(p), vocabulary)


def builtin_pack_files() -> list[Path]:
    """The built-in pack files, in load order."""
    return sorted(PACKS_DIR.glob("*.yml"))


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for entry in paths:
        p = Path(entry)
        if p.is_dir():
            files += sorted(x for x in p.iterdir() if x.suffix in (".yml", ".yaml") and x.is_file())
        else:
            files.append(p)
    return files


def load_rule_paths(paths: Iterable[str | Path], vocabulary: Vocabulary | None = None) -> list[Rule]:
    """Load files and directories (``*.yml``/``*.yaml`` in it, sorted) as one layer.

    Every file is read even when an earlier one fails; all errors are raised together.
    Two rules of the layer with the same key and severity are an error.
    """
    rules: list[Rule] = []
    errors: list[SourceError] = []
    for f in _expand(paths):
        try:
            rules += load_rule_file(f, vocabulary)
        except RuleFileError as exc:
            errors += exc.errors
    errors += _duplicates(rules)
    if errors:
        raise RuleFileError(errors)
    return rules


def _duplicates(rules: Sequence[Rule]) -> list[SourceError]:
    errors: list[SourceError] = []
    seen: dict[tuple[str, str, str], Rule] = {}
    for rule in rules:
        if not rule.enabled:
            continue
        ident = (*rule.key, rule.severity.value)
        first = seen.get(ident)
        if first is not None:
            errors.append(
                SourceError(
                    rule.source,
                    rule.line,
                    f"rule {rule.alert}",
                    f"duplicate: {rule.alert}{rule.selector_text} with severity {rule.severity} "
                    f"is also defined at {first.where}",
                )
            )
        else:
            seen[ident] = rule
    return errors


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules the engine runs, and notes on what the operator layer changed."""

    rules: tuple[Rule, ...]
    notes: tuple[str, ...] = field(default=())


def merge_layers(builtin: Sequence[Rule], operator: Sequence[Rule]) -> RuleSet:
    """Built-in rules, with operator rules replacing (or disabling) those with the same key."""
    operator_keys = {r.key for r in operator}
    builtin_keys = {r.key for r in builtin}
    notes: list[str] = []
    for key in sorted(operator_keys):
        entries = [r for r in operator if r.key == key]
        where = entries[0].where
        if key in builtin_keys:
            if any(r.enabled for r in entries):
                notes.append(f"{where}: {key[0]}{key[1]} replaces the built-in rule")
            else:
                notes.append(f"{where}: {key[0]}{key[1]} disables the built-in rule")
        elif not any(r.enabled for r in entries):
            notes.append(f"{where}: {key[0]}{key[1]} is disabled but no built-in rule has that key")
    merged = [r for r in builtin if r.enabled and r.key not in operator_keys]
    merged += [r for r in operator if r.enabled]
    return RuleSet(tuple(merged), tuple(notes))


def load_rules(
    operator_paths: Iterable[str | Path] = (),
    *,
    builtin: bool = True,
    vocabulary: Vocabulary | None = None,
) -> RuleSet:
    """The built-in packs (unless ``builtin=False``) overlaid with the operator's files/directories.

    With a ``vocabulary`` every rule is checked against the measurement catalogue (see
    :func:`rules.catalogue.check_rule`). Raises :class:`RuleFileError` with every problem
    of every file.
    """
    errors: list[SourceError] = []
    base: list[Rule] = []
    if builtin:
        try:
            base = load_rule_paths(builtin_pack_files(), vocabulary)
        except RuleFileError as exc:
            errors += exc.errors
    try:
        mine = load_rule_paths(operator_paths, vocabulary)
    except RuleFileError as exc:
        errors += exc.errors
        mine = []
    if errors:
        raise RuleFileError(errors)
    return merge_layers(base, mine)
