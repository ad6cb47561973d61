"""The one parser behind every duration option (`--duration`, `--min-silence`, ...)."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.durations import duration_argument, format_duration, positive_duration_argument


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("2m", 120.0), ("1h30m", 5400.0)])
def test_the_forms_every_command_accepts(text: str, seconds: float) -> None:
    assert duration_argument(text) == seconds
    assert positive_duration_argument(text) == seconds


@pytest.mark.parametrize("text", ["-1", "-5s", "nan", "inf", "2x", "", "m", "1 h"])
def test_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration_argument(text)


def test_zero_only_where_allowed() -> None:
    assert duration_argument("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match="longer than 0 s"):
        positive_duration_argument("0s")


@given(st.integers(min_value=0, max_value=10**7))
def test_formatted_durations_parse_back(seconds: int) -> None:
    assert duration_argument(format_duration(seconds)) == seconds
    assert duration_argument(str(seconds)) == seconds


@given(st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False))
def test_negatives_are_refused(value: float) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration_argument(repr(value))


@given(st.text(max_size=20))
def test_any_text_gives_seconds_or_an_argparse_error(text: str) -> None:
    message = ""
    try:
        seconds = duration_argument(text)
    except argparse.ArgumentTypeError as exc:
        message = str(exc)
        assert message
    else:
        assert seconds >= 0.0
