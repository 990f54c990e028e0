"""A loaded, compiled rule set: expressions parsed into evaluators, durations
in seconds, names checked against what each source provides. The engine runs
`RuleSet`s; only the loader builds them (via `compile_rule`)."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, get_args

from rules.durations import parse_duration
from rules.expr import (
    Expression,
    ExpressionError,
    any_holds,
    literal_comparisons,
    parse_expression,
    simple_threshold,
    values_of,
)
from rules.model import (
    Aggregate,
    DedupScope,
    KeyField,
    NoticeSpec,
    OutcomeNoticeSpec,
    QuietHours,
    RuleSpec,
    Source,
    TaskSpec,
)
from rules.names import DERIVED, EVENT_FIELDS, PROFILE_NAMES
from rules.templates import TemplateError, check_template
from schemas import BillingEvent, CustomerProfile, NetworkQualityEvent, Severity, UsageEvent

DETECTION_NAMES = frozenset({"rule_id", "tier", "key"})
MAX_REPEAT_AFTER_S = 30 * 86400.0  # how long a subscriber's policy remembers what it was told


def _enum_values() -> dict[str, tuple[str, ...]]:
    """Names whose values are an enumeration, with those values: event
    fields of every source and profile fields (docs/rules.md lists them)."""
    out: dict[str, tuple[str, ...]] = {}
    models: list[tuple[str, type[Any]]] = [
        ("", UsageEvent),
        ("", BillingEvent),
        ("", NetworkQualityEvent),
        ("profile.", CustomerProfile),
    ]
    for prefix, model in models:
        for name, info in model.model_fields.items():
            enum = next(
                (a for a in (info.annotation, *get_args(info.annotation)) if _is_enum(a)), None
            )
            if enum is not None:
                out[prefix + name] = tuple(v.value for v in enum)
    return out


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, StrEnum)


ENUM_VALUES = _enum_values()
# What the texts tied to a task see besides the detection's facts.
TASK_NAMES = frozenset({"task_id", "due_by", "outcome", "note", "escalation_level"})
# in the facts of a detection repeating work reported done that did not fix
# the condition (`task.verify`): that task's id; its notice reads `repeated`
REPEAT_OF = "repeat_of"
# in the facts of an area's resolution for a subscriber whose line was still
# hit when the area cleared: it only withdraws their held opening
STILL_AFFECTED = "still_affected"
# in the facts of a notice about a follow-up task's outcome: its action (the
# notice reads the follow-up's `outcomes` and is labelled `<tier>:<action>:<part>`)
FOLLOW_UP = "follow_up"


@dataclass(frozen=True)
class Persist:
    """How long a condition must hold: `count` consecutive evaluations, or
    `seconds` of event time since it first held."""

    count: int = 1
    seconds: float | None = None

    @classmethod
    def of(cls, value: int | str) -> Persist:
        if isinstance(value, int):
            return cls(count=value)
        return cls(count=1, seconds=parse_duration(value))


@dataclass(frozen=True)
class Measure:
    name: str
    expr: Expression
    aggregate: Aggregate | None


@dataclass(frozen=True)
class Baseline:
    of: Expression
    per_s: float
    lookback_s: float
    min_history_s: float


@dataclass(frozen=True)
class Tier:
    name: str
    index: int
    when: Expression
    persist: Persist
    severity: Severity
    scope: DedupScope
    cooldown_s: float | None
    dedup_by: Expression | None
    notice: NoticeSpec | None
    task: TaskSpec | None
    due_in_s: float | None
    threshold: float | None = None  # the constant of a `name op number` condition
    audience_filter: Expression | None = None  # over the receiving subscriber's profile.*
    quiet_hours: QuietHours = QuietHours.HOLD  # what its notices do inside quiet hours
    repeat_after_s: float | None = None  # `notice.repeat_after`, in seconds
    verify: Persist | None = None  # `task.verify`: how long work reported done is checked
    group_wait_s: float | None = None  # `notice.group_wait`, in seconds


@dataclass(frozen=True)
class Members:
    """An area rule's lines (`MembersSpec`)."""

    within_s: float
    affected: Expression


GROUP_NAMES = frozenset({"members", "affected", "affected_share"})


@dataclass(frozen=True)
class Clear:
    when: Expression
    persist: Persist


@dataclass(frozen=True)
class Rule:
    id: str
    version: str
    spec: RuleSpec
    source: Source
    key: KeyField
    filter: Expression | None
    window: tuple[str, float] | None
    measures: tuple[Measure, ...]
    baseline: Baseline | None
    change: Expression | None
    tiers: tuple[Tier, ...]
    clear: Clear | None
    state_shape: str  # digest of what the rule's state means; a change resets it
    series_id: str  # what it computes before its tiers, with its filter (`_computed_parts`)
    members: Members | None = None  # an area rule's view of its lines
    inhibited_by: tuple[tuple[str, str], ...] = ()  # (rule id, name whose value is its key)

    @cached_property
    def measure_values(self) -> Callable[[Mapping[str, Any]], list[Any]]:
        """The measures' values for one event, in one call (`values_of`)."""
        return values_of([m.expr for m in self.measures])


@dataclass(frozen=True)
class SeriesGroup:
    """The rules of a plan that share a series: `first` computes it for all."""

    first: Rule
    members: tuple[int, ...]  # positions in Plan.rules
    rule_ids: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], list[int]]  # members with a tier or clear holding


@dataclass(frozen=True)
class Plan:
    """What one kind of event is evaluated against: the enabled rules of its
    source in file order, grouped by series."""

    rules: tuple[Rule, ...]
    groups: tuple[SeriesGroup, ...]
    position: Mapping[str, int]  # rule id -> position in `rules`

    @classmethod
    def of(cls, rules: tuple[Rule, ...]) -> Plan:
        by_series: dict[str, list[int]] = {}
        for i, rule in enumerate(rules):
            by_series.setdefault(rule.series_id, []).append(i)
        groups = tuple(
            SeriesGroup(
                first=rules[members[0]],
                members=tuple(members),
                rule_ids=tuple(rules[i].id for i in members),
                check=any_holds([(i, _conditions(rules[i])) for i in members]),
            )
            for members in by_series.values()
        )
        return cls(rules, groups, {r.id: i for i, r in enumerate(rules)})


_EMPTY = Plan((), (), {})


def _conditions(rule: Rule) -> list[Expression]:
    return [t.when for t in rule.tiers] + ([rule.clear.when] if rule.clear else [])


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    origins: dict[str, str] = field(default_factory=dict)  # rule id -> file

    def plan(self, source: Source, key: KeyField = KeyField.SUBSCRIBER_ID) -> Plan:
        """The plan for events of `source` evaluated for a key of `key`: a
        network event is evaluated for its cell, or for its line and again
        for its line's area. Computed once per rule set."""
        return self._plans.get((source, key), _EMPTY)

    @cached_property
    def _plans(self) -> dict[tuple[Source, KeyField], Plan]:
        enabled = [r for r in self.rules if r.spec.enabled]
        return {
            (s, k): Plan.of(tuple(r for r in enabled if r.source is s and r.key is k))
            for s in Source
            for k in KeyField
        }

    @cached_property
    def area_rules(self) -> bool:
        """Whether any enabled rule is keyed by area: only then do line
        events also go to their area."""
        return any(r.key is KeyField.AREA_ID for r in self.rules if r.spec.enabled)

    @cached_property
    def inhibitors(self) -> frozenset[str]:
        """Rules whose open episodes inhibit other rules (`inhibited_by`)."""
        return frozenset(rule for r in self.rules for rule, _ in r.inhibited_by)

    @cached_property
    def series_ids(self) -> frozenset[str]:
        """The series of the enabled rules: a key's state for any other
        series belongs to a rule that changed or went away."""
        return frozenset(r.series_id for r in self.rules if r.spec.enabled)

    @property
    def version(self) -> str:
        digest = hashlib.sha256("|".join(f"{r.id}@{r.version}" for r in self.rules).encode())
        return digest.hexdigest()[:12]

    def rule(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    @cached_property
    def _by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}


# Report(path, column offset within the value or None, message)
Report = Callable[[tuple[str | int, ...], int | None, str], None]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class _Compiler:
    def __init__(self, spec: RuleSpec, report: Report) -> None:
        self.spec = spec
        self.report = report
        src = spec.source
        # Cells and lines have no subscriber profile on their key.
        profile = PROFILE_NAMES if src is not Source.NETWORK_QUALITY else frozenset()
        self.event_names = EVENT_FIELDS[src] | DERIVED[src] | profile
        self.measure_names = frozenset(spec.measures)
        extra: set[str] = set(GROUP_NAMES) if spec.members else set()
        if spec.baseline:
            extra |= {"baseline", "history_days"}
        if spec.change:
            extra |= {"previous", "current", "changed"}
        self.condition_names = self.event_names | self.measure_names | extra
        facts = set(self.measure_names) | {"condition", "cycle"} | DETECTION_NAMES
        if spec.key in (KeyField.SUBSCRIBER_ID, KeyField.LINE_ID):
            facts |= {"subscriber_id"}
        if spec.members:
            facts |= GROUP_NAMES
        if spec.baseline:
            facts |= {"baseline", "history_days"}
        if spec.change:
            facts |= {"previous", "current"}
        if src is Source.USAGE:
            facts |= {"quota", "cycle_used"}
        if spec.window:
            facts |= {"window_start"} | (
                {"window_end"} if spec.window.type == "tumbling" else set()
            )
        self.fact_names = frozenset(facts)

    def expr(
        self, path: tuple[str | int, ...], text: str, known: frozenset[str]
    ) -> Expression | None:
        try:
            parsed = parse_expression(text)
        except ExpressionError as exc:
            self.report(path, exc.column, exc.message)
            return None
        for name, column in parsed.unknown_names(known.__contains__):
            self.report(path, column, f"unknown name {name!r}; " + _suggest(name, known))
        for name, literal, column in literal_comparisons(text):
            allowed = ENUM_VALUES.get(name)
            if allowed is not None and literal not in allowed:
                close = difflib.get_close_matches(literal, allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.report(
                    path,
                    column,
                    f"{name} is never {literal!r}: {hint}its values are {', '.join(allowed)}",
                )
        return parsed

    def template(
        self, path: tuple[str | int, ...], source: str, known: frozenset[str] | None = None
    ) -> None:
        try:
            check_template(source, set(known if known is not None else self.fact_names))
        except TemplateError as exc:
            self.report(path, None, exc.message)

    def texts(
        self, path: tuple[str | int, ...], notice: NoticeSpec, extra: frozenset[str] = frozenset()
    ) -> None:
        """A notice's texts; `extra` are names only this tier has (`threshold`)."""
        known = self.fact_names | extra
        parts = {
            "title": notice.title,
            "message": notice.message,
            "message_simple": notice.message_simple,
            "suggested_action": notice.suggested_action,
        }
        if notice.resolved:
            parts["resolved.title"] = notice.resolved.title
            parts["resolved.message"] = notice.resolved.message
        if notice.repeated:
            parts["repeated.title"] = notice.repeated.title
            parts["repeated.message"] = notice.repeated.message
            parts["repeated.message_simple"] = notice.repeated.message_simple
        for name, text in parts.items():
            if text is None:
                continue
            for lang, source in (("en", text.en), ("zh-CN", text.zh_cn)):
                self.template((*path, *name.split("."), lang), source, known)

    def task_texts(
        self, path: tuple[str | int, ...], task: TaskSpec, extra: frozenset[str] = frozenset()
    ) -> None:
        """The task's summary, and the texts of its escalation and outcomes,
        which also see the task's `due_by`, `outcome` and `note`."""
        self.template((*path, "summary"), task.summary, self.fact_names | extra)
        known = self.fact_names | TASK_NAMES | extra
        notices: dict[tuple[str, ...], OutcomeNoticeSpec | None] = {}
        if task.escalate is not None:
            notices[("escalate", "notice")] = task.escalate.notice
            if task.escalate.task is not None:
                self.template(
                    (*path, "escalate", "task", "summary"), task.escalate.task.summary, known
                )
        if task.outcomes is not None:
            for status in ("done", "failed", "cancelled"):
                notices[("outcomes", status)] = getattr(task.outcomes, status)
        follow_up = task.escalate.task if task.escalate else None
        if follow_up is not None and follow_up.outcomes is not None:
            for status in ("done", "failed", "cancelled"):
                notices[("escalate", "task", "outcomes", status)] = getattr(
                    follow_up.outcomes, status
                )
        for at, notice in notices.items():
            if notice is None:
                continue
            for name in ("title", "message", "message_simple"):
                text = getattr(notice, name)
                if text is None:
                    continue
                for lang, source in (("en", text.en), ("zh-CN", text.zh_cn)):
                    self.template((*path, *at, name, lang), source, known)


def _suggest(name: str, known: frozenset[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"did you mean {close[0]!r}?" if close else f"known names: {', '.join(sorted(known))}"


def compile_rule(spec: RuleSpec, report: Report) -> Rule | None:
    """Compile a validated spec; every problem goes to `report`. Returns None
    when anything was reported."""
    problems: list[str] = []

    def note(path: tuple[str | int, ...], column: int | None, message: str) -> None:
        problems.append(message)
        report(path, column, message)

    c = _Compiler(spec, note)
    event_known = c.event_names
    flt = c.expr(("filter",), spec.filter, event_known) if spec.filter else None
    members = None
    if spec.members:
        affected = c.expr(("members", "affected"), spec.members.affected, event_known)
        if affected:
            members = Members(parse_duration(spec.members.within), affected)
        event_known = event_known | GROUP_NAMES  # measures may read the area's counts
    measures = []
    for name, m in spec.measures.items():
        if spec.window is None and m.aggregate is not None:
            note(
                ("measures", name, "aggregate"),
                None,
                "'aggregate' needs a rule 'window'; remove it or add a window",
            )
        if spec.window is not None and m.aggregate is None:
            note(
                ("measures", name),
                None,
                "rules with a window aggregate every measure; add 'aggregate: sum|count|avg|min|max'",
            )
        expr = c.expr(("measures", name, "expr"), m.expr, event_known)
        if expr:
            measures.append(Measure(name, expr, m.aggregate))
    baseline = None
    if spec.baseline:
        of = c.expr(("baseline", "of"), spec.baseline.of, event_known)
        if of:
            b = spec.baseline
            baseline = Baseline(
                of, parse_duration(b.per), parse_duration(b.lookback), parse_duration(b.min_history)
            )
            if baseline.min_history_s > baseline.lookback_s:
                note(("baseline", "min_history"), None, "min_history cannot exceed lookback")
    change = c.expr(("change", "of"), spec.change.of, event_known) if spec.change else None
    tiers = _compile_tiers(c, spec, note)
    _check_tier_order(spec, note)
    clear = None
    if spec.clear:
        cw = c.expr(("clear", "when"), spec.clear.when, c.condition_names)
        if cw:
            clear = Clear(cw, Persist.of(spec.clear.for_))
    if problems:
        return None
    computed = _computed_parts(spec)
    return Rule(
        state_shape=_digest("|".join([*computed, ",".join(t.name for t in spec.tiers)])),
        series_id=_digest("|".join([*computed, spec.filter or ""])),
        id=spec.id,
        version=_digest(spec.model_dump_json(by_alias=True)),
        spec=spec,
        source=spec.source,
        key=spec.key,
        filter=flt,
        window=(spec.window.type, parse_duration(spec.window.size)) if spec.window else None,
        measures=tuple(measures),
        baseline=baseline,
        change=change,
        tiers=tuple(tiers),
        clear=clear,
        members=members,
        inhibited_by=tuple((i.rule, i.on) for i in spec.inhibited_by),
    )


def _compile_tiers(c: _Compiler, spec: RuleSpec, note: Report) -> list[Tier]:
    """Each tier's condition, texts and task; problems go to `note`."""
    tiers: list[Tier] = []
    for i, t in enumerate(spec.tiers):
        when = c.expr(("tiers", i, "when"), t.when, c.condition_names)
        by = (
            c.expr(("tiers", i, "dedup", "by"), t.dedup.by, c.condition_names)
            if t.dedup.by
            else None
        )
        threshold = simple_threshold(t.when)
        extra = frozenset({"threshold"}) if threshold else frozenset()
        audience_filter = None
        if t.notice:
            c.texts(("tiers", i, "notice"), t.notice, extra)
            if t.notice.audience_filter:
                audience_filter = c.expr(
                    ("tiers", i, "notice", "audience_filter"),
                    t.notice.audience_filter,
                    PROFILE_NAMES,
                )
            if t.notice.audience.value == "home_cell" and spec.key is not KeyField.CELL_ID:
                note(
                    ("tiers", i, "notice", "audience"),
                    None,
                    "audience 'home_cell' needs a rule keyed by cell_id",
                )
            if (t.notice.audience.value == "affected") != (spec.key is KeyField.AREA_ID):
                note(
                    ("tiers", i, "notice", "audience"),
                    None,
                    "an area rule's notices go to 'audience: affected' (the subscribers of its"
                    " affected lines), and only an area rule's do",
                )
        if t.task:
            c.task_texts(("tiers", i, "task"), t.task, extra)
        if t.notice and t.notice.repeated and not (t.task and t.task.verify is not None):
            note(
                ("tiers", i, "notice", "repeated"),
                None,
                "'repeated' is sent when work reported done did not fix the condition:"
                " it needs the tier's task to set 'verify'",
            )
        critical = t.severity is Severity.CRITICAL
        repeat_text = t.notice.repeat_after if t.notice else None
        repeat = parse_duration(repeat_text) if repeat_text else None
        if repeat is not None and repeat > MAX_REPEAT_AFTER_S:
            note(
                ("tiers", i, "notice", "repeat_after"),
                None,
                f"'repeat_after: {repeat_text}' is longer than 30d: a subscriber's notice"
                " memory keeps 30 days",
            )
        wait = t.notice.group_wait if t.notice else None
        if wait is not None and critical:
            note(
                ("tiers", i, "notice", "group_wait"),
                None,
                f"'group_wait: {wait}' holds a notice back; a critical notice goes at once",
            )
        if t.quiet_hours not in (None, QuietHours.HOLD) and not critical:
            note(
                ("tiers", i, "quiet_hours"),
                None,
                f"'quiet_hours: {t.quiet_hours.value}' needs severity critical: a"
                f" {t.severity.value} notice waits for the end of quiet hours",
            )
        if when:
            tiers.append(
                Tier(
                    name=t.name,
                    index=i,
                    when=when,
                    persist=Persist.of(t.for_),
                    severity=t.severity,
                    scope=t.dedup.scope,
                    cooldown_s=parse_duration(t.dedup.cooldown) if t.dedup.cooldown else None,
                    dedup_by=by,
                    notice=t.notice,
                    task=t.task,
                    due_in_s=parse_duration(t.task.due_in) if t.task and t.task.due_in else None,
                    threshold=threshold[2] if threshold else None,
                    audience_filter=audience_filter,
                    quiet_hours=t.quiet_hours or (QuietHours.TEXT if critical else QuietHours.HOLD),
                    repeat_after_s=repeat,
                    group_wait_s=parse_duration(wait) if wait else None,
                    verify=Persist.of(t.task.verify)
                    if t.task and t.task.verify is not None
                    else None,
                )
            )
    return tiers


def _computed_parts(spec: RuleSpec) -> list[str]:
    """What a rule computes before its tiers: the source and key it reads,
    its window, measures, baseline and change tracking. With the filter it
    is the rule's series (`Rule.series_id`): rules with the same series
    compute the same values from the same events, so the engine computes
    them once per event and keeps one window, baseline and change state per
    key for all of them. With the tier names it is the rule's state shape
    (a change resets the rule's state; the filter is left out there, so
    narrowing a filter keeps streaks and episodes)."""
    return [
        spec.source.value,
        spec.key.value,
        spec.window.model_dump_json() if spec.window else "",
        ";".join(f"{n}={m.model_dump_json()}" for n, m in spec.measures.items()),
        spec.baseline.model_dump_json() if spec.baseline else "",
        spec.change.model_dump_json() if spec.change else "",
        spec.members.model_dump_json() if spec.members else "",
    ]


def _check_tier_order(spec: RuleSpec, note: Report) -> None:
    """Tiers go from mild to severe: severities never decrease, and simple
    thresholds on the same measure move in the direction of the comparison."""
    ranks = [t.severity.rank for t in spec.tiers]
    for i in range(1, len(ranks)):
        if ranks[i] < ranks[i - 1]:
            note(
                ("tiers", i, "severity"),
                None,
                f"tiers must be ordered from mild to severe: {spec.tiers[i].severity.value!r} "
                f"after {spec.tiers[i - 1].severity.value!r}",
            )
    simple = [simple_threshold(t.when) for t in spec.tiers]
    for i in range(1, len(simple)):
        prev, cur = simple[i - 1], simple[i]
        if not prev or not cur or prev[0] != cur[0] or prev[1][0] != cur[1][0]:
            continue
        rising = cur[1].startswith(">")
        if (rising and cur[2] < prev[2]) or (not rising and cur[2] > prev[2]):
            note(
                ("tiers", i, "when"),
                None,
                f"tiers out of order: {cur[0]} {cur[1]} {cur[2]:g} is milder than the previous "
                f"tier's {prev[0]} {prev[1]} {prev[2]:g}; list tiers from mild to severe",
            )
