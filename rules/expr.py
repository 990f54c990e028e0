"""The expression language of rules: `cycle_used / quota >= 0.8`,
`loss >= 2 or latency >= 150`, `baseline == null or total >= 5 * baseline`.

Parsed and checked at load time (unknown names and syntax errors are
diagnostics with a column), then compiled into Python closures: no `eval`.

Grammar (lowest precedence first): `or`, `and`, `not`, comparisons
(`== != < <= > >=`), `+ -`, `* / %`, unary `-`, atoms: numbers, 'strings',
`true`/`false`/`null`, dotted names (`profile.plan.data_quota_mb`), calls to
`min`, `max`, `abs`, `coalesce`, and parentheses.

Null semantics: arithmetic with null is null, ordering comparisons with null
are false, `== null` tests for it, and a null condition counts as false.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|%|\(|\)|,)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "true", "false", "null"}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": lambda *a: None if any(x is None for x in a) else min(a),
    "max": lambda *a: None if any(x is None for x in a) else max(a),
    "abs": lambda a: None if a is None else abs(a),
    "coalesce": lambda *a: next((x for x in a if x is not None), None),
}


class ExpressionError(ValueError):
    """A syntax error at `column` (0-based) of the expression text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass(frozen=True)
class Token:
    kind: str  # num | str | name | op | kw | end
    text: str
    column: int


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its source, the names it reads (with columns),
    and the compiled evaluator."""

    source: str
    names: tuple[tuple[str, int], ...]
    evaluate: Compiled

    def unknown_names(self, known: Callable[[str], bool]) -> list[tuple[str, int]]:
        return [(n, col) for n, col in self.names if not known(n)]


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            col = len(text) - len(text[pos:].lstrip())
            raise ExpressionError(f"unexpected character {text[col]!r}", col)
        kind = m.lastgroup or "op"
        value = m.group(kind)
        column = m.start(kind)
        if kind == "name" and value in _KEYWORDS:
            kind = "kw"
        tokens.append(Token(kind, value, column))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _null_safe(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        try:
            return fn(a, b)
        except (ZeroDivisionError, TypeError):
            return None

    return apply


def _ordering(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        try:
            return fn(a, b)
        except TypeError:
            return False

    return apply


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _null_safe(operator.add),
    "-": _null_safe(operator.sub),
    "*": _null_safe(operator.mul),
    "/": _null_safe(operator.truediv),
    "%": _null_safe(operator.mod),
    "==": operator.eq,
    "!=": operator.ne,
    "<": _ordering(operator.lt),
    "<=": _ordering(operator.le),
    ">": _ordering(operator.gt),
    ">=": _ordering(operator.ge),
}
_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "==": 4,
    "!=": 4,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.names: list[tuple[str, int]] = []

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            found = tok.text or "end of expression"
            raise ExpressionError(f"expected {text!r}, found {found!r}", tok.column)

    def parse(self) -> Compiled:
        fn = self.expression(0)
        tok = self.peek()
        if tok.kind != "end":
            raise ExpressionError(f"unexpected {tok.text!r}", tok.column)
        return fn

    def expression(self, min_prec: int) -> Compiled:
        left = self.unary()
        while True:
            tok = self.peek()
            prec = _PRECEDENCE.get(tok.text) if tok.kind in ("op", "kw") else None
            if prec is None or prec < min_prec:
                return left
            self.take()
            # comparisons do not chain: a < b < c is an error, not a surprise
            right = self.expression(prec + 1)
            left = self.combine(tok, left, right)
            if prec == 4 and _PRECEDENCE.get(self.peek().text) == 4:
                raise ExpressionError(
                    "comparisons cannot be chained; use 'and'", self.peek().column
                )

    @staticmethod
    def combine(tok: Token, left: Compiled, right: Compiled) -> Compiled:
        if tok.text == "and":
            return lambda env: bool(left(env)) and bool(right(env))
        if tok.text == "or":
            return lambda env: bool(left(env)) or bool(right(env))
        fn = _BINARY[tok.text]
        return lambda env: fn(left(env), right(env))

    def unary(self) -> Compiled:
        tok = self.peek()
        if tok.text == "not" and tok.kind == "kw":
            self.take()
            inner = self.expression(3)
            return lambda env: not inner(env)
        if tok.text == "-" and tok.kind == "op":
            self.take()
            operand = self.unary()
            return lambda env: None if (v := operand(env)) is None else -v
        return self.atom()

    def atom(self) -> Compiled:
        tok = self.take()
        if tok.kind == "num":
            num: float = float(tok.text)
            return lambda env: num
        if tok.kind == "str":
            text = re.sub(r"\\(.)", r"\1", tok.text[1:-1])
            return lambda env: text
        if tok.kind == "kw" and tok.text in ("true", "false", "null"):
            const = {"true": True, "false": False, "null": None}[tok.text]
            return lambda env: const
        if tok.kind == "op" and tok.text == "(":
            inner = self.expression(0)
            self.expect(")")
            return inner
        if tok.kind == "name":
            if self.peek().text == "(":
                return self.call(tok)
            self.names.append((tok.text, tok.column))
            name = tok.text
            return lambda env: env.get(name)
        found = tok.text or "end of expression"
        raise ExpressionError(f"expected a value, found {found!r}", tok.column)

    def call(self, tok: Token) -> Compiled:
        fn = FUNCTIONS.get(tok.text)
        if fn is None:
            raise ExpressionError(
                f"unknown function {tok.text!r}; known: {', '.join(sorted(FUNCTIONS))}", tok.column
            )
        self.expect("(")
        args: list[Compiled] = []
        if self.peek().text != ")":
            args.append(self.expression(0))
            while self.peek().text == ",":
                self.take()
                args.append(self.expression(0))
        self.expect(")")
        return lambda env: fn(*(a(env) for a in args))


def parse_expression(text: str) -> Expression:
    """Parse `text`; raises ExpressionError with the column of the problem."""
    parser = _Parser(text)
    fn = parser.parse()
    return Expression(source=text, names=tuple(parser.names), evaluate=fn)


def simple_threshold(text: str) -> tuple[str, str, float] | None:
    """`name op number` as (name, op, number), else None: used to check that
    tier thresholds are in order."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*", text)
    return (m.group(1), m.group(2), float(m.group(3))) if m else None
