"""Loading rule files into a `RuleSet`, collecting every problem.

`load_rule_set(paths)` reads files and directories (`*.yaml`/`*.yml`, sorted;
a directory's `tests/` folder holds rule tests, not rules), parses them with
strict YAML, validates them against the rule models, compiles expressions and
templates, and checks ids are unique across files. It returns the rule set
only when there is no diagnostic at all: a half-loaded rule set is never run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from rules.diagnostics import RuleDiagnostic
from rules.document import MAX_BYTES, Document, Mark, parse_document
from rules.maintenance import PLANNED_WORK
from rules.model import RuleFile, RuleSpec
from rules.ruleset import Rule, RuleSet, compile_rule


@dataclass(frozen=True)
class LoadResult:
    rule_set: RuleSet | None
    diagnostics: list[RuleDiagnostic]
    files: list[str]

    @property
    def ok(self) -> bool:
        return self.rule_set is not None and not self.diagnostics


def rule_files(paths: Iterable[Path]) -> tuple[list[Path], list[RuleDiagnostic]]:
    files: list[Path] = []
    missing: list[RuleDiagnostic] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            )
        elif path.is_file():
            files.append(path)
        else:
            missing.append(RuleDiagnostic(str(path), 1, 1, "no such file or directory"))
    return files, missing


def load_rule_set(paths: Sequence[Path]) -> LoadResult:
    files, diagnostics = rule_files(paths)
    rules: list[Rule] = []
    origins: dict[str, str] = {}
    first_seen: dict[str, tuple[str, Mark]] = {}
    for file in files:
        file_rules, file_diags = load_file(file)
        diagnostics.extend(file_diags)
        for rule, mark in file_rules:
            if rule.id in first_seen:
                other_file, other = first_seen[rule.id]
                diagnostics.append(
                    RuleDiagnostic(
                        str(file),
                        mark.line,
                        mark.column,
                        f"duplicate rule id; first defined at {other_file}:{other.line}:{other.column}",
                        rule_id=rule.id,
                        field="id",
                    )
                )
                continue
            first_seen[rule.id] = (str(file), mark)
            origins[rule.id] = str(file)
            rules.append(rule)
    diagnostics.extend(_cross_rule_problems(rules, first_seen))
    if not files and not diagnostics:
        diagnostics.append(
            RuleDiagnostic(
                ", ".join(map(str, paths)) or "(none)", 1, 1, "no rule files found (*.yaml, *.yml)"
            )
        )
    rule_set = None if diagnostics else RuleSet(tuple(rules), origins)
    return LoadResult(rule_set, sorted(diagnostics, key=_order), [str(f) for f in files])


RESERVED_IDS = frozenset({PLANNED_WORK})  # the built-in notices of maintenance windows


def _cross_rule_problems(
    rules: list[Rule], first_seen: dict[str, tuple[str, Mark]]
) -> list[RuleDiagnostic]:
    """What only the whole set can tell: an inhibition names a rule keyed by
    its `on`, and no rule takes a reserved id."""
    by_id = {r.id: r for r in rules}
    out = []
    for rule in rules:
        file, mark = first_seen[rule.id]
        if rule.id in RESERVED_IDS:
            out.append(
                RuleDiagnostic(
                    file, mark.line, mark.column, f"rule id {rule.id!r} is reserved", rule.id, "id"
                )
            )
        for i, (source, on) in enumerate(rule.inhibited_by):
            other = by_id.get(source)
            if other is None:
                close = difflib.get_close_matches(source, sorted(by_id), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problem = f"inhibited_by names no rule {source!r}{hint}"
            elif other.key.value != on.removeprefix("profile.").replace("home_cell_id", "cell_id"):
                problem = f"rule {source!r} is keyed by {other.key.value}; {on} cannot name its key"
            else:
                continue
            out.append(
                RuleDiagnostic(
                    file, mark.line, mark.column, problem, rule.id, f"inhibited_by[{i}].rule"
                )
            )
    return out


def _order(d: RuleDiagnostic) -> tuple[str, int, int]:
    return (d.file, d.line, d.column)


def load_file(file: Path) -> tuple[list[tuple[Rule, Mark]], list[RuleDiagnostic]]:
    name = str(file)
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:  # checked before reading: a 50 MB file is never read
            return [], [
                RuleDiagnostic(
                    name,
                    1,
                    1,
                    f"{size:,} bytes, larger than {MAX_BYTES // 1024} KiB;"
                    " split the rules into several files",
                )
            ]
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [], [RuleDiagnostic(name, 1, 1, "cannot read: not UTF-8 text")]
    except OSError as exc:
        return [], [RuleDiagnostic(name, 1, 1, f"cannot read: {exc.strerror or exc}")]
    doc = parse_document(text)
    located = Locator(name, doc)
    for mark, path, message in doc.problems:
        located.add_at(mark, path, message)
    if doc.data is None:
        if not doc.problems:
            located.add_at(Mark(1, 1), (), "empty rule file; expected a top-level 'rules:' list")
        return [], located.diagnostics
    data = doc.data
    if not isinstance(data, dict) or "rules" not in data:
        # Not a rule file (a wrong path, another file): say so without
        # echoing any of its content.
        located.add_at(
            Mark(1, 1), (), "not a rule file: expected a top-level mapping with a 'rules:' list"
        )
        return [], located.diagnostics
    for key in data:
        if key != "rules":
            shown = key if len(key) <= 40 else key[:37] + "..."
            located.add_at(
                doc.mark((key,)),
                (key,),
                f"unknown top-level key {shown!r}; a rule file has only 'rules:'",
            )
    if not isinstance(data.get("rules"), list):
        try:
            RuleFile.model_validate({"rules": data["rules"]})
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                located.add_validation_error(err)
        return [], located.diagnostics
    out: list[tuple[Rule, Mark]] = []
    # Rule by rule, so that one broken rule does not hide the others' problems.
    for i, item in enumerate(data["rules"]):
        try:
            spec = RuleSpec.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                located.add_validation_error({**err, "loc": ("rules", i, *err["loc"])})
            continue
        rule = compile_rule(spec, located.reporter(i, spec))
        if rule is not None:
            out.append((rule, doc.value_marks.get(("rules", i, "id"), doc.mark(("rules", i)))))
    if doc.problems:
        return [], located.diagnostics
    return out, located.diagnostics


class Locator:
    """Turns paths inside the document into `file:line:col` diagnostics."""

    def __init__(self, file: str, doc: Document, root: type[BaseModel] = RuleFile) -> None:
        self.file = file
        self.doc = doc
        self.root = root  # the model of the whole file, for "did you mean" advice
        self.diagnostics: list[RuleDiagnostic] = []
        self._reported: set[tuple[str | int, ...]] = set()

    def rule_id(self, path: tuple[str | int, ...]) -> str | None:
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            rules = self.doc.data.get("rules") if isinstance(self.doc.data, dict) else None
            if (
                isinstance(rules, list)
                and path[1] < len(rules)
                and isinstance(rules[path[1]], dict)
            ):
                rid = rules[path[1]].get("id")
                return rid if isinstance(rid, str) else None
        return None

    @staticmethod
    def field_path(path: tuple[str | int, ...]) -> str | None:
        rest = path[2:] if len(path) >= 2 and path[0] == "rules" else path
        text = ""
        for part in rest:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text or None

    def add_at(self, mark: Mark, path: tuple[str | int, ...], message: str) -> None:
        self._reported.add(path)
        self.diagnostics.append(
            RuleDiagnostic(
                self.file,
                mark.line,
                mark.column,
                message,
                self.rule_id(path),
                self.field_path(path),
            )
        )

    def add_validation_error(self, err: Any) -> None:
        path = self._data_path(err["loc"])
        if err["type"] != "extra_forbidden" and any(
            path[: len(p)] == p for p in self._reported if p
        ):
            return  # already explained by the YAML reader (e.g. an ambiguous 'NO')
        message = _advice(err)
        if err["type"] == "extra_forbidden":
            mark = self.doc.marks.get(path, self.doc.mark(path))
            known = fields_at(self.root, path[:-1])
            if known and path and isinstance(path[-1], str):
                close = difflib.get_close_matches(path[-1], sorted(known), n=1)
                message = (
                    f"unknown field; did you mean {close[0]!r}?"
                    if close
                    else f"unknown field; the fields here are {', '.join(sorted(known))}"
                )
        elif err["type"] == "missing":
            mark = self.doc.mark(path[:-1])
        else:
            mark = self.doc.value_marks.get(path, self.doc.mark(path))
        self.add_at(mark, path, message)

    def _data_path(self, loc: tuple[Any, ...]) -> tuple[str | int, ...]:
        """Keep only the parts of a pydantic `loc` that index the data
        (drops union and validator tags)."""
        node: Any = self.doc.data
        path: list[str | int] = []
        for part in loc:
            if isinstance(node, dict) and isinstance(part, str):
                path.append(part)
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int):
                path.append(part)
                node = node[part] if part < len(node) else None
            elif node is None and isinstance(part, str) and not _is_tag(part):
                path.append(part)
        return tuple(path)

    def reporter(self, index: int, spec: RuleSpec) -> Any:
        base: tuple[str | int, ...] = ("rules", index)

        def report(path: tuple[str | int, ...], column: int | None, message: str) -> None:
            full = (*base, *path)
            if (
                full not in self.doc.value_marks
                and full[:-1] in self.doc.value_marks
                and isinstance(_get(self.doc.data, full[:-1]), str)
            ):
                full = full[:-1]  # a shorthand (`ratio: "expr"`) stands for `{expr: ...}`
            mark = self.doc.value_marks.get(full, self.doc.mark(full))
            if column is not None and full in self.doc.value_marks:
                quoted = full not in self.doc.plain_scalars
                mark = Mark(mark.line, mark.column + column + (1 if quoted else 0))
            self.diagnostics.append(
                RuleDiagnostic(
                    self.file, mark.line, mark.column, message, spec.id, self.field_path(full)
                )
            )

        return report


def _model_in(tp: Any) -> Any:
    """The type inside `Annotated[...]` and `X | None` (a model or a
    container when the union has one)."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            tp = next(
                (m for m in members if isinstance(m, type) and issubclass(m, BaseModel)),
                next((m for m in members if get_origin(m) in (list, dict, tuple)), members[0]),
            )
        else:
            return tp


def fields_at(root: type[BaseModel], path: tuple[str | int, ...]) -> set[str] | None:
    """The field names (as written in YAML: aliases) of the model at `path`
    in a file of `root`, or None when it is not a model."""
    tp: Any = root
    for part in path:
        tp = _model_in(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if part in (n, f.alias)), None)
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) in (list, tuple) and isinstance(part, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp = _model_in(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {f.alias or n for n, f in tp.model_fields.items()}
    return None


def _get(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _is_tag(part: str) -> bool:
    return (
        "[" in part or part in ("str", "int", "float", "bool", "dict", "list") or part[:1].isupper()
    )


def _advice(err: Any) -> str:
    kind: str = err["type"]
    msg: str = err["msg"]
    if kind == "extra_forbidden":
        return "unknown field; check the spelling (see docs/rules.md for the fields)"
    if kind == "missing":
        return f"missing required field {err['loc'][-1]!r}"
    if kind == "string_pattern_mismatch" and "[a-z0-9]+(-" in str(err.get("ctx", {})):
        return "must be kebab-case (lowercase letters, digits and '-'), e.g. 'data-usage'"
    if kind == "string_pattern_mismatch":
        return "must be lowercase letters, digits and '_', starting with a letter"
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    return msg
