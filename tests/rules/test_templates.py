"""Annotation templates: plain ``{{ name }}`` substitution."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.templates import _PLACEHOLDER, check_template, format_value, render


def r(text: str) -> str:
    return render(
        text,
        facts={"value": -45.123456, "for": "10s"},
        labels={"service": "News", "target": "fm1"},
        measurements={"rds_pi": "C999", "silence_seconds": 12.0, "none": None},
        params={"rds_pi": "C201", "rf_reference_dbuv": 64.0},
    )


def test_substitution_and_lookup_order() -> None:
    assert r("{{ service }}/{{target}}: {{ value }} for {{for}}") == "News/fm1: -45.12 for 10s"
    assert r("{{ rds_pi }} vs {{ params.rds_pi }}") == "C999 vs C201"  # measurements before params
    assert r("{{ measurements.silence_seconds }} {{ labels.service }}") == "12 News"
    assert r("{{ missing }} {{ none }} {{ labels.missing }}") == "unknown unknown unknown"
    assert r("no placeholders") == "no placeholders"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "unknown"),
        (math.nan, "unknown"),
        (0.0002, "0.0002"),
        (12.0, "12"),
        (3, "3"),
        (True, "1"),
        ("x", "x"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    "text", ["{{ a", "a }}", "{{ a b }}", "{{ 1 }}", "{{ x.y }}", "{{ __import__('os') }}"]
)
def test_malformed_templates(text: str) -> None:
    with pytest.raises(ValueError, match=r"placeholder|qualifier"):
        check_template(text)


def test_templates_are_not_evaluated() -> None:
    assert r("{{ value * 2 }}") == "{{ value * 2 }}"  # not a placeholder at all: left as text
    with pytest.raises(ValueError, match="malformed placeholder"):
        check_template("{{ value * 2 }}")


def _by_regex(text: str, scopes: dict[str, dict[str, object]]) -> str:
    """The definition: every placeholder match replaced in place (what render did before
    it parsed each text once)."""

    def lookup(m: re.Match[str]) -> str:
        ns, name = m.group(1), m.group(2)
        if ns is not None:
            return format_value(scopes.get(ns, {}).get(name))
        for scope in scopes.values():
            if name in scope:
                return format_value(scope[name])
        return "unknown"

    return _PLACEHOLDER.sub(lookup, text)


_NAMES = st.sampled_from(["value", "service", "rds_pi", "x", "none", "for"])
_PIECES = st.one_of(
    st.text(alphabet="ab {}.\n中", max_size=6),
    st.builds(lambda n: f"{{{{ {n} }}}}", _NAMES),
    st.builds(
        lambda q, n: f"{{{{{q}.{n}}}}}", st.sampled_from(["labels", "measurements", "params", "zz"]), _NAMES
    ),
)


@given(st.lists(_PIECES, max_size=8).map("".join))
def test_render_substitutes_each_placeholder_where_it_stands(text: str) -> None:
    scopes: dict[str, dict[str, object]] = {
        "facts": {"value": -45.123456, "for": "10s"},
        "labels": {"service": "News", "target": "fm1"},
        "measurements": {"rds_pi": "C999", "none": None},
        "params": {"rds_pi": "C201", "x": 2.5},
    }
    got = render(
        text,
        facts=scopes["facts"],
        labels=scopes["labels"],  # type: ignore[arg-type]
        measurements=scopes["measurements"],
        params=scopes["params"],
    )
    assert got == _by_regex(text, scopes)
