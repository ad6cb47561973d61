"""Annotation templates: plain ``{{ name }}`` substitution."""

from __future__ import annotations

import math

import pytest

from rules.templates import check_template, format_value, render


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
