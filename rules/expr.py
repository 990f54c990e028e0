"""The expression language of rules: `cycle_used / quota >= 0.8`,
`loss >= 2 or latency >= 150`, `baseline == null or total >= 5 * baseline`.

Parsed and checked at load time (unknown names and syntax errors are
diagnostics with a column), then compiled to one Python function per
expression. The generated source is built from the parser's own output:
names and literals are constants of the function, operators are the
null-safe helpers below, so rule text is never executed as Python.

Grammar (lowest precedence first): `or`, `and`, `not`, comparisons
(`== != < <= > >=`), `+ -`, `* / %`, unary `-`, atoms: numbers, 'strings',
`true`/`false`/`null`, dotted names (`profile.plan.data_quota_mb`), calls to
`min`, `max`, `abs`, `coalesce`, and parentheses.

Null semantics: arithmetic with null is null, ordering comparisons with null
are false, `== null` tests for it, and a null condition counts as false.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
    code: str = field(repr=False)  # Python source over `e`, see `any_holds`
    constants: Mapping[str, Any] = field(repr=False)  # the names `code` refers to

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


def _negate(a: Any) -> Any:
    return None if a is None else -a


def number(v: Any) -> Any:
    """A measure's value: numbers as floats (bools and the rest as they are)."""
    t = type(v)
    return float(v) if t is int or (t is not bool and isinstance(v, int | float)) else v


# operator -> (helper name in generated code, helper) ; == and != are Python's own
_BINARY: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "+": ("_add", _null_safe(operator.add)),
    "-": ("_sub", _null_safe(operator.sub)),
    "*": ("_mul", _null_safe(operator.mul)),
    "/": ("_div", _null_safe(operator.truediv)),
    "%": ("_mod", _null_safe(operator.mod)),
    "<": ("_lt", _ordering(operator.lt)),
    "<=": ("_le", _ordering(operator.le)),
    ">": ("_gt", _ordering(operator.gt)),
    ">=": ("_ge", _ordering(operator.ge)),
}
_HELPERS: dict[str, Any] = {
    **{name: fn for name, fn in _BINARY.values()},
    **{f"_fn_{name}": fn for name, fn in FUNCTIONS.items()},
    "_neg": _negate,
    "_num": number,
    "__builtins__": {"bool": bool},
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


_CONSTANT_NUMBERS = itertools.count()
# Parentheses, unary operators and operands nest at most this deep: a limit
# of the language, not of the interpreter running the parser (compiled, the
# parser would recurse far past Python's recursion limit).
MAX_NESTING = 64


class _Parser:
    """Recursive descent over the tokens, producing Python source for one
    function of `e` (the names in scope). Rule text never reaches the Python
    compiler: names become `e.get(...)` with the name as a constant, and
    every literal is a constant of the generated function."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.names: list[tuple[str, int]] = []
        self.constants: dict[str, Any] = {}
        self.depth = 0

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

    def constant(self, value: Any) -> str:
        # unique across expressions, so that `any_holds` can join them
        name = f"_k{next(_CONSTANT_NUMBERS)}"
        self.constants[name] = value
        return name

    def parse(self) -> str:
        code = self.expression(0)
        tok = self.peek()
        if tok.kind != "end":
            raise ExpressionError(f"unexpected {tok.text!r}", tok.column)
        return code

    def expression(self, min_prec: int) -> str:
        return self.nested(lambda: self._expression(min_prec))

    def nested(self, parse: Callable[[], str]) -> str:
        """`parse` one level deeper: at most `MAX_NESTING` levels."""
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise ExpressionError(
                    f"expression too deeply nested (over {MAX_NESTING} levels)", self.peek().column
                )
            return parse()
        finally:
            self.depth -= 1

    def _expression(self, min_prec: int) -> str:
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
    def combine(tok: Token, left: str, right: str) -> str:
        if tok.text in ("and", "or"):
            return f"(bool({left}) {tok.text} bool({right}))"
        if tok.text in ("==", "!="):
            return f"({left} {tok.text} {right})"
        return f"{_BINARY[tok.text][0]}({left}, {right})"

    def unary(self) -> str:
        tok = self.peek()
        if tok.text == "not" and tok.kind == "kw":
            self.take()
            return f"(not {self.expression(3)})"
        if tok.text == "-" and tok.kind == "op":
            self.take()
            return f"_neg({self.nested(self.unary)})"
        return self.atom()

    def atom(self) -> str:
        tok = self.take()
        if tok.kind == "num":
            return self.constant(float(tok.text))
        if tok.kind == "str":
            return self.constant(re.sub(r"\\(.)", r"\1", tok.text[1:-1]))
        if tok.kind == "kw" and tok.text in ("true", "false", "null"):
            return {"true": "True", "false": "False", "null": "None"}[tok.text]
        if tok.kind == "op" and tok.text == "(":
            inner = self.expression(0)
            self.expect(")")
            return inner
        if tok.kind == "name":
            if self.peek().text == "(":
                return self.call(tok)
            self.names.append((tok.text, tok.column))
            return f"e.get({self.constant(tok.text)})"
        found = tok.text or "end of expression"
        raise ExpressionError(f"expected a value, found {found!r}", tok.column)

    def call(self, tok: Token) -> str:
        if tok.text not in FUNCTIONS:
            raise ExpressionError(
                f"unknown function {tok.text!r}; known: {', '.join(sorted(FUNCTIONS))}", tok.column
            )
        self.expect("(")
        args: list[str] = []
        if self.peek().text != ")":
            args.append(self.expression(0))
            while self.peek().text == ",":
                self.take()
                args.append(self.expression(0))
        self.expect(")")
        return f"_fn_{tok.text}({', '.join(args)})"


def parse_expression(text: str) -> Expression:
    """Parse `text`; raises ExpressionError with the column of the problem."""
    parser = _Parser(text)
    try:
        code = parser.parse()
    except RecursionError as exc:
        raise ExpressionError("expression too deeply nested", 0) from exc
    try:
        fn = _compile(f"lambda e: {code}", parser.constants)
    except (SyntaxError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"expression too deeply nested ({type(exc).__name__})", 0) from exc
    return Expression(text, tuple(parser.names), fn, code, parser.constants)


def any_holds(groups: Sequence[tuple[int, Sequence[Expression]]]) -> Callable[[Env], list[int]]:
    """One function for many conditions over the same names: the labels of
    the groups `(label, expressions)` in which at least one expression
    holds. Rules sharing a series check all their tiers this way, with no
    Python call per rule."""
    lines = ["def check(e):", "    hot = []"]
    constants: dict[str, Any] = {}
    for label, exprs in groups:
        if exprs:
            lines.append(f"    if {' or '.join(f'bool({x.code})' for x in exprs)}:")
            lines.append(f"        hot.append({int(label)})")
        for x in exprs:
            constants.update(x.constants)
    lines.append("    return hot")
    namespace = {**_HELPERS, **constants}
    exec(compile("\n".join(lines), "<rule conditions>", "exec"), namespace)
    check: Callable[[Env], list[int]] = namespace["check"]
    return check


def values_of(exprs: Sequence[Expression]) -> Callable[[Env], list[Any]]:
    """One function for a rule's measures: their values as a list, numbers
    as floats (`number`), with one Python call for all of them."""
    constants: dict[str, Any] = {}
    for x in exprs:
        constants.update(x.constants)
    items = ", ".join(f"_num({x.code})" for x in exprs)
    return _compile(f"lambda e: [{items}]", constants)


def _compile(source: str, constants: Mapping[str, Any]) -> Compiled:
    fn: Compiled = eval(compile(source, "<rule expression>", "eval"), {**_HELPERS, **constants})
    return fn


def literal_comparisons(text: str) -> list[tuple[str, str, int]]:
    """`name == 'text'` and `name != 'text'` (either way round) in an
    expression, as (name, text, column of the text): so a comparison with a
    value the name can never take is a diagnostic, not a silent never."""
    try:
        tokens = tokenize(text)
    except ExpressionError:
        return []
    found = []
    for a, op, b in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if op.kind != "op" or op.text not in ("==", "!="):
            continue
        if a.kind == "name" and b.kind == "str":
            found.append((a.text, b.text[1:-1], b.column))
        elif a.kind == "str" and b.kind == "name":
            found.append((b.text, a.text[1:-1], a.column))
    return found


def simple_threshold(text: str) -> tuple[str, str, float] | None:
    """`name op number` as (name, op, number), else None: used to check that
    tier thresholds are in order."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*", text)
    return (m.group(1), m.group(2), float(m.group(3))) if m else None
