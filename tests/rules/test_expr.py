"""The expression language: parsing, errors with columns, three-valued evaluation, safety."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from rules import expr as ex
from rules.expr import Column, ExprError, evaluate, parse, parse_condition

T, F, U = 1.0, 0.0, math.nan


class Env:
    """An EvalEnv over a few targets given as rows of Python values."""

    def __init__(
        self,
        rows: Sequence[Mapping[str, object]],
        params: Sequence[Mapping[str, object]] | None = None,
        windows: Mapping[tuple[str, str, float], Sequence[float]] | None = None,
    ) -> None:
        self.rows = list(rows)
        self.params = list(params) if params is not None else [{} for _ in self.rows]
        self.windows = dict(windows or {})

    @property
    def size(self) -> int:
        return len(self.rows)

    @staticmethod
    def _col(values: list[object]) -> Column:
        if any(isinstance(v, str) for v in values):
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)  # type: ignore[arg-type]

    def measurement(self, name: str) -> Column:
        return self._col([r.get(name) for r in self.rows])

    def param(self, name: str, default: float | str | None) -> Column:
        return self._col([p.get(name, default) for p in self.params])

    def window(self, func: str, name: str, seconds: float) -> NDArray[np.float64]:
        return np.array(self.windows[(func, name, seconds)], dtype=np.float64)


def run(text: str, *rows: Mapping[str, object], **kw: object) -> list[float | str | None]:
    env = Env(list(rows) or [{}], **kw)  # type: ignore[arg-type]
    out = evaluate(parse(text), env)
    return [None if (isinstance(x, float) and math.isnan(x)) else x for x in out.tolist()]


def same(a: Sequence[float | str | None], b: Sequence[float | str | None]) -> bool:
    return list(a) == [None if isinstance(x, float) and math.isnan(x) else x for x in b]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),
        ("12 / 3 / 2", 2.0),
        ("-3 + 5", 2.0),
        ("- -3", 3.0),
        ("+4", 4.0),
        ("2e-3 * 1000", 2.0),
        (".5 + .5", 1.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1d", 86400.0),
        ("abs(-4)", 4.0),
    ],
)
def test_arithmetic_and_durations(text: str, expected: float) -> None:
    assert run(text) == [expected]


def test_precedence_of_logic() -> None:
    # and binds tighter than or; not tighter than and; comparisons tighter than not
    assert run("1 == 1 or 1 == 0 and 1 == 0") == [1.0]
    assert run("not 1 == 0 and 1 == 1") == [1.0]
    assert run("not (1 == 1 and 1 == 0)") == [1.0]


def test_value_node_is_the_first_compared_measurement() -> None:
    node = parse_condition("audio_rms_dbfs < -40 and silence == 1")
    assert ex.value_node(node) == ex.Measurement("audio_rms_dbfs", 1)
    node = parse_condition("-40 > audio_rms_dbfs")
    assert ex.value_node(node) == ex.Measurement("audio_rms_dbfs", 7)
    node = parse_condition("avg_over(mer_db, 30s) < 20")
    assert isinstance(ex.value_node(node), ex.Window)
    assert ex.value_node(parse_condition("1 < 2")) is None


def test_measurements_and_windows_referenced() -> None:
    node = parse_condition("avg_over(a, 30s) < 1 and max_over(a, 5m) > 2 or b == 1 or present(c)")
    assert ex.measurement_names(node) == {"a", "b", "c"}
    assert ex.window_lengths(node) == {"a": 300.0}


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("a <", 4, "expected a value"),
        ("a < < 1", 5, "expected a value"),
        ("(a < 1", 7, "expected ')'"),
        ("a < 1)", 6, "unexpected ')'"),
        ("a = 1", 3, "use =="),
        ("a < 1 && b", 7, "use and, or, not"),
        ("a < 1 < 2", 7, "cannot be chained"),
        ("a < 'x", 5, "unterminated string"),
        ("5m5 > 1", 1, "invalid number or duration"),
        ("1e5s > 1", 1, "invalid number or duration"),
        ("foo(1) > 1", 1, "unknown function 'foo'"),
        ('__import__("os")', 1, "unknown function '__import__'"),
        ("__class__ == 1", 1, "not a measurement name"),
        ("a.b == 1", 2, "unexpected character '.'"),  # no attribute access
        ("a[0] == 1", 2, "unexpected character '['"),
        ("lambda: 1", 7, "unexpected character ':'"),
        ("avg_over(a) < 1", 11, "expected ','"),
        ("avg_over(a, 30) < 1", 13, "window duration"),
        ("avg_over(1, 30s) < 1", 10, "measurement name first"),
        ("avg_over(a, 0s) < 1", 13, "longer than 0s"),
        ('param(rds_pi) == "x"', 7, "quoted parameter name"),
        ('param("x", y) == 1', 12, "default must be"),
        ("a and b", 1, "needs a condition"),
        ("not a", 5, "needs a condition"),
        ('"x" < "y"', 5, "only be compared with == and !="),
        ('a == 1 < "x"', 8, "cannot be chained"),
        ('(a == 1) < "x"', 4, "cannot compare a condition"),
        ('"x" == 1', 5, "string with a number"),
        ("(a == 1) + 1", 4, "needs a number"),
        ('"x" * 2', 1, "needs a number, not a string"),
        ("", 1, "expected a value"),
        ("and", 1, "expected a value before 'and'"),
        ("1e999 > 1", 1, "too large"),
        ("a == 1 a", 8, "unexpected 'a'"),
    ],
)
def test_parse_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        parse_condition(text) if "needs a condition" in fragment else parse(text)
    assert info.value.column == column, str(info.value)
    assert fragment in info.value.message
    assert str(info.value).startswith(f"column {column}: ")
    pointer = info.value.pointer().splitlines()
    assert pointer[0] == text and pointer[1].endswith("^") and len(pointer[1]) == column


def test_condition_required_at_top_level() -> None:
    with pytest.raises(ExprError, match="condition is needed"):
        parse_condition("silence")
    with pytest.raises(ExprError, match="condition is needed"):
        parse_condition("audio_rms_dbfs + 3")
    assert parse_condition("true")


def test_nesting_and_length_are_bounded() -> None:
    deep = "(" * 200 + "1" + ")" * 200 + " == 1"
    with pytest.raises(ExprError, match="nested more than"):
        parse(deep)
    with pytest.raises(ExprError, match="nested more than"):
        parse("-" * 500 + "1 < 2")
    with pytest.raises(ExprError, match="nested more than"):
        parse("not " * 500 + "1 < 2")
    with pytest.raises(ExprError, match="longer than"):
        parse("a == 1 or " * 1000 + "a == 1")


def test_escapes_in_strings() -> None:
    assert run(r'"a\"b" == x', {"x": 'a"b'}) == [1.0]
    assert run(r"'it\'s' == x", {"x": "it's"}) == [1.0]
    with pytest.raises(ExprError, match="unknown escape"):
        parse(r'"\q" == x')


# --------------------------------------------------------------------------- three-valued logic


@pytest.mark.parametrize(
    ("a", "b", "and_", "or_"),
    [
        (T, T, T, T),
        (T, F, F, T),
        (F, T, F, T),
        (F, F, F, F),
        (T, U, U, T),
        (U, T, U, T),
        (F, U, F, U),
        (U, F, F, U),
        (U, U, U, U),
    ],
)
def test_kleene_truth_tables(a: float, b: float, and_: float, or_: float) -> None:
    row = {"a": a, "b": b}
    assert same(run("a == 1 and b == 1", row), [and_])
    assert same(run("a == 1 or b == 1", row), [or_])


def test_not_unknown_is_unknown() -> None:
    assert run("not a == 1", {"a": None}) == [None]
    assert run("not a == 1", {"a": 0.0}) == [1.0]


def test_unknown_propagates_through_arithmetic_and_comparisons() -> None:
    assert run("a + 1 > 0", {}) == [None]
    assert run("a * 0 == 0", {"a": math.nan}) == [None]
    assert run("abs(a) > 1", {"a": None}) == [None]
    assert run("-a < 1", {}) == [None]


def test_division_by_zero_is_unknown() -> None:
    assert run("a / b > 1", {"a": 1.0, "b": 0.0}) == [None]
    assert run("a / b", {"a": 1.0, "b": 4.0}) == [0.25]


def test_present_is_never_unknown() -> None:
    assert run("present(a)", {"a": 1.0}, {}, {"a": None}, {"a": "x"}) == [1.0, 0.0, 0.0, 1.0]
    assert run("present(a + b)", {"a": 1.0, "b": 2.0}, {"a": 1.0}) == [1.0, 0.0]


def test_vectorized_over_targets() -> None:
    rows: list[dict[str, object]] = [{"x": -50.0}, {"x": -20.0}, {}, {"x": None}]
    assert run("x < -40", *rows) == [1.0, 0.0, None, None]


def test_strings_compare_by_equality() -> None:
    rows: list[dict[str, object]] = [{"rds_pi": "C201"}, {"rds_pi": "C999"}, {}, {"rds_pi": 5.0}]
    params = [{"rds_pi": "C201"}, {"rds_pi": "C201"}, {"rds_pi": "C201"}, {"rds_pi": "C201"}]
    assert run('rds_pi != param("rds_pi")', *rows, params=params) == [0.0, 1.0, None, None]
    # no expected value configured: unknown, so it can never fire
    assert run('rds_pi != param("rds_pi")', {"rds_pi": "C201"}) == [None]
    assert run('rds_pi == "C201"', *rows) == [1.0, 0.0, None, None]


def test_strings_in_arithmetic_or_ordering_are_unknown() -> None:
    assert run("x + 1 > 0", {"x": "abc"}) == [None]
    assert run("x < y", {"x": "a", "y": "b"}) == [None]


def test_param_defaults() -> None:
    params = [{"floor": 30.0}, {}]
    assert run('param("floor", 20) + 0', {}, {}, params=params) == [30.0, 20.0]
    assert run('param("floor", -5)', {}, params=[{}]) == [-5.0]
    assert run('param("pi", "C201") == "C201"', {}, params=[{}]) == [1.0]
    assert run('param("floor")', {}, params=[{}]) == [None]


def test_windows_come_from_the_environment() -> None:
    windows = {("avg_over", "mer", 30.0): [10.0, math.nan]}
    assert run("avg_over(mer, 30s) < 20", {}, {}, windows=windows) == [1.0, None]


# --------------------------------------------------------------------------- safety


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_expr_error(text: str) -> None:
    error: ExprError | None = None
    try:
        node = parse(text)
    except ExprError as exc:
        error = exc
    if error is not None:
        assert error.column >= 1 and error.message
    else:
        assert ex.type_of(node) in ex.ValueType


_ALPHABET = st.sampled_from(
    [
        "a", "b", "1", "2.5", "30s", "5m", '"x"', "'y'", "(", ")", ",", "<", "<=", ">", ">=", "==",
        "!=", "+", "-", "*", "/", "and", "or", "not", "true", "false", "param", "present", "abs",
        "avg_over", "changes_over", "__import__", "os", " ", ".", "=",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=24).map(" ".join))
def test_token_soup_parses_and_evaluates_or_raises_expr_error(text: str) -> None:
    try:
        node = parse(text)
    except ExprError:
        return
    rows: list[dict[str, object]] = [{"a": 1.0, "b": "x"}, {"a": None}, {"a": 0.0, "b": 2.0}]
    windows = {
        (f, m, s): [1.0, math.nan, 0.0] for f in ex.WINDOW_FUNCTIONS for m in "ab" for s in (30.0, 300.0)
    }
    out = evaluate(node, Env(rows, windows=windows))
    assert len(out) == 3


def test_no_python_is_ever_evaluated(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("Python evaluation used")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", forbidden)
    assert run("a * 2 > 3 and present(b)", {"a": 2.0, "b": 1.0}) == [1.0]
    for text in ['__import__("os").system("true")', "open('x')", "a.__class__", "exec('1')"]:
        with pytest.raises(ExprError):
            parse(text)


@pytest.mark.parametrize("text", [".²", ".٣", "1.²", "²"])
def test_non_ascii_digits_are_a_clear_error(text: str) -> None:
    """Found by hypothesis: '.' then a superscript digit tripped an internal assertion."""
    with pytest.raises(ExprError) as info:
        parse(text)
    assert info.value.column >= 1 and info.value.message
