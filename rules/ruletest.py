"""Declarative rule tests (`forewarn rules test`), after `promtool test rules`.

A test file names the rule files it tests and lists test cases; each case
feeds profiles and input events (with their event times) through the same
`Session` the replay and the worker use, and states the exact notices and
tasks it expects. Every actual output must be matched by one expectation and
every expectation by one output; the order is free. A failure prints what is
missing, what is unexpected, and for a missing output the field differences
from its closest candidate. The run also reports which rule tiers no test
made fire (coverage).

    rule_files: [..]                      # relative to this file
    tests:
      - name: 80% reminder goes by SMS
        start: "2026-11-20T10:00:00+08:00" # `at:` offsets count from here
        defaults:
          usage: {subscriber_id: s1, service: data, cycle_id: "2026-11", volume: 10}
        events:
          - profile: {subscriber_id: s1, plan: {data_quota_mb: 1000}}
          - usage: {cycle_used: 810}
            at: 5m
        expect:
          - notice: {rule: data-usage, tier: 80pct, subscriber: s1, channel: sms,
                     deliver_after: null, message: ["81%"]}
        suppressed:                       # optional: reasons that must appear
          - {rule: data-usage, tier: 80pct, reason: duplicate}

Two more inputs drive a task's life: `task_update:` is a work system's
report on the open task of a rule's tier for a target (`follow_up: true`
picks the task its escalation opened), and `tick: {}` lets time pass to
`at:` without an event (as the live worker's clock does), so promises fall
due. Coverage counts tiers that fired and, for every tier with a task, the
lifecycle transitions its task can take (opened, escalated, closed by
feedback or by clearing, repeated when its work is verified).

The test file itself is read with the strict YAML reader and validated with
`extra="forbid"` models, so a typo in a test is a located diagnostic too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from rules.diagnostics import RuleDiagnostic
from rules.document import parse_document
from rules.durations import Duration, parse_duration
from rules.engine import InputEvent
from rules.loader import Locator, load_rule_set
from rules.ruleset import RuleSet
from rules.session import Session
from rules.tasks import Transition, is_follow_up
from schemas import (
    BillingEvent,
    CustomerNotice,
    CustomerProfile,
    FeedbackStatus,
    InterventionTask,
    MaintenanceWindow,
    NetworkQualityEvent,
    TaskChange,
    TaskStatus,
    TaskTarget,
    TaskUpdate,
    UsageEvent,
)

KINDS: dict[str, type[BaseModel]] = {
    "usage": UsageEvent,
    "billing": BillingEvent,
    "network": NetworkQualityEvent,
}
Fragments = Annotated[list[str], Field(min_length=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fragments(value: object) -> object:
    return [value] if isinstance(value, str) else value


class NoticeExpectation(_Spec):
    """Fields left out are not checked; `deliver_after: null` checks there is none."""

    rule: str
    tier: str
    subscriber: str
    channel: str | None = None
    severity: str | None = None
    language: str | None = None
    category: str | None = None
    deliver_after: AwareDatetime | None = None
    title: Fragments | None = None
    message: Fragments | None = None
    suggested_action: Fragments | None = None

    @model_validator(mode="before")
    @classmethod
    def _texts(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {
                k: _fragments(v) if k in ("title", "message", "suggested_action") else v
                for k, v in data.items()
            }
        return data


class TaskExpectation(_Spec):
    rule: str
    tier: str
    target: str = Field(pattern=r"^(subscriber|cell|broadband_line|area):.+$")
    status: TaskStatus = TaskStatus.OPEN
    change: TaskChange | None = None
    escalation_level: int | None = None
    follow_up: bool | None = None
    queue: str | None = None
    action: str | None = None
    priority: str | None = None
    due_by: AwareDatetime | None = None
    summary: Fragments | None = None
    note: Fragments | None = None
    affected_subscribers: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _texts(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: _fragments(v) if k in ("summary", "note") else v for k, v in data.items()}
        return data


class Expectation(_Spec):
    notice: NoticeExpectation | None = None
    task: TaskExpectation | None = None

    @model_validator(mode="after")
    def _one(self) -> Expectation:
        if (self.notice is None) == (self.task is None):
            raise ValueError("each expectation is exactly one of 'notice:' or 'task:'")
        return self


class SuppressionExpectation(_Spec):
    rule: str
    tier: str | None = None
    reason: str


class TaskUpdateSpec(_Spec):
    """A report on the open task of `rule`/`tier` for `target`."""

    rule: str
    tier: str
    target: str = Field(pattern=r"^(subscriber|cell|broadband_line|area):.+$")
    status: FeedbackStatus
    follow_up: bool = False
    outcome: str | None = None
    note: str | None = None
    reported_by: str = "rule-test"


class TickSpec(_Spec):
    """Time passes to `at:` with no event."""


_INPUT_KINDS = (
    "usage",
    "billing",
    "network",
    "profile",
    "delete_profile",
    "task_update",
    "tick",
    "maintenance",
)


class InputSpec(_Spec):
    """One input: exactly one of usage/billing/network/profile/delete_profile/
    task_update/tick."""

    usage: dict[str, Any] | None = None
    billing: dict[str, Any] | None = None
    network: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    delete_profile: str | None = None
    task_update: TaskUpdateSpec | None = None
    tick: TickSpec | None = None
    maintenance: dict[str, Any] | None = Field(
        default=None,
        description="A planned-work window, as on `maintenance-windows`; `planned_at`"
        " defaults to the input's time and `planned_by` to rule-test.",
    )
    at: Duration | None = None

    @model_validator(mode="after")
    def _one(self) -> InputSpec:
        given = [k for k in _INPUT_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "each input is exactly one of "
                + ", ".join(f"'{k}:'" for k in _INPUT_KINDS)
                + f" (got {', '.join(given) or 'none'})"
            )
        return self


class DefaultsSpec(_Spec):
    """Fields merged under every input of that kind in a case."""

    usage: dict[str, Any] = {}
    billing: dict[str, Any] = {}
    network: dict[str, Any] = {}


class CaseSpec(_Spec):
    name: str = Field(min_length=1)
    start: AwareDatetime | None = None
    defaults: DefaultsSpec = DefaultsSpec()
    events: list[InputSpec] = Field(min_length=1)
    expect: list[Expectation] = []
    suppressed: list[SuppressionExpectation] = []


class TestFileSpec(_Spec):
    rule_files: list[str] = Field(min_length=1)
    tests: list[CaseSpec] = Field(min_length=1)


@dataclass
class CaseResult:
    file: str
    line: int
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class TestRun:
    cases: list[CaseResult] = field(default_factory=list)
    diagnostics: list[RuleDiagnostic] = field(default_factory=list)
    tiers: set[tuple[str, str]] = field(default_factory=set)  # every (rule, tier) loaded
    exercised: set[tuple[str, str]] = field(default_factory=set)
    # (rule, transition) a loaded rule's tasks can take, and those a test made happen
    transitions: set[tuple[str, str]] = field(default_factory=set)
    transitioned: set[tuple[str, str]] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.diagnostics and all(c.ok for c in self.cases)

    @property
    def uncovered(self) -> list[tuple[str, str]]:
        return sorted(self.tiers - self.exercised)

    @property
    def uncovered_transitions(self) -> list[tuple[str, str]]:
        return sorted(self.transitions - self.transitioned)


def possible_transitions(rules: RuleSet) -> set[tuple[str, str]]:
    """The lifecycle transitions each rule's tasks can take."""
    out: set[tuple[str, str]] = set()
    for rule in rules.rules:
        for tier in rule.tiers:
            task = tier.task
            if task is None:
                continue
            out.add((rule.id, Transition.OPENED.value))
            if task.due_in:
                out.add((rule.id, Transition.ESCALATED.value))
            if task.closing.value == "feedback":
                out.add((rule.id, Transition.CLOSED_BY_FEEDBACK.value))
                if task.verify is not None:
                    out.add((rule.id, Transition.REPEATED.value))
            elif task.resolve:
                out.add((rule.id, Transition.CLOSED_BY_CLEARING.value))
            if rule.inhibited_by:
                out.add((rule.id, Transition.LINKED.value))
            if any(t.task is not None for t in rule.tiers[: tier.index]):
                out.add((rule.id, Transition.SUPERSEDED.value))
            follow_up = task.escalate.task if task.escalate else None
            if task.guard is not None or (follow_up is not None and follow_up.guard is not None):
                out.add((rule.id, Transition.HELD.value))
                out.add((rule.id, Transition.RELEASED.value))
    return out


def run_test_files(files: list[Path]) -> TestRun:
    run = TestRun()
    for file in files:
        _run_file(file, run)
    return run


def _run_file(file: Path, run: TestRun) -> None:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        run.diagnostics.append(RuleDiagnostic(str(file), 1, 1, f"cannot read: {exc}"))
        return
    doc = parse_document(text)
    located = Locator(str(file), doc, TestFileSpec)
    for mark, path, message in doc.problems:
        located.add_at(mark, path, message)
    spec: TestFileSpec | None = None
    if not doc.problems:
        try:
            spec = TestFileSpec.model_validate(doc.data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                located.add_validation_error(err)
    if spec is None:
        run.diagnostics.extend(located.diagnostics)
        return
    loaded = load_rule_set([file.parent / p for p in spec.rule_files])
    if loaded.rule_set is None:
        run.diagnostics.extend(loaded.diagnostics)
        return
    rules = loaded.rule_set
    run.tiers.update((r.id, t.name) for r in rules.rules for t in r.tiers)
    run.transitions.update(possible_transitions(rules))
    for i, case in enumerate(spec.tests):
        line = doc.mark(("tests", i)).line
        events = _inputs(case, i, located)
        if events is None:
            continue
        run.cases.append(_run_case(str(file), line, case, events, rules, run))
    run.diagnostics.extend(located.diagnostics)


Input = (
    tuple[Literal["event"], InputEvent]
    | tuple[Literal["profile"], str, CustomerProfile | None]
    | tuple[Literal["update"], TaskUpdateSpec, datetime | None]
    | tuple[Literal["tick"], datetime]
    | tuple[Literal["window"], MaintenanceWindow]
)


def _inputs(case: CaseSpec, index: int, located: Locator) -> list[Input] | None:
    """Validate a case's inputs exactly as the worker would (JSON mode), with
    defaults merged in, event ids and times filled; problems are located."""
    out: list[Input] = []
    ok = True
    for j, item in enumerate(case.events):
        where: tuple[str | int, ...] = ("tests", index, "events", j)
        if item.delete_profile is not None:
            out.append(("profile", item.delete_profile, None))
            continue
        when = (
            case.start + timedelta(seconds=parse_duration(item.at) if item.at else 0.0)
            if case.start is not None
            else None
        )
        if item.task_update is not None:
            out.append(("update", item.task_update, when))
            continue
        if item.tick is not None:
            if when is None:
                ok = False
                located.add_at(
                    located.doc.mark(where),
                    (*where, "tick"),
                    "a tick needs the case's 'start' and an 'at:'",
                )
                continue
            out.append(("tick", when))
            continue
        kind = next(
            k
            for k in ("usage", "billing", "network", "profile", "maintenance")
            if getattr(item, k) is not None
        )
        value = dict(getattr(item, kind))
        model: type[BaseModel] = CustomerProfile
        if kind == "maintenance":
            model = MaintenanceWindow
            value.setdefault("planned_by", "rule-test")
            if when is not None:
                value.setdefault("planned_at", when.isoformat())
        elif kind != "profile":
            model = KINDS[kind]
            value = {**getattr(case.defaults, kind), **value}
            value.setdefault("event_id", f"{kind}-{j + 1}")
            if "event_time" not in value and case.start is not None:
                offset = parse_duration(item.at) if item.at else 0.0
                value["event_time"] = (case.start + timedelta(seconds=offset)).isoformat()
        try:
            parsed = model.model_validate_json(json.dumps(value))
        except ValidationError as exc:
            ok = False
            for err in exc.errors(include_url=False):
                located.add_validation_error({**err, "loc": (*where, kind, *err["loc"])})
            continue
        if isinstance(parsed, CustomerProfile):
            out.append(("profile", parsed.subscriber_id, parsed))
        elif isinstance(parsed, MaintenanceWindow):
            out.append(("window", parsed))
        else:
            assert isinstance(parsed, UsageEvent | BillingEvent | NetworkQualityEvent)
            out.append(("event", parsed))
    return out if ok else None


def _run_case(
    file: str,
    line: int,
    case: CaseSpec,
    inputs: list[Input],
    rules: RuleSet,
    run: TestRun,
) -> CaseResult:
    session = Session(rules, created_at=lambda e: e.event_time)
    outputs: list[CustomerNotice | InterventionTask] = []
    suppressed: set[tuple[str, str | None, str]] = set()
    result = CaseResult(file, line, case.name)
    latest: datetime | None = None
    for item in inputs:
        if item[0] == "profile":
            session.put_profile(item[1], item[2])
            continue
        if item[0] == "window":
            step = session.window(item[1].target.id, item[1])
        elif item[0] == "tick":
            session.at = item[1]
            step = session.tick(item[1])
        elif item[0] == "update":
            update = _task_update(item[1], item[2] or latest, outputs)
            if isinstance(update, str):
                result.problems.append(update)
                continue
            session.at = update.at
            step = session.task_update(update)
            if step.rejected is not None:
                result.problems.append(f"task update rejected: {step.rejected.value}")
        else:
            latest = item[1].event_time
            step = session.process(item[1])
        outputs.extend(step.outputs)
        run.exercised.update(step.fired)
        run.transitioned.update((r, t.value) for r, t in step.transitions)
        suppressed.update((d.rule_id, d.tier, d.reason.value) for d in step.decisions)
        suppressed.update((r, t, reason.value) for r, t, reason in step.policy)
        result.problems.extend(f"rule {r} failed: {m}" for r, m in step.failures)
    result.problems.extend(_compare(case.expect, outputs))
    for want in case.suppressed:
        if not any(
            r == want.rule and reason == want.reason and (want.tier is None or t == want.tier)
            for r, t, reason in suppressed
        ):
            seen = sorted(f"{r}/{t}: {reason}" for r, t, reason in suppressed) or ["none"]
            result.problems.append(
                f"expected suppression {want.rule}/{want.tier or '*'}: {want.reason}; "
                f"suppressions seen: {', '.join(seen)}"
            )
    return result


def _task_update(
    spec: TaskUpdateSpec, at: datetime | None, outputs: list[CustomerNotice | InterventionTask]
) -> TaskUpdate | str:
    """The update for the task `spec` names, found among the outputs so far."""
    kind, target = spec.target.split(":", 1)
    task = next(
        (
            o
            for o in reversed(outputs)
            if isinstance(o, InterventionTask)
            and o.rule_id == spec.rule
            and o.tier == spec.tier
            and f"{o.target.type.value}:{o.target.id}" == spec.target
            and is_follow_up(o) == spec.follow_up
        ),
        None,
    )
    if task is None:
        return f"task_update: no task {spec.rule}/{spec.tier} for {spec.target} was sent before it"
    if at is None:
        return "task_update: needs an 'at:' (or an event before it)"
    return TaskUpdate(
        task_id=task.task_id,
        status=spec.status,
        at=at,
        target=TaskTarget.model_validate({"type": kind, "id": target}),
        outcome=spec.outcome,
        note=spec.note,
        reported_by=spec.reported_by,
    )


def _compare(
    expected: list[Expectation], outputs: list[CustomerNotice | InterventionTask]
) -> list[str]:
    unmatched = list(outputs)
    missing: list[Expectation] = []
    for want in expected:
        hit = next((o for o in unmatched if not _differences(want, o)), None)
        if hit is None:
            missing.append(want)
        else:
            unmatched.remove(hit)
    problems: list[str] = []
    for want in missing:
        problems.append(f"missing    {_describe_expectation(want)}")
        closest = _closest(want, unmatched)
        if closest is not None:
            diffs = "; ".join(_differences(want, closest))
            problems.append(f"  closest: {describe(closest)}\n    differs: {diffs}")
    problems.extend(f"unexpected {describe(o)}" for o in unmatched)
    return problems


def _closest(
    want: Expectation, candidates: list[CustomerNotice | InterventionTask]
) -> CustomerNotice | InterventionTask | None:
    """The output of the same kind that differs from `want` in fewest fields."""
    kind = CustomerNotice if want.notice is not None else InterventionTask
    same_kind = [o for o in candidates if isinstance(o, kind)]
    return min(same_kind, key=lambda o: len(_differences(want, o)), default=None)


def _check(name: str, want: object, got: object) -> list[str]:
    return [] if want == got else [f"{name}: expected {want!r}, got {got!r}"]


def _check_text(name: str, fragments: list[str] | None, text: str | None) -> list[str]:
    if fragments is None:
        return []
    absent = [f for f in fragments if f not in (text or "")]
    return [f"{name}: {absent!r} not in {text!r}"] if absent else []


def _differences(want: Expectation, got: CustomerNotice | InterventionTask) -> list[str]:
    if want.notice is not None:
        if not isinstance(got, CustomerNotice):
            return ["kind: expected a notice, got a task"]
        return _notice_differences(want.notice, got)
    assert want.task is not None
    if not isinstance(got, InterventionTask):
        return ["kind: expected a task, got a notice"]
    return _task_differences(want.task, got)


def _notice_differences(w: NoticeExpectation, n: CustomerNotice) -> list[str]:
    diffs = _check("rule", w.rule, n.rule_id) + _check("tier", w.tier, n.tier)
    diffs += _check("subscriber", w.subscriber, n.subscriber_id)
    for name in ("channel", "severity", "language", "category"):
        want = getattr(w, name)
        if want is not None:
            diffs += _check(
                name, want, str(getattr(n, name).value if name != "category" else n.category)
            )
    if "deliver_after" in w.model_fields_set:
        diffs += _check("deliver_after", _instant(w.deliver_after), _instant(n.deliver_after))
    diffs += _check_text("title", w.title, n.title)
    diffs += _check_text("message", w.message, n.message)
    diffs += _check_text("suggested_action", w.suggested_action, n.suggested_action)
    return diffs


def _task_differences(w: TaskExpectation, t: InterventionTask) -> list[str]:
    diffs = _check("rule", w.rule, t.rule_id) + _check("tier", w.tier, t.tier)
    diffs += _check("target", w.target, f"{t.target.type.value}:{t.target.id}")
    diffs += _check("status", w.status.value, t.status.value)
    if w.change is not None:
        diffs += _check("change", w.change.value, t.change.value)
    if w.escalation_level is not None:
        diffs += _check("escalation_level", w.escalation_level, t.escalation_level)
    if w.follow_up is not None:
        diffs += _check("follow_up", w.follow_up, is_follow_up(t))
    for name in ("queue", "action", "priority"):
        want = getattr(w, name)
        if want is not None:
            diffs += _check(name, want, getattr(t, name).value)
    if w.due_by is not None:
        diffs += _check("due_by", _instant(w.due_by), _instant(t.due_by))
    if w.affected_subscribers is not None:
        diffs += _check(
            "affected_subscribers",
            sorted(w.affected_subscribers),
            sorted(t.affected_subscribers or []),
        )
    diffs += _check_text("summary", w.summary, t.summary)
    diffs += _check_text("note", w.note, t.note)
    return diffs


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone().isoformat()


def _describe_expectation(want: Expectation) -> str:
    body = want.notice or want.task
    assert body is not None
    fields = body.model_dump(mode="json", exclude_unset=True)
    kind = "notice" if want.notice else "task"
    head = f"{kind} {fields.pop('rule')}/{fields.pop('tier')}"
    who = fields.pop("subscriber", None) or fields.pop("target", None)
    rest = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f"{head} -> {who}" + (f" ({rest})" if rest else "")


def describe(output: CustomerNotice | InterventionTask) -> str:
    """One line a rule author can read: kind, rule/tier, recipient, key fields."""
    if isinstance(output, CustomerNotice):
        after = (
            f", deliver_after={output.deliver_after.isoformat()}" if output.deliver_after else ""
        )
        return (
            f"notice {output.rule_id}/{output.tier} -> {output.subscriber_id} "
            f"({output.severity.value}, {output.channel.value}, {output.language.value}{after}): "
            f"{output.message!r}"
        )
    return (
        f"task {output.rule_id}/{output.tier} -> {output.target.type.value}:{output.target.id} "
        f"({output.change.value}, {output.status.value}, level {output.escalation_level}, "
        f"{'follow-up, ' if is_follow_up(output) else ''}{output.queue.value}, {output.action.value}, "
        f"{output.priority.value}, due_by={_instant_text(output.due_by)}): {output.summary!r}"
    )


def _instant_text(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "none"
