"""The rule expression language: a small, safe, three-valued condition language.

Written by hand as tokenizer → recursive-descent parser → typed AST → numpy evaluator.
Nothing here ever hands text to Python's ``eval``/``exec``/``compile``; an expression
can only name measurements, call the functions listed below and combine them with the
listed operators. Anything else is an :class:`ExprError` naming the column.

Syntax (lowest to highest precedence)::

    a or b          a and b          not a
    a < b   a <= b   a > b   a >= b   a == b   a != b      (no chaining: a < b < c)
    a + b   a - b    a * b   a / b    -a
    ( … )   3   -40.5   2e-4   "C201"   'C201'   30s   5m   1h30m   true   false
    audio_rms_dbfs                  measurement of the target, this tick
    param("rf_reference_dbuv")      configured per-target reference (unknown if unset)
    param("carrier_floor_dbuv", 20) … with a default when the target does not set it
    present(m)                      1 if m is known (never unknown itself)
    abs(x)
    avg_over(m, 30s)  min_over(m, 30s)  max_over(m, 30s)
    changes_over(m, 5m)             how often m changed value in the window

Values are numbers (floats; durations are seconds), strings (identity codes such as
the RDS PI) or conditions. **Unknown** is a value of its own: a missing measurement,
``None`` or ``NaN``, an unset ``param``, a division by zero, a string where a number is
needed. Arithmetic and comparisons with an unknown operand are unknown. ``and``/``or``/
``not`` follow Kleene's three-valued logic: ``false and unknown`` is false, ``true or
unknown`` is true, ``not unknown`` is unknown. An unknown condition neither fires nor
resolves an alert (see :mod:`rules.engine`).

Windowed functions (``*_over``) look at the samples the engine took of that
measurement at each evaluation within the last *window* seconds (this one included),
ignoring unknown samples; with no known sample in the window they are unknown.

Evaluation is vectorized: :func:`evaluate` computes an expression for every target a
rule selects at once. Conditions evaluate to ``float64`` arrays holding 1.0 (true),
0.0 (false) or NaN (unknown); numbers to ``float64`` (NaN = unknown); string-valued
operands to ``object`` arrays (``None`` = unknown).
"""

from __future__ import annotations

import enum
import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias

import numpy as np
from numpy.typing import NDArray

from rules.durations import UNIT_SECONDS

__all__ = [
    "FUNCTIONS",
    "MAX_EXPR_LENGTH",
    "WINDOW_FUNCTIONS",
    "Column",
    "EvalEnv",
    "ExprError",
    "Node",
    "ValueType",
    "evaluate",
    "measurement_names",
    "measurement_refs",
    "param_refs",
    "parse",
    "parse_condition",
    "value_node",
    "window_lengths",
]

#: Longest expression accepted, in characters.
MAX_EXPR_LENGTH: Final = 4096
#: Deepest nesting of parentheses / unary operators accepted.
MAX_DEPTH: Final = 64

#: Functions over a measurement's recent history: name → what it computes.
WINDOW_FUNCTIONS: Final[dict[str, str]] = {
    "avg_over": "mean of the known samples in the window",
    "min_over": "smallest known sample in the window",
    "max_over": "largest known sample in the window",
    "changes_over": "number of times the known value changed within the window",
}
#: Every function an expression may call.
FUNCTIONS: Final = ("param", "present", "abs", *WINDOW_FUNCTIONS)

Column: TypeAlias = NDArray[np.float64] | NDArray[np.object_]
"""A vector over targets: ``float64`` (NaN = unknown) or ``object`` (str/float/None)."""


class ExprError(ValueError):
    """A malformed expression. ``column`` is 1-based within the expression text."""

    def __init__(self, message: str, column: int, text: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.text = text

    def __str__(self) -> str:
        return f"column {self.column}: {self.message}"

    def pointer(self) -> str:
        """The expression with a caret under the offending column (two lines)."""
        return f"{self.text}\n{' ' * (self.column - 1)}^"


class ValueType(enum.Enum):
    """Static type of an expression node."""

    NUMBER = "number"
    STRING = "string"
    BOOL = "condition"
    #: a measurement or ``param``: a number or a string, known only at run time
    ANY = "value"


# --------------------------------------------------------------------------- tokens


class _Tok(enum.Enum):
    NUMBER = "number"
    DURATION = "duration"
    STRING = "string"
    IDENT = "name"
    OP = "operator"
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    END = "end of expression"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Tok
    text: str
    col: int
    value: float | str | None = None


_KEYWORDS: Final = frozenset({"and", "or", "not", "true", "false"})
_DURATION_AT: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+")
_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_NUMBER_AT: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IDENT_AT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_CHAR: Final = re.compile(r"[A-Za-z0-9_.]")
_OPERATORS: Final = ("<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/")
_ESCAPES: Final = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        col = i + 1
        if ch in " \t\r\n":
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        # ASCII digits only: "²" or "٣" are str.isdigit() but start no number.
        if ch.isascii() and (ch.isdigit() or (ch == "." and nxt.isascii() and nxt.isdigit())):
            dm = _DURATION_AT.match(text, i)
            if dm and not (dm.end() < n and _WORD_CHAR.match(text, dm.end())):
                seconds = sum(float(v) * UNIT_SECONDS[u] for v, u in _DURATION_PART.findall(dm.group()))
                tokens.append(_Token(_Tok.DURATION, dm.group(), col, seconds))
                i = dm.end()
                continue
            nm = _NUMBER_AT.match(text, i)
            assert nm is not None  # a digit, or '.' and a digit, always starts a number
            if nm.end() < n and _WORD_CHAR.match(text, nm.end()):
                end = nm.end()
                while end < n and _WORD_CHAR.match(text, end):
                    end += 1
                raise ExprError(
                    f"invalid number or duration {text[i:end]!r} (durations look like 500ms, 30s, 5m, 1h)",
                    col,
                    text,
                )
            value = float(nm.group())
            if not math.isfinite(value):
                raise ExprError(f"number {nm.group()!r} is too large", col, text)
            tokens.append(_Token(_Tok.NUMBER, nm.group(), col, value))
            i = nm.end()
            continue
        if ch in "\"'":
            i, value_s = _read_string(text, i)
            tokens.append(_Token(_Tok.STRING, text[col - 1 : i], col, value_s))
            continue
        im = _IDENT_AT.match(text, i)
        if im:
            tokens.append(_Token(_Tok.IDENT, im.group(), col))
            i = im.end()
            continue
        if ch == "(":
            tokens.append(_Token(_Tok.LPAREN, ch, col))
            i += 1
            continue
        if ch == ")":
            tokens.append(_Token(_Tok.RPAREN, ch, col))
            i += 1
            continue
        if ch == ",":
            tokens.append(_Token(_Tok.COMMA, ch, col))
            i += 1
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(_Token(_Tok.OP, op, col))
                i += len(op)
                break
        else:
            hint = ""
            if ch == "=":
                hint = " (use == to compare)"
            elif ch in "&|!":
                hint = " (use and, or, not)"
            raise ExprError(f"unexpected character {ch!r}{hint}", col, text)
    tokens.append(_Token(_Tok.END, "", n + 1))
    return tokens


def _read_string(text: str, start: int) -> tuple[int, str]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return i + 1, "".join(out)
        if ch == "\\":
            if i + 1 >= len(text):
                break
            esc = text[i + 1]
            if esc not in _ESCAPES:
                raise ExprError(f"unknown escape \\{esc} in string", i + 1, text)
            out.append(_ESCAPES[esc])
            i += 2
            continue
        if ch == "\n":
            break
        out.append(ch)
        i += 1
    raise ExprError("unterminated string", start + 1, text)


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Number:
    value: float
    col: int


@dataclass(frozen=True, slots=True)
class String:
    value: str
    col: int


@dataclass(frozen=True, slots=True)
class Boolean:
    value: bool
    col: int


@dataclass(frozen=True, slots=True)
class Measurement:
    """The target's latest value of measurement ``name`` this tick."""

    name: str
    col: int


@dataclass(frozen=True, slots=True)
class Param:
    """The target's configured parameter ``name`` (``default`` when the target has none)."""

    name: str
    default: float | str | None
    col: int


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Node
    col: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    col: int


@dataclass(frozen=True, slots=True)
class Arith:
    op: str
    left: Node
    right: Node
    col: int


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Node
    right: Node
    col: int


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # "and" | "or"
    left: Node
    right: Node
    col: int


@dataclass(frozen=True, slots=True)
class Present:
    operand: Node
    col: int


@dataclass(frozen=True, slots=True)
class Abs:
    operand: Node
    col: int


@dataclass(frozen=True, slots=True)
class Window:
    """``func(measurement, seconds)`` over the engine's history of the measurement."""

    func: str
    measurement: str
    seconds: float
    col: int


Node: TypeAlias = (
    Number
    | String
    | Boolean
    | Measurement
    | Param
    | Negate
    | Not
    | Arith
    | Compare
    | Logic
    | Present
    | Abs
    | Window
)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Negate | Not | Present | Abs):
        return (node.operand,)
    if isinstance(node, Arith | Compare | Logic):
        return (node.left, node.right)
    return ()


def _walk(node: Node) -> Iterator[Node]:
    """Nodes in evaluation order (pre-order, left to right)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(_children(current)))


def type_of(node: Node) -> ValueType:
    """Static type of an (already checked) node."""
    if isinstance(node, Number | Negate | Arith | Abs | Window):
        return ValueType.NUMBER
    if isinstance(node, String):
        return ValueType.STRING
    if isinstance(node, Boolean | Not | Compare | Logic | Present):
        return ValueType.BOOL
    return ValueType.ANY


def measurement_names(node: Node) -> set[str]:
    """Every measurement the expression reads, directly or through a window."""
    names: set[str] = set()
    for n in _walk(node):
        if isinstance(n, Measurement):
            names.add(n.name)
        elif isinstance(n, Window):
            names.add(n.measurement)
    return names


def measurement_refs(node: Node) -> list[tuple[str, int]]:
    """Every measurement the expression reads, with the column of each use, in reading order."""
    out: list[tuple[str, int]] = []
    for n in _walk(node):
        if isinstance(n, Measurement):
            out.append((n.name, n.col))
        elif isinstance(n, Window):
            out.append((n.measurement, n.col))
    return out


def param_refs(node: Node) -> list[tuple[str, int]]:
    """Every ``param("…")`` name the expression reads, with its column, in reading order."""
    return [(n.name, n.col) for n in _walk(node) if isinstance(n, Param)]


def window_lengths(node: Node) -> dict[str, float]:
    """Measurement → longest window (seconds) any ``*_over`` call needs of it."""
    out: dict[str, float] = {}
    for n in _walk(node):
        if isinstance(n, Window):
            out[n.measurement] = max(out.get(n.measurement, 0.0), n.seconds)
    return out


def _reads_measurement(node: Node) -> bool:
    return any(isinstance(n, Measurement | Window) for n in _walk(node))


def value_node(node: Node) -> Node | None:
    """The operand whose value an alert reports as ``value``.

    It is the measurement side of the first comparison (in reading order) that
    involves a measurement: for ``audio_rms_dbfs < -40 and silence == 1`` it is
    ``audio_rms_dbfs``; for ``avg_over(mer_db, 30s) < 20`` the average. None when the
    expression compares no measurement.
    """
    for n in _walk(node):
        if isinstance(n, Compare):
            if _reads_measurement(n.left):
                return n.left
            if _reads_measurement(n.right):
                return n.right
    return None


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    # -- helpers

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def next(self) -> _Token:
        tok = self.tokens[self.pos]
        if tok.kind is not _Tok.END:
            self.pos += 1
        return tok

    def error(self, message: str, col: int) -> ExprError:
        return ExprError(message, col, self.text)

    def describe(self, tok: _Token) -> str:
        return "end of expression" if tok.kind is _Tok.END else repr(tok.text)

    def is_word(self, tok: _Token, word: str) -> bool:
        return tok.kind is _Tok.IDENT and tok.text == word

    def expect(self, kind: _Tok, what: str) -> _Token:
        tok = self.next()
        if tok.kind is not kind:
            raise self.error(f"expected {what}, found {self.describe(tok)}", tok.col)
        return tok

    def enter(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", col)

    # -- type checks

    def need_condition(self, node: Node, what: str) -> None:
        if type_of(node) is not ValueType.BOOL:
            raise self.error(
                f"{what} needs a condition such as `x == 1` or `x < 3`, not a {type_of(node).value}",
                node.col,
            )

    def need_number(self, node: Node, what: str) -> None:
        t = type_of(node)
        if t in (ValueType.BOOL, ValueType.STRING):
            raise self.error(f"{what} needs a number, not a {t.value}", node.col)

    # -- grammar

    def parse(self) -> Node:
        if len(self.text) > MAX_EXPR_LENGTH:
            raise self.error(f"expression longer than {MAX_EXPR_LENGTH} characters", 1)
        node = self.or_expr()
        tok = self.peek()
        if tok.kind is not _Tok.END:
            hint = ""
            if tok.kind is _Tok.OP and tok.text in _COMPARE_OPS:
                hint = " (comparisons cannot be chained: write `a < b and b < c`)"
            raise self.error(f"unexpected {self.describe(tok)}{hint}", tok.col)
        return node

    def or_expr(self) -> Node:
        left = self.and_expr()
        while self.is_word(self.peek(), "or"):
            tok = self.next()
            right = self.and_expr()
            self.need_condition(left, "`or`")
            self.need_condition(right, "`or`")
            left = Logic("or", left, right, tok.col)
        return left

    def and_expr(self) -> Node:
        left = self.not_expr()
        while self.is_word(self.peek(), "and"):
            tok = self.next()
            right = self.not_expr()
            self.need_condition(left, "`and`")
            self.need_condition(right, "`and`")
            left = Logic("and", left, right, tok.col)
        return left

    def not_expr(self) -> Node:
        tok = self.peek()
        if self.is_word(tok, "not"):
            self.next()
            self.enter(tok.col)
            operand = self.not_expr()
            self.depth -= 1
            self.need_condition(operand, "`not`")
            return Not(operand, tok.col)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.additive()
        tok = self.peek()
        if tok.kind is _Tok.OP and tok.text in _COMPARE_OPS:
            self.next()
            right = self.additive()
            self.check_compare(tok, left, right)
            return Compare(tok.text, left, right, tok.col)
        return left

    def check_compare(self, tok: _Token, left: Node, right: Node) -> None:
        types = (type_of(left), type_of(right))
        for side in (left, right):
            if type_of(side) is ValueType.BOOL:
                raise self.error(
                    f"cannot compare a condition with {tok.text}; combine conditions with and/or/not",
                    side.col,
                )
        if ValueType.STRING in types:
            if tok.text not in ("==", "!="):
                raise self.error(f"strings can only be compared with == and !=, not {tok.text}", tok.col)
            if ValueType.NUMBER in types:
                raise self.error("cannot compare a string with a number", tok.col)

    def additive(self) -> Node:
        left = self.term()
        while (tok := self.peek()).kind is _Tok.OP and tok.text in "+-":
            self.next()
            right = self.term()
            self.need_number(left, f"`{tok.text}`")
            self.need_number(right, f"`{tok.text}`")
            left = Arith(tok.text, left, right, tok.col)
        return left

    def term(self) -> Node:
        left = self.unary()
        while (tok := self.peek()).kind is _Tok.OP and tok.text in "*/":
            self.next()
            right = self.unary()
            self.need_number(left, f"`{tok.text}`")
            self.need_number(right, f"`{tok.text}`")
            left = Arith(tok.text, left, right, tok.col)
        return left

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind is _Tok.OP and tok.text in "+-":
            self.next()
            self.enter(tok.col)
            operand = self.unary()
            self.depth -= 1
            self.need_number(operand, f"unary `{tok.text}`")
            if tok.text == "+":
                return operand
            if isinstance(operand, Number):
                return Number(-operand.value, tok.col)
            return Negate(operand, tok.col)
        return self.primary()

    def primary(self) -> Node:
        tok = self.next()
        if tok.kind is _Tok.NUMBER or tok.kind is _Tok.DURATION:
            assert isinstance(tok.value, float)
            return Number(tok.value, tok.col)
        if tok.kind is _Tok.STRING:
            assert isinstance(tok.value, str)
            return String(tok.value, tok.col)
        if tok.kind is _Tok.LPAREN:
            self.enter(tok.col)
            inner = self.or_expr()
            self.depth -= 1
            self.expect(_Tok.RPAREN, "')'")
            return inner
        if tok.kind is _Tok.IDENT:
            if tok.text in ("true", "false"):
                return Boolean(tok.text == "true", tok.col)
            if tok.text in _KEYWORDS:
                raise self.error(f"expected a value before {tok.text!r}", tok.col)
            if self.peek().kind is _Tok.LPAREN:
                return self.call(tok)
            if tok.text.startswith("__"):
                raise self.error(f"{tok.text!r} is not a measurement name", tok.col)
            return Measurement(tok.text, tok.col)
        raise self.error(f"expected a value, found {self.describe(tok)}", tok.col)

    def call(self, name: _Token) -> Node:
        func = name.text
        if func not in FUNCTIONS:
            raise self.error(f"unknown function {func!r}; functions are {', '.join(FUNCTIONS)}", name.col)
        self.next()  # (
        self.enter(name.col)
        try:
            if func == "param":
                return self.call_param(name)
            if func in WINDOW_FUNCTIONS:
                return self.call_window(name)
            operand = self.or_expr()
            self.expect(_Tok.RPAREN, f"')' after the argument of {func}()")
            if func == "abs":
                self.need_number(operand, "abs()")
                return Abs(operand, name.col)
            return Present(operand, name.col)
        finally:
            self.depth -= 1

    def call_param(self, name: _Token) -> Node:
        tok = self.expect(_Tok.STRING, 'a quoted parameter name, as in param("rf_reference_dbuv")')
        assert isinstance(tok.value, str)
        default: float | str | None = None
        if self.peek().kind is _Tok.COMMA:
            self.next()
            dtok = self.next()
            sign = 1.0
            if dtok.kind is _Tok.OP and dtok.text == "-":
                sign = -1.0
                dtok = self.next()
            if dtok.kind in (_Tok.NUMBER, _Tok.DURATION):
                assert isinstance(dtok.value, float)
                default = sign * dtok.value
            elif dtok.kind is _Tok.STRING and sign > 0:
                assert isinstance(dtok.value, str)
                default = dtok.value
            else:
                raise self.error(
                    f"param() default must be a number or a quoted string, found {self.describe(dtok)}",
                    dtok.col,
                )
        self.expect(_Tok.RPAREN, "')' to close param(")
        return Param(tok.value, default, name.col)

    def call_window(self, name: _Token) -> Node:
        mtok = self.next()
        if mtok.kind is not _Tok.IDENT or mtok.text in _KEYWORDS or mtok.text.startswith("__"):
            raise self.error(
                f"{name.text}() takes a measurement name first, found {self.describe(mtok)}", mtok.col
            )
        if self.peek().kind is _Tok.END:
            raise self.error(
                f"{name.text}() needs a window, as in {name.text}({mtok.text}, 30s); in a YAML "
                "flow mapping {…} quote the whole expression, or the comma ends it",
                self.peek().col,
            )
        self.expect(_Tok.COMMA, f"',' and a window such as 30s after {name.text}({mtok.text}")
        dtok = self.next()
        if dtok.kind is not _Tok.DURATION:
            raise self.error(
                f"{name.text}() needs a window duration such as 30s or 5m, found {self.describe(dtok)}",
                dtok.col,
            )
        assert isinstance(dtok.value, float)
        if dtok.value <= 0:
            raise self.error("the window must be longer than 0s", dtok.col)
        self.expect(_Tok.RPAREN, f"')' to close {name.text}(")
        return Window(name.text, mtok.text, dtok.value, name.col)


_COMPARE_OPS: Final = ("<", "<=", ">", ">=", "==", "!=")


def parse(text: str) -> Node:
    """Parse ``text`` into a type-checked AST; raise :class:`ExprError` if it is not valid."""
    if not isinstance(text, str):
        raise ExprError("an expression must be a string", 1, str(text))
    return _Parser(text).parse()


def parse_condition(text: str) -> Node:
    """Parse ``text`` and require a condition (true/false/unknown), as ``expr`` and ``clear`` are."""
    node = parse(text)
    if type_of(node) is not ValueType.BOOL:
        raise ExprError(
            f"the expression is a {type_of(node).value}, but a condition is needed "
            "(for a 0/1 flag write `flag == 1`)",
            node.col,
            text,
        )
    return node


# --------------------------------------------------------------------------- evaluator


class EvalEnv(Protocol):
    """What an expression reads: columns over the targets being evaluated."""

    @property
    def size(self) -> int:
        """Number of targets (the length of every column)."""
        ...

    def measurement(self, name: str) -> Column:
        """This tick's values of ``name`` (NaN / None = unknown)."""
        ...

    def param(self, name: str, default: float | str | None) -> Column:
        """Configured parameter ``name`` of each target, else ``default`` (None = unknown)."""
        ...

    def window(self, func: str, name: str, seconds: float) -> NDArray[np.float64]:
        """``func`` (a :data:`WINDOW_FUNCTIONS` key) over the last ``seconds`` of ``name``."""
        ...


_NUMERIC_OPS: Final[dict[str, Callable[[NDArray[np.float64], NDArray[np.float64]], NDArray[np.bool_]]]] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
_PY_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _is_number(x: object) -> bool:
    return isinstance(x, int | float | np.floating | np.integer) and not isinstance(x, bool)


def _known(x: object) -> bool:
    if x is None:
        return False
    if isinstance(x, float | np.floating):
        return not math.isnan(x)
    return True


def numeric(col: Column) -> NDArray[np.float64]:
    """``col`` as numbers; strings and None become NaN (unknown)."""
    if col.dtype == np.float64:
        return col  # type: ignore[return-value]
    out = np.full(len(col), np.nan)
    for i, x in enumerate(col):
        if _is_number(x) or isinstance(x, bool):
            out[i] = float(x)
    return out


def _compare(op: str, a: Column, b: Column) -> NDArray[np.float64]:
    if a.dtype == np.float64 and b.dtype == np.float64:
        result = _NUMERIC_OPS[op](a, b).astype(np.float64)  # type: ignore[arg-type]
        result[np.isnan(a) | np.isnan(b)] = np.nan
        return result
    out = np.full(len(a), np.nan)
    fn = _PY_OPS[op]
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if not (_known(x) and _known(y)):
            continue
        if _is_number(x) and _is_number(y):
            out[i] = float(fn(float(x), float(y)))
        elif isinstance(x, str) and isinstance(y, str) and op in ("==", "!="):
            out[i] = float(fn(x, y))
        # a string against a number, or an ordering of strings: unknown
    return out


def _logic(op: str, a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.full(len(a), np.nan)
    if op == "and":
        out[(a == 1.0) & (b == 1.0)] = 1.0
        out[(a == 0.0) | (b == 0.0)] = 0.0
    else:
        out[(a == 0.0) & (b == 0.0)] = 0.0
        out[(a == 1.0) | (b == 1.0)] = 1.0
    return out


def _present(col: Column) -> NDArray[np.float64]:
    if col.dtype == np.float64:
        return (~np.isnan(col)).astype(np.float64)
    return np.array([1.0 if _known(x) else 0.0 for x in col], dtype=np.float64)


def evaluate(node: Node, env: EvalEnv) -> Column:
    """Evaluate ``node`` for every target of ``env`` at once (see the module docstring)."""
    with np.errstate(all="ignore"):
        return _eval(node, env)


def _eval(node: Node, env: EvalEnv) -> Column:
    n = env.size
    if isinstance(node, Number):
        return np.full(n, node.value)
    if isinstance(node, Boolean):
        return np.full(n, 1.0 if node.value else 0.0)
    if isinstance(node, String):
        out = np.empty(n, dtype=object)
        out[:] = node.value
        return out
    if isinstance(node, Measurement):
        return env.measurement(node.name)
    if isinstance(node, Param):
        return env.param(node.name, node.default)
    if isinstance(node, Window):
        return env.window(node.func, node.measurement, node.seconds)
    if isinstance(node, Negate):
        return -numeric(_eval(node.operand, env))
    if isinstance(node, Abs):
        return np.abs(numeric(_eval(node.operand, env)))
    if isinstance(node, Present):
        return _present(_eval(node.operand, env))
    if isinstance(node, Not):
        return 1.0 - numeric(_eval(node.operand, env))
    if isinstance(node, Logic):
        return _logic(node.op, numeric(_eval(node.left, env)), numeric(_eval(node.right, env)))
    if isinstance(node, Compare):
        return _compare(node.op, _eval(node.left, env), _eval(node.right, env))
    # Arith
    a = numeric(_eval(node.left, env))
    b = numeric(_eval(node.right, env))
    if node.op == "+":
        return a + b
    if node.op == "-":
        return a - b
    if node.op == "*":
        return a * b
    result = a / b
    result[b == 0.0] = np.nan  # division by zero: unknown, not infinity
    return result
