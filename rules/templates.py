"""Notice and task texts: Jinja2 templates in a sandbox, compiled and checked
at load time. Templates see the detection's facts (measures, baseline, change,
event fields) and three filters: `pct` (0.853 -> "85%"), `num` (1234.5 ->
"1,234.5") and `country` ("FR" -> "France"; `country('zh-CN')` -> "法国").

A text is a sentence with values in it, so the language is cut down to
that, and every template is bounded before it ever runs on an event:

- only output, names, constants, filters, tests (`is none`), `if`, and
  arithmetic and comparisons: no loops, macros, calls, attribute access,
  includes or assignments (a `range` nested in a `for` could run for hours);
- `**` and `*` are bounded at run time (`10 ** 10000000` would take the
  worker's CPU for half a minute and then fail to print);
- a rendered text longer than `MAX_TEXT` characters is an error;
- at load, each template is rendered against representative facts, once
  with every value present and once with the values that can be missing
  (`OPTIONAL_NAMES`) set to none; a failure is a located diagnostic, so a
  placeholder like "baseline ?" or a crash never reaches a customer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rules.places import country_name

MAX_TEXT = 2000  # characters of one rendered text; an SMS is 70 Chinese characters
MAX_EXPONENT = 64
MAX_REPEAT = 500
# What may be missing when a text renders: a baseline before `min_history`,
# change values before the first change, a line event without a subscriber,
# and a task's outcome, note and due time.
OPTIONAL_NAMES = frozenset(
    {"baseline", "history_days", "previous", "current", "subscriber_id"}
    | {"outcome", "note", "due_by"}
)
# Names whose representative value is text; every other name is a number.
TEXT_NAMES = frozenset(
    {"key", "cycle", "rule_id", "tier", "condition", "subscriber_id", "task_id"}
    | {"due_by", "outcome", "note", "window_start", "window_end", "resolved_at"}
)
_ALLOWED = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Const,
    nodes.Filter,
    nodes.Test,
    nodes.If,
    nodes.Compare,
    nodes.Operand,
    nodes.CondExpr,
    nodes.BinExpr,
    nodes.UnaryExpr,
    nodes.Concat,
    nodes.Keyword,
)


def _missing(filter_name: str) -> ValueError:
    return ValueError(
        f"'{filter_name}' got no value; a value that can be missing needs its own wording, "
        "e.g. {% if baseline is not none %}...{% else %}...{% endif %}"
    )


def _pct(value: Any, digits: int = 0) -> str:
    if value is None:
        raise _missing("pct")
    return f"{float(value) * 100:.{min(int(digits), 6)}f}%"


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        raise _missing("num")
    text = f"{float(value):,.{min(int(digits), 6)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class _TextSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with `**` and `*` bounded (see the module docstring)."""

    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
            return left**right
        if isinstance(left, str | list | tuple) or isinstance(right, str | list | tuple):
            count = right if isinstance(left, str | list | tuple) else left
            if isinstance(count, int) and count > MAX_REPEAT:
                raise SecurityError(f"repeating a text {count} times is too many")
        return left * right


def _environment() -> ImmutableSandboxedEnvironment:
    env = _TextSandbox(undefined=StrictUndefined, autoescape=False)
    env.filters = {"pct": _pct, "num": _num, "country": country_name}
    env.tests = {k: v for k, v in env.tests.items() if k in ("none", "defined", "number", "string")}
    env.globals = {}
    return env


ENVIRONMENT = _environment()


class TemplateError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def check_template(source: str, known: Iterable[str]) -> None:
    """Raise TemplateError if `source` does not compile, uses more than a
    text needs, reads a name that will not be in the facts, or fails to
    render (or renders too long) with representative facts."""
    names = set(known)
    try:
        ast = ENVIRONMENT.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}", exc.lineno) from exc
    for node in ast.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED):
            raise TemplateError(
                f"templates are texts with values: {type(node).__name__.lower()} is not allowed"
                " (use names, filters, if/else and arithmetic)",
                getattr(node, "lineno", None),
            )
    unknown = sorted(meta.find_undeclared_variables(ast) - names)
    if unknown:
        raise TemplateError(
            f"template uses unknown name(s) {', '.join(unknown)}; available: "
            f"{', '.join(sorted(names))}"
        )
    template = ENVIRONMENT.from_string(source)
    present = {n: "x" if n in TEXT_NAMES else 1.0 for n in names}
    for facts, when in (
        (present, "with representative values"),
        ({**present, **dict.fromkeys(OPTIONAL_NAMES & names)}, "when a value is missing"),
    ):
        try:
            text = str(template.render(facts))
        except Exception as exc:
            raise TemplateError(f"template fails {when}: {exc}") from exc
        if len(text) > MAX_TEXT:
            raise TemplateError(
                f"template renders {len(text):,} characters {when}; the limit is {MAX_TEXT:,}"
            )


class _Compiled(NamedTuple):
    """A template as the renderer keeps it: a text with no placeholders is
    its own output (`constant`); otherwise the template and the names it
    reads, which are all its output depends on."""

    constant: str | None
    template: Any = None
    names: tuple[str, ...] = ()


def _bounded(text: str) -> str:
    """A text as sent (trimmed), or an error past `MAX_TEXT` characters."""
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"text of {len(text):,} characters; the limit is {MAX_TEXT:,}")
    return text


def _compile(source: str) -> _Compiled:
    if "{" not in source:  # no {{ }}, {% %} or {# #}: nothing to render
        return _Compiled(_bounded(source))
    names = tuple(sorted(meta.find_undeclared_variables(ENVIRONMENT.parse(source))))
    return _Compiled(None, ENVIRONMENT.from_string(source), names)


_ABSENT = object()  # a name the facts do not have (not the same text as a None value)


class Renderer:
    """Compiled templates, cached by source text; and recent texts, cached
    by template and the values of the names it reads: a cell's notice to
    its hundreds of home subscribers renders once per language, not once
    per subscriber."""

    MAX_TEXTS = 4096

    def __init__(self) -> None:
        self._cache: dict[str, _Compiled] = {}
        self._texts: dict[Any, str] = {}

    def render(self, source: str, facts: Mapping[str, Any]) -> str:
        compiled = self._cache.get(source)
        if compiled is None:
            compiled = self._cache[source] = _compile(source)
        if compiled.constant is not None:
            return compiled.constant
        try:  # the type too: 1, 1.0 and True are equal keys but render differently
            values = [facts.get(n, _ABSENT) for n in compiled.names]
            key: Any = (source, *values, *map(type, values))
            text = self._texts.get(key)
        except TypeError:  # a value that cannot be a key (a list): render every time
            key, text = None, None
        if text is not None:
            return text
        text = _bounded(str(compiled.template.render(facts)))
        if key is not None:
            if len(self._texts) >= self.MAX_TEXTS:
                self._texts.clear()
            self._texts[key] = text
        return text
