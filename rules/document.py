"""Strict YAML for rule files: plain data with the position of every value.

PyYAML follows YAML 1.1, where `NO` is false, `1:30` is 90 and a duplicate key
silently wins. Rule authors should never get those surprises, so we compose
the node tree ourselves and resolve scalars strictly: `true`/`false`, `null`,
decimal numbers and strings only; YAML 1.1 booleans, base-60 numbers, anchors
with merge keys and duplicate keys are diagnostics.

A rule file may be hostile (or just wrong), and a worker reloads rule files
while it runs, so parsing is bounded before anything is built: a first pass
over the parser's events (iterative, no recursion) refuses anchors and
aliases (a 530-byte "billion laughs" file would otherwise expand to
gigabytes), nesting deeper than `MAX_DEPTH` and more than `MAX_NODES`
values, each at its line and column, before the node tree is composed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]
MAX_DEPTH = 24  # a rule nests 6 levels at most; expressions live in strings
MAX_NODES = 200_000  # thousands of rules; far beyond any real rule file
MAX_BYTES = 1024 * 1024  # a file of 1,000 rules is about 1 MB

_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_YAML11_BOOL = re.compile(
    r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|True|TRUE|False|FALSE)$"
)
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")
_OCTAL_HEX = re.compile(r"^[-+]?0([0-7_]+|x[0-9a-fA-F_]+|o[0-7_]+|b[01_]+)$")
# Plain scalars YAML 1.1 would silently turn into something else.
_AMBIGUOUS = (
    (_YAML11_BOOL, "(YAML 1.1 reads it as a boolean); write true/false, or quote it for a string"),
    (
        _SEXAGESIMAL,
        "(YAML 1.1 reads it as a base-60 number); quote it, e.g. '22:00', "
        "or use a duration like '90m'",
    ),
    (_OCTAL_HEX, "(octal/hex/binary); write a decimal number or quote it"),
)


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Document:
    """A parsed file: its data, where each path starts, and the problems."""

    data: Any
    marks: dict[Path, Mark] = field(default_factory=dict)
    problems: list[tuple[Mark, Path, str]] = field(default_factory=list)
    plain_scalars: set[Path] = field(default_factory=set)
    value_marks: dict[Path, Mark] = field(default_factory=dict)

    def mark(self, path: Path) -> Mark:
        """The closest known position for a path (walks up to a parent)."""
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, Mark(1, 1))


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _scalar(node: yaml.ScalarNode, doc: Document, path: Path) -> Any:
    value = node.value
    if node.style is not None and node.style != "":  # quoted or block: a string
        return value
    if node.tag not in (
        "tag:yaml.org,2002:str",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:timestamp",
    ):
        doc.problems.append((_mark(node), path, f"YAML tag {node.tag!r} is not allowed"))
        return value
    doc.plain_scalars.add(path)
    if value in ("", "~", "null"):
        return None
    if value in ("true", "false"):
        return value == "true"
    for pattern, advice in _AMBIGUOUS:
        if pattern.match(value):
            doc.problems.append((_mark(node), path, f"{value!r} is ambiguous {advice}"))
            return value
    if _INT.match(value):
        return int(value.replace("_", ""))
    if _FLOAT.match(value):
        return float(value)
    if value.lower() in (".nan", ".inf", "-.inf", "+.inf"):
        doc.problems.append((_mark(node), path, f"{value!r}: infinities and NaN are not allowed"))
        return value
    return value


def _build(node: yaml.Node, doc: Document, path: Path) -> Any:
    doc.marks[path] = doc.value_marks[path] = _mark(node)
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, doc, path)
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, doc, (*path, i)) for i, child in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                doc.problems.append((_mark(key_node), path, "mapping keys must be plain strings"))
                continue
            key = key_node.value
            if key == "<<":
                doc.problems.append(
                    (
                        _mark(key_node),
                        path,
                        "merge keys ('<<') are not supported; write the fields out",
                    )
                )
                continue
            if key in out:
                first = doc.marks.get((*path, key))
                where = f" (first at line {first.line})" if first else ""
                doc.problems.append(
                    (_mark(key_node), (*path, key), f"duplicate key {key!r}{where}")
                )
                continue
            doc.marks[(*path, key)] = _mark(key_node)
            out[key] = _build(value_node, doc, (*path, key))
            doc.marks[(*path, key)] = _mark(key_node)
        return out
    raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover


# The parser's words, and what they usually mean in a rule file.
_HINTS = (
    ("mapping values are not allowed", "a ':' inside an unquoted value; quote the value"),
    ("cannot start any token", "tabs cannot indent YAML; use spaces"),
    ("could not find expected ':'", "a key without its ':', or a line indented wrongly"),
    ("did not find expected key", "this line's indentation does not match the keys above it"),
    ("expected <block end>", "this line's indentation does not match its block"),
    ("unexpected end of stream", "a quote or a bracket is not closed"),
    ("expected ',' or ']'", "a list in [brackets] is not closed"),
    ("expected ',' or '}'", "a mapping in {braces} is not closed"),
    (
        "found unknown escape character",
        "in double quotes a backslash starts an escape; use single quotes",
    ),
)


def _hint(problem: str) -> str:
    return next((f" (hint: {hint})" for words, hint in _HINTS if words in problem), "")


def _event_mark(event: yaml.Event) -> Mark:
    mark = event.start_mark
    return Mark(mark.line + 1, mark.column + 1) if mark is not None else Mark(1, 1)


def _prescan(text: str) -> list[tuple[Mark, Path, str]]:
    """Refuse what would make building the document unbounded (see the
    module docstring). Syntax errors are left to the composer, which
    reports them with their position."""
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                return [
                    (
                        _event_mark(event),
                        (),
                        "anchors and aliases (&name, *name) are not supported in rule files;"
                        " write the values out",
                    )
                ]
            if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return [
                        (
                            _event_mark(event),
                            (),
                            f"nested more than {MAX_DEPTH} levels deep; a rule file needs"
                            " at most 6",
                        )
                    ]
            elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    return [
                        (
                            _event_mark(event),
                            (),
                            f"more than {MAX_NODES:,} values; split the rules into several files",
                        )
                    ]
    except yaml.YAMLError:
        return []
    return []


def parse_document(text: str) -> Document:
    """Parse one YAML document strictly. Syntax errors become a problem at the
    position the YAML parser reports, with `data` set to None; so do the
    bounds of `_prescan`."""
    if len(text) > MAX_BYTES:
        doc = Document(data=None)
        doc.problems.append(
            (
                Mark(1, 1),
                (),
                f"larger than {MAX_BYTES // 1024} KiB; split the rules into several files",
            )
        )
        return doc
    refused = _prescan(text)
    if refused:
        return Document(data=None, problems=refused)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        doc = Document(data=None)
        problem = str(exc.problem or "invalid YAML")
        doc.problems.append((pos, (), f"YAML syntax error: {problem}{_hint(problem)}"))
        return doc
    except yaml.YAMLError as exc:  # never the file's text: it may not be a rule file
        doc = Document(data=None)
        doc.problems.append((Mark(1, 1), (), f"YAML error: {type(exc).__name__}"))
        return doc
    doc = Document(data=None)
    if node is not None:
        doc.data = _build(node, doc, ())
    return doc
