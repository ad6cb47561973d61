"""Annotation templates: ``{{ name }}`` substitution and nothing more.

There is no logic, no filters and no evaluation: a placeholder is a name, optionally
qualified by where to look it up:

* ``{{ value }}``, ``{{ for }}``, ``{{ alertname }}``, ``{{ severity }}``,
  ``{{ outage_class }}`` — facts about the alert (``value`` is the value of the first
  measurement the rule compares; ``for`` the rule's ``for`` as a duration such as 10s);
* ``{{ labels.service }}`` — a label of the alert (target labels and rule labels);
* ``{{ measurements.rds_pi }}`` — the target's latest value of a measurement;
* ``{{ params.rds_pi }}`` — the target's configured parameter;
* a bare ``{{ name }}`` is looked up in that order: alert facts, labels,
  measurements, params.

Numbers print with 4 significant digits (``-45.12``, ``0.0002``); something not known
prints as ``unknown``. Literal braces are not supported in annotation text.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Final

__all__ = [
    "FACTS",
    "NAMESPACES",
    "UNKNOWN_TEXT",
    "check_template",
    "format_value",
    "placeholders",
    "render",
    "resolve",
    "slots_of",
]

#: What an unknown or missing value renders as.
UNKNOWN_TEXT: Final = "unknown"
#: Allowed qualifiers of a placeholder name.
NAMESPACES: Final = ("labels", "measurements", "params")
#: Facts about the alert a bare placeholder may name (looked up before labels,
#: measurements and params).
FACTS: Final = ("value", "for", "alertname", "severity", "outage_class", "target")
#: Template-language syntax other renderers know and this one does not: refused.
_BLOCKS: Final = (("{%", "block tag"), ("%}", "block tag"), ("{#", "comment"), ("#}", "comment"))

_PLACEHOLDER: Final = re.compile(r"\{\{\s*(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def check_template(text: str) -> None:
    """Raise ``ValueError`` if ``text`` has a malformed placeholder, an unknown qualifier,
    block syntax (``{% if %}``, ``{# … #}``: there is no logic here) or a stray brace."""
    for token, what in _BLOCKS:
        at = text.find(token)
        if at >= 0:
            raise ValueError(
                f"{what} {text[at : at + 20]!r} is not supported: annotation templates only "
                "substitute {{ name }} (no if/for, filters or comments)"
            )
    for match in _PLACEHOLDER.finditer(text):
        ns = match.group(1)
        if ns is not None and ns not in NAMESPACES:
            raise ValueError(
                f"unknown qualifier {ns!r} in {match.group(0)!r}; use one of {', '.join(NAMESPACES)}"
            )
    rest = _PLACEHOLDER.sub("", text)
    if "{{" in rest or "}}" in rest:
        bad = rest[rest.find("{{") :] if "{{" in rest else rest[: rest.find("}}") + 2]
        raise ValueError(
            f"malformed placeholder near {bad[:40]!r}: write {{{{ name }}}} with a plain name "
            "such as value, for, service or labels.county"
        )
    if "{" in rest or "}" in rest:
        at = rest.find("{") if "{" in rest else rest.find("}")
        raise ValueError(
            f"stray brace near {rest[max(0, at - 10) : at + 10]!r}: literal braces are not "
            "supported in annotation text"
        )


def placeholders(text: str) -> list[tuple[str | None, str]]:
    """The ``(qualifier, name)`` of every placeholder in ``text``, in order."""
    return [(m.group(1), m.group(2)) for m in _PLACEHOLDER.finditer(text)]


def format_value(value: object) -> str:
    """How a value reads in an annotation."""
    if value is None:
        return UNKNOWN_TEXT
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return UNKNOWN_TEXT
        return f"{value:.4g}"
    return str(value)


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> tuple[tuple[str, ...], tuple[tuple[str | None, str], ...]]:
    """``text`` split once into its literal pieces and the placeholders between them."""
    pieces: list[str] = []
    slots: list[tuple[str | None, str]] = []
    at = 0
    for m in _PLACEHOLDER.finditer(text):
        pieces.append(text[at : m.start()])
        slots.append((m.group(1), m.group(2)))
        at = m.end()
    pieces.append(text[at:])
    return tuple(pieces), tuple(slots)


def render(
    text: str,
    *,
    facts: Mapping[str, object],
    labels: Mapping[str, str],
    measurements: Mapping[str, object],
    params: Mapping[str, object],
) -> str:
    """Substitute every placeholder of ``text`` (see the module docstring).

    Each distinct text is parsed once: the engine renders every active alert's
    annotations on every tick.
    """
    pieces, slots = _compiled(text)
    if not slots:
        return text
    out = [pieces[0]]
    for (ns, name), piece in zip(slots, pieces[1:], strict=True):
        out.append(format_value(resolve(ns, name, facts, labels, measurements, params)))
        out.append(piece)
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def slots_of(texts: tuple[str, ...]) -> tuple[tuple[str | None, str], ...]:
    """The distinct placeholders of ``texts``, in order of first use."""
    return tuple(dict.fromkeys(slot for text in texts for slot in _compiled(text)[1]))


def resolve(
    ns: str | None,
    name: str,
    facts: Mapping[str, object],
    labels: Mapping[str, str],
    measurements: Mapping[str, object],
    params: Mapping[str, object],
) -> object:
    """The value placeholder ``{{ ns.name }}`` stands for (None: not known); what
    :func:`render` prints is its :func:`format_value`."""
    if ns == "labels":
        return labels.get(name)
    if ns == "measurements":
        return measurements.get(name)
    if ns == "params":
        return params.get(name)
    if ns is not None:  # refused by check_template; renders as unknown if it got here
        return None
    for scope in (facts, labels, measurements, params):
        if name in scope:
            return scope[name]
    return None
