"""Notice and task texts: Jinja2 templates in a sandbox, compiled and checked
at load time. Templates see the detection's facts (measures, baseline, change,
event fields) and three filters: `pct` (0.853 -> "85%"), `num` (1234.5 ->
"1,234.5") and `country` ("FR" -> "France"; `country('zh-CN')` -> "法国")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rules.places import country_name


def _missing(filter_name: str) -> ValueError:
    return ValueError(
        f"'{filter_name}' got no value; a value that can be missing needs its own wording, "
        "e.g. {% if baseline is not none %}...{% else %}...{% endif %}"
    )


def _pct(value: Any, digits: int = 0) -> str:
    if value is None:
        raise _missing("pct")
    return f"{float(value) * 100:.{digits}f}%"


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        raise _missing("num")
    text = f"{float(value):,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    env.filters["country"] = country_name
    return env


ENVIRONMENT = _environment()


class TemplateError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def check_template(source: str, known: set[str]) -> None:
    """Raise TemplateError if `source` does not compile or reads a name
    that will not be in the facts."""
    try:
        ast = ENVIRONMENT.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}", exc.lineno) from exc
    unknown = sorted(meta.find_undeclared_variables(ast) - known)
    if unknown:
        raise TemplateError(
            f"template uses unknown name(s) {', '.join(unknown)}; available: "
            f"{', '.join(sorted(known))}"
        )


class Renderer:
    """Compiled templates, cached by source text."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def render(self, source: str, facts: Mapping[str, Any]) -> str:
        template = self._cache.get(source)
        if template is None:
            template = self._cache[source] = ENVIRONMENT.from_string(source)
        return str(template.render(facts)).strip()
