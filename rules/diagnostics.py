"""Diagnostics: one located problem in a rule file, worded as advice.

Loading collects all of them instead of stopping at the first; each prints as
`file:line:col: rule "id": field.path: message` (Prometheus' rulefmt style).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class RuleDiagnostic:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    message: str
    rule_id: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}:{self.column}"]
        if self.rule_id:
            parts.append(f'rule "{self.rule_id}"')
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class RuleLoadError(Exception):
    """Raised by callers that need a rule set and got diagnostics instead."""

    def __init__(self, diagnostics: list[RuleDiagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))
