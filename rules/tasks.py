"""The life of an intervention task, kept in its key's state: opened by a
detection, worked (feedback from `task-updates`), escalated when its promise
(`due_by`) is missed or the work failed, told about its condition clearing,
and closed, by feedback (`done`/`cancelled`) or, for tasks that close on
clearing, by the condition clearing. Pure: every function takes the key's
task table (`{task_id: entry}`) and returns what to send; time comes from
the caller (an event's time, a feedback's `at`, or the partition clock).

An entry holds what every later output of the task needs, so an update can
be written even after the rule was edited or removed:

    {"rule", "tier", "det", "follow": 0|1, "parent", "status", "rev", "level",
     "due": epoch|None, "closes", "queue", "priority", "action", "summary",
     "facts", "target": [type, id], "sub": subscriber|None, "cell": cell|None,
     "opened": iso, "sources", "version", "cleared": bool}

Every output of a task has the same `task_id`, a `revision` one higher than
the last, and an `update_id` derived from both: a replay that repeats a
step repeats its ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rules.durations import parse_duration
from rules.guard import Budget
from rules.identity import stable_id, task_id
from rules.model import EscalationSpec, FollowUpTaskSpec, GuardSpec, TaskSpec
from rules.ruleset import FOLLOW_UP, RuleSet, Tier
from rules.templates import Renderer
from schemas import (
    ClosesOn,
    FeedbackStatus,
    InterventionTask,
    NoticeIntent,
    NoticePart,
    Priority,
    Queue,
    Severity,
    TargetType,
    TaskAction,
    TaskChange,
    TaskStatus,
    TaskTarget,
    TaskUpdate,
)

RECENTLY_CLOSED = 32  # closed task ids remembered, so late feedback is not "unknown"


@dataclass(init=False, slots=True)
class Book:
    """A key's tasks: the open ones by id, the ids of the last closed, and
    the work reported done while its condition still held (`Done`, by
    detection), until the condition clears or comes back; `budget` is the
    partition's guard budget (`rules.guard`), when the caller keeps one."""

    open: dict[str, dict[str, Any]]
    closed: list[str]
    budget: Budget | None
    done: dict[str, dict[str, Any]]

    def __init__(  # written out: native when compiled (dev/compile.py); one per step
        self,
        open: dict[str, dict[str, Any]] | None = None,
        closed: list[str] | None = None,
        budget: Budget | None = None,
        done: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.open = {} if open is None else open
        self.closed = [] if closed is None else closed
        self.budget = budget
        self.done = {} if done is None else done

    @classmethod
    def of(cls, state: Mapping[str, Any], budget: Budget | None = None) -> Book:
        tasks, closed, done = state.get("tasks"), state.get("closed"), state.get("done")
        return cls(
            dict(tasks) if tasks else {},
            list(closed) if closed else [],
            budget,
            dict(done) if done else {},
        )

    def store(self, state: dict[str, Any]) -> None:
        for name, value in (("tasks", self.open), ("closed", self.closed), ("done", self.done)):
            if value:
                state[name] = value
            elif name in state:
                del state[name]


class Transition(StrEnum):
    """What happened to a task; values are metric label values and what
    `forewarn rules test` counts as lifecycle coverage."""

    OPENED = "opened"
    ESCALATED = "escalated"
    FEEDBACK = "feedback"
    CONDITION_CLEARED = "condition_cleared"
    CONDITION_RETURNED = "condition_returned"
    CLOSED_BY_FEEDBACK = "closed_by_feedback"
    CLOSED_BY_CLEARING = "closed_by_clearing"
    HELD = "held"  # opened past its guard budget
    REPEATED = "repeated"  # work reported done did not hold: a repeat task opened
    SUPERSEDED = "superseded"  # a more severe tier's task took over this one
    RELEASED = "released"  # held work approved by an operator
    LINKED = "linked"  # covered by an area incident's task
    WIDENED = "widened"  # an area incident hit more lines


class FeedbackReason(StrEnum):
    """Why a feedback record changed nothing; metric label values."""

    UNKNOWN_TASK = "unknown_task"  # never known here: a dead letter
    TASK_CLOSED = "task_closed"  # already closed: redelivered or late
    NO_CHANGE = "no_change"  # the same status again
    HELD = "held"  # held work takes only `approved` or `cancelled`


@dataclass(init=False, slots=True)
class TaskEffects:
    tasks: list[InterventionTask]
    intents: list[NoticeIntent]
    transitions: list[tuple[str, Transition]]  # (rule id, what)
    rejected: FeedbackReason | None

    def __init__(self) -> None:  # written out: native when compiled (dev/compile.py)
        self.tasks = []
        self.intents = []
        self.transitions = []
        self.rejected = None


@dataclass(frozen=True)
class Opening:
    """A detection that opens a task (from `rules.engine`)."""

    rule_id: str
    rule_version: str
    tier: Tier
    detection: str
    key: str
    target: TargetType
    subscriber: str | None  # whom task notices go to, or None with `cell`
    cell: str | None
    severity: Severity
    category: str
    facts: Mapping[str, Any]
    summary: str
    at: datetime
    sources: tuple[str, ...]
    lines: tuple[str, ...] = ()  # an area task: the hit lines
    subscribers: tuple[str, ...] = ()  # an area task: their subscribers
    repeat_of: str | None = None  # the task reported done whose work did not hold
    milder: tuple[str, ...] = ()  # the rule's tiers below this one: their tasks it takes over


_PRIORITY_UP = {Priority.P4: Priority.P3, Priority.P3: Priority.P2, Priority.P2: Priority.P1}


def _epoch(value: datetime) -> float:
    return value.timestamp()


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def next_due(tasks: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The earliest promise still to be checked: open tasks not escalated yet."""
    dues = [e["due"] for e in tasks.values() if e.get("due") is not None and not e["level"]]
    return min(dues) if dues else None


def open_task(
    book: Book,
    opening: Opening,
    created_at: datetime,
    out: TaskEffects,
) -> str | None:
    """Open the tier's task, or, when the same rule and tier already has one
    open for this key (the condition came back before the work was done),
    tell that task instead of opening a second one. Past the tier's guard
    budget the task opens `held`; its id is returned so the caller can hold
    the detection's notice with it (`hold_notice`)."""
    tasks = book.open
    spec = opening.tier.task
    assert spec is not None
    for tid, entry in tasks.items():
        if (
            entry["rule"] == opening.rule_id
            and entry["tier"] == opening.tier.name
            and not entry["follow"]
        ):
            if entry.get("cleared"):
                back = tasks[tid] = {**entry, "cleared": False}
                _emit(
                    tid,
                    back,
                    book,
                    TaskChange.CONDITION_RETURNED,
                    opening.at,
                    created_at,
                    out,
                    note="the condition is back; the task stays open",
                )
                out.transitions.append((opening.rule_id, Transition.CONDITION_RETURNED))
            return None
    tid = task_id(opening.detection)
    due = _epoch(opening.at) + opening.tier.due_in_s if opening.tier.due_in_s else None
    held = _over_budget(book, spec.guard, f"{opening.rule_id}/{opening.tier.name}", opening.at)
    tasks[tid] = {
        "rule": opening.rule_id,
        "tier": opening.tier.name,
        "det": opening.detection,
        "follow": 0,
        "parent": opening.repeat_of,
        "status": TaskStatus.OPEN.value,
        "rev": 0,
        "level": 0,
        "due": due,
        "closes": spec.closing.value,
        "queue": spec.queue.value,
        "priority": spec.priority.value,
        "action": spec.action.value,
        "summary": opening.summary,
        "facts": dict(opening.facts),
        "target": [opening.target.value, opening.key],
        "sub": opening.subscriber,
        "cell": opening.cell,
        "sev": opening.severity.value,
        "cat": opening.category,
        "opened": opening.at.isoformat(),
        "sources": list(opening.sources),
        "version": opening.rule_version,
        "cleared": False,
    }
    if opening.lines:
        tasks[tid]["lines"] = list(opening.lines)
        tasks[tid]["subs"] = list(opening.subscribers)
    if held:
        _hold(tasks[tid], opening.tier.due_in_s)
        _emit(tid, tasks[tid], book, TaskChange.HELD, opening.at, created_at, out, note=_HELD)
        out.transitions.append((opening.rule_id, Transition.HELD))
        return tid
    note = None
    if opening.repeat_of is not None:
        note = (
            f"repeat: task {opening.repeat_of} was reported done, but the condition"
            " still holds; the work did not fix it"
        )
        out.transitions.append((opening.rule_id, Transition.REPEATED))
    _emit(tid, tasks[tid], book, TaskChange.OPENED, opening.at, created_at, out, note=note)
    out.transitions.append((opening.rule_id, Transition.OPENED))
    _take_over(book, tid, opening, created_at, out)
    return None


def _take_over(
    book: Book, tid: str, opening: Opening, created_at: datetime, out: TaskEffects
) -> None:
    """A more severe tier's task, now open, takes over the open tasks of the
    rule's milder tiers on the key: the fraud desk suspending a line makes
    the billing-risk call about the same charges moot, a repair makes an
    investigation moot. They close (`superseded`, status `cancelled`),
    naming the task that took over; a report on them afterwards changes
    nothing, so the customer hears no outcome of work that was not done.
    Follow-up tasks (compensation) are their own work and stay."""
    milder = [
        (k, e)
        for k, e in book.open.items()
        if e["rule"] == opening.rule_id and e["tier"] in opening.milder and not e["follow"]
    ]
    for k, entry in milder:
        closed = {**entry, "status": TaskStatus.CANCELLED.value}
        note = f"superseded by task {tid} ({opening.tier.name}), which takes over this work"
        _emit(k, closed, book, TaskChange.SUPERSEDED, opening.at, created_at, out, note=note)
        _close(book, k)
        out.transitions.append((opening.rule_id, Transition.SUPERSEDED))


_HELD = "held: over the rule's guard budget; approve or cancel it (forewarn held)"


def _over_budget(book: Book, guard: GuardSpec | None, name: str, at: datetime) -> bool:
    budget = book.budget
    return guard is not None and budget is not None and not budget.take(name, guard, _epoch(at))


def _hold(entry: dict[str, Any], due_in: float | None) -> None:
    """A task past its budget: no promise runs until it is released, and
    then it runs for `due_in` from the release."""
    entry["status"] = TaskStatus.HELD.value
    entry["due_in"] = due_in
    entry["due"] = None


def hold_notice(book: Book, tid: str, intent: NoticeIntent) -> None:
    """A held task's customer notice waits with it."""
    entry = book.open[tid]
    entry["waiting"] = [*entry.get("waiting", []), intent.model_dump(mode="json")]


def _release(
    book: Book,
    tid: str,
    entry: dict[str, Any],
    update: TaskUpdate,
    created_at: datetime,
    out: TaskEffects,
) -> None:
    """An operator approved held work: it opens now, its promise counts
    from now, and its waiting notices go out, dated now."""
    due_in = entry.pop("due_in", None)
    waiting = entry.pop("waiting", [])
    entry.update(
        status=TaskStatus.OPEN.value,
        due=_epoch(update.at) + due_in if due_in is not None else None,
    )
    book.open[tid] = entry
    note = update.note or f"released by {update.reported_by}"
    _emit(tid, entry, book, TaskChange.RELEASED, update.at, created_at, out, note=note)
    out.transitions.append((entry["rule"], Transition.RELEASED))
    for data in waiting:
        out.intents.append(NoticeIntent.model_validate({**data, "event_time": update.at}))


def condition_cleared(
    book: Book, detection: str, at: datetime, created_at: datetime, out: TaskEffects
) -> None:
    """The detection's condition cleared: a task that closes on clearing is
    resolved; one that closes on feedback is told and stays open."""
    tasks = book.open
    tid = task_id(detection)
    entry = tasks.get(tid)
    if entry is None or entry.get("cleared"):
        return
    if entry["closes"] == ClosesOn.CLEARING.value:
        entry = {**entry, "status": TaskStatus.RESOLVED.value}
        _emit(tid, entry, book, TaskChange.CLOSED_BY_CLEARING, at, created_at, out)
        _close(book, tid)
        out.transitions.append((entry["rule"], Transition.CLOSED_BY_CLEARING))
        return
    tasks[tid] = {**entry, "cleared": True}
    _emit(
        tid,
        tasks[tid],
        book,
        TaskChange.CONDITION_CLEARED,
        at,
        created_at,
        out,
        note="the condition has cleared; close the task when the work is done",
    )
    out.transitions.append((entry["rule"], Transition.CONDITION_CLEARED))


def close_silently(book: Book, detection: str) -> None:
    """A clearing task whose rule says not to report the clearing."""
    tasks = book.open
    tid = task_id(detection)
    entry = tasks.get(tid)
    if entry is not None and entry["closes"] == ClosesOn.CLEARING.value:
        _close(book, tid)


def feedback(
    book: Book,
    update: TaskUpdate,
    rules: RuleSet,
    created_at: datetime,
    renderer: Renderer,
    out: TaskEffects,
) -> None:
    """Apply one report from a work system."""
    tasks = book.open
    tid = update.task_id
    entry = tasks.get(tid)
    if entry is None:
        out.rejected = (
            FeedbackReason.TASK_CLOSED if tid in book.closed else FeedbackReason.UNKNOWN_TASK
        )
        return
    dropped = entry["status"] == TaskStatus.HELD.value  # the customer never heard of it
    if dropped:
        if update.status is FeedbackStatus.APPROVED:
            _release(book, tid, dict(entry), update, created_at, out)
            return
        if update.status is not FeedbackStatus.CANCELLED:
            out.rejected = FeedbackReason.HELD
            return
    elif update.status is FeedbackStatus.APPROVED:
        out.rejected = FeedbackReason.NO_CHANGE  # only held work is approved
        return
    status = TaskStatus(update.status.value)
    if entry["status"] == status.value:
        out.rejected = FeedbackReason.NO_CHANGE
        return
    entry = tasks[tid] = {**entry, "status": status.value}
    note = update.note or (f"outcome: {update.outcome}" if update.outcome else None)
    _emit(tid, entry, book, TaskChange.FEEDBACK, update.at, created_at, out, note=note)
    part = {
        FeedbackStatus.DONE: NoticePart.DONE,
        FeedbackStatus.FAILED: NoticePart.FAILED,
        FeedbackStatus.CANCELLED: NoticePart.CANCELLED,
    }.get(update.status)
    spec = _task_spec(rules, entry)
    outcomes = spec.outcomes if spec is not None else None
    told = (
        not dropped  # held work dropped: no outcome to tell
        and part is not None
        and outcomes is not None
        and getattr(outcomes, part.value) is not None
    )
    if told and part is not None:
        extra = {"outcome": update.outcome, "note": update.note}
        _notice(entry, tid, part, update.at, out, extra)
    verified = isinstance(spec, TaskSpec) and spec.verify is not None
    still_holds = not (dropped or entry["follow"] or entry["cleared"])
    if status is TaskStatus.DONE and still_holds and (told or verified):
        _reported_done(book, tid, entry, update.at)
    if status.closed:
        _close(book, tid)
        out.transitions.append((entry["rule"], Transition.CLOSED_BY_FEEDBACK))
        return
    out.transitions.append((entry["rule"], Transition.FEEDBACK))
    if status is TaskStatus.FAILED and not entry["level"]:
        _escalate(book, tid, update.at, rules, created_at, renderer, out)


def _reported_done(book: Book, tid: str, entry: Mapping[str, Any], at: datetime) -> None:
    """Work reported done while its condition still holds, and either
    verified (`task.verify`) or told to the customer (`outcomes.done`): the
    rule's next evaluations tell whether it held, and its condition clearing
    later is not news (`rules.engine`)."""
    done = {k: v for k, v in book.done.items() if k != entry["det"]}
    done[entry["det"]] = {"task": tid, "at": _epoch(at)}
    book.done = dict(list(done.items())[-RECENTLY_CLOSED:])


def advance(
    book: Book,
    now: float,
    rules: RuleSet,
    created_at: datetime | None,
    renderer: Renderer,
    out: TaskEffects,
) -> None:
    """Escalate every open task whose promise is due at `now` (epoch
    seconds), in order of due time. Each escalation is dated at its due
    time, whatever the clock that noticed it, so its outputs are the same
    whenever it is noticed."""
    due = sorted(
        (e["due"], tid)
        for tid, e in book.open.items()
        if e.get("due") is not None and not e["level"] and e["due"] <= now
    )
    for at, tid in due:
        when = _time(at)
        _escalate(book, tid, when, rules, created_at or when, renderer, out)


def _escalate(
    book: Book,
    tid: str,
    at: datetime,
    rules: RuleSet,
    created_at: datetime,
    renderer: Renderer,
    out: TaskEffects,
) -> None:
    tasks = book.open
    entry = tasks[tid]
    spec = _task_spec(rules, entry)
    plan: EscalationSpec | None = spec.escalate if isinstance(spec, TaskSpec) else None
    priority = plan.priority if plan else _PRIORITY_UP.get(Priority(entry["priority"]), Priority.P1)
    queue = plan.queue if plan and plan.queue else Queue(entry["queue"])
    new_due = _epoch(at) + parse_duration(plan.due_in) if plan and plan.due_in else None
    entry = tasks[tid] = {
        **entry,
        "level": entry["level"] + 1,
        "priority": priority.value,
        "queue": queue.value,
        "due": new_due,
    }
    missed = "reported failed" if entry["status"] == TaskStatus.FAILED.value else "not done in time"
    _emit(tid, entry, book, TaskChange.ESCALATED, at, created_at, out, note=f"escalated: {missed}")
    out.transitions.append((entry["rule"], Transition.ESCALATED))
    if plan is None:
        return
    if plan.notice is not None:
        _notice(entry, tid, NoticePart.ESCALATED, at, out, {})
    if plan.task is not None:
        _follow_up(book, tid, entry, plan.task, at, created_at, renderer, out)


def _follow_up(
    book: Book,
    parent: str,
    entry: Mapping[str, Any],
    spec: FollowUpTaskSpec,
    at: datetime,
    created_at: datetime,
    renderer: Renderer,
    out: TaskEffects,
) -> None:
    tasks = book.open
    det = stable_id("follow-up", parent)
    tid = task_id(det)
    if tid in tasks:
        return
    due = _epoch(at) + parse_duration(spec.due_in)
    held = _over_budget(book, spec.guard, f"{entry['rule']}/{entry['tier']}/follow-up", at)
    facts = {**entry["facts"], "parent_task_id": parent}
    scope = {
        **facts,
        **_task_names(entry, parent, {}),
        "rule_id": entry["rule"],
        "tier": entry["tier"],
    }
    tasks[tid] = {
        **entry,
        "det": det,
        "follow": 1,
        "parent": parent,
        "status": TaskStatus.OPEN.value,
        "rev": 0,
        "level": 0,
        "due": due,
        "closes": ClosesOn.FEEDBACK.value,
        "queue": spec.queue.value,
        "priority": spec.priority.value,
        "action": spec.action.value,
        "summary": renderer.render(spec.summary, scope),
        "facts": facts,
        "opened": at.isoformat(),
        "cleared": False,
    }
    if held:
        _hold(tasks[tid], parse_duration(spec.due_in))
        _emit(tid, tasks[tid], book, TaskChange.HELD, at, created_at, out, note=_HELD)
        out.transitions.append((entry["rule"], Transition.HELD))
        return
    _emit(tid, tasks[tid], book, TaskChange.OPENED, at, created_at, out)
    out.transitions.append((entry["rule"], Transition.OPENED))


def _task_spec(rules: RuleSet, entry: Mapping[str, Any]) -> TaskSpec | FollowUpTaskSpec | None:
    rule = rules.rule(entry["rule"])
    tier = next((t for t in rule.tiers if t.name == entry["tier"]), None) if rule else None
    if tier is None or tier.task is None:
        return None
    if entry["follow"]:
        return tier.task.escalate.task if tier.task.escalate else None
    return tier.task


def _task_names(entry: Mapping[str, Any], tid: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    due = entry.get("due")
    return {
        "task_id": tid,
        "due_by": _time(due).isoformat() if due is not None else None,
        "escalation_level": entry["level"],
        "outcome": extra.get("outcome"),
        "note": extra.get("note"),
    }


def _notice(
    entry: Mapping[str, Any],
    tid: str,
    part: NoticePart,
    at: datetime,
    out: TaskEffects,
    extra: Mapping[str, Any],
) -> None:
    """A notice tied to the task, for the tier's audience. The policy finds
    its text (`escalate.notice`, `outcomes.<status>`) and drops it when the
    tier defines none."""
    whom = entry.get("subs") or ([entry["sub"]] if entry["sub"] or entry["cell"] else [])
    facts = {**entry["facts"], **_task_names(entry, tid, extra)}
    if entry["follow"]:  # the follow-up's own texts (`escalate.task.outcomes`)
        facts[FOLLOW_UP] = entry["action"]
    out.intents.extend(
        NoticeIntent(
            detection_id=stable_id("task-notice", tid, part.value),
            subscriber_id=sub,
            cell_id=entry["cell"],
            rule_id=entry["rule"],
            rule_version=entry["version"],
            tier=entry["tier"],
            severity=Severity(entry["sev"]),
            category=entry["cat"],
            part=part,
            opening_id=entry["det"],
            facts=facts,
            event_time=at,
            source_event_ids=tuple(entry["sources"]),
        )
        for sub in whom
    )


def _emit(
    tid: str,
    entry: dict[str, Any],
    book: Book,
    change: TaskChange,
    at: datetime,
    created_at: datetime,
    out: TaskEffects,
    note: str | None = None,
) -> None:
    """One output for the task's change; bumps its revision in `tasks`."""
    rev = entry["rev"] + 1
    entry["rev"] = rev
    if tid in book.open:
        book.open[tid] = entry
    due = entry.get("due")
    out.tasks.append(
        InterventionTask(
            task_id=tid,
            update_id=stable_id("task-update", tid, str(rev)),
            revision=rev,
            change=change,
            correlation_id=entry["det"],
            rule_id=entry["rule"],
            tier=entry["tier"],
            status=TaskStatus(entry["status"]),
            closes_on=ClosesOn(entry["closes"]),
            escalation_level=entry["level"],
            parent_task_id=entry["parent"],
            queue=Queue(entry["queue"]),
            action=TaskAction(entry["action"]),
            priority=Priority(entry["priority"]),
            target=TaskTarget(type=TargetType(entry["target"][0]), id=entry["target"][1]),
            due_by=_time(due) if due is not None else None,
            summary=entry["summary"],
            note=note,
            facts=entry["facts"],
            event_time=at,
            created_at=created_at,
            source_event_ids=tuple(entry["sources"]),
            rule_version=entry["version"],
            affected_lines=tuple(entry["lines"]) if entry.get("lines") else None,
            affected_subscribers=tuple(entry["subs"]) if entry.get("subs") else None,
        )
    )


WIDEN_BY = 1.5  # an area task is updated when its hit lines have grown by half


def widen(
    book: Book,
    detection: str,
    lines: tuple[str, ...],
    subscribers: tuple[str, ...],
    summary: str,
    at: datetime,
    created_at: datetime,
    out: TaskEffects,
) -> None:
    """More lines of an area are hit than its task lists: once they are half
    as many again, the task lists all of them (a new revision), so the team
    does not plan for 5 homes when 30 are down. Smaller growth waits, so a
    line-by-line outage does not send a revision per line."""
    tid = task_id(detection)
    entry = book.open.get(tid)
    if entry is None or "lines" not in entry:
        return
    known = entry["lines"]
    if len(lines) < max(len(known) * WIDEN_BY, len(known) + 1):
        return
    entry = book.open[tid] = {
        **entry,
        "lines": list(lines),
        "subs": list(subscribers),
        "summary": summary,
    }
    note = f"{len(lines)} lines hit now, {len(known)} when the task was last sent"
    _emit(tid, entry, book, TaskChange.WIDENED, at, created_at, out, note=note)
    out.transitions.append((entry["rule"], Transition.WIDENED))


def is_follow_up(task: InterventionTask) -> bool:
    """A task an escalation opened (its parent is the escalated task), not a
    task linked to an area's (whose parent is the area's task)."""
    parent = task.parent_task_id
    return parent is not None and task.correlation_id == stable_id("follow-up", parent)


def link(
    book: Book,
    rules: frozenset[str],
    parent: str | None,
    at: datetime,
    created_at: datetime,
    out: TaskEffects,
) -> None:
    """An area incident now covers this line: its open tasks of `rules` (the
    rules it inhibits) are linked to the area's task."""
    for tid, found in list(book.open.items()):
        if found["rule"] not in rules or found["follow"] or found.get("parent") == parent:
            continue
        entry = book.open[tid] = {**found, "parent": parent}
        note = "an area incident covers this line" + (f": task {parent}" if parent else "")
        _emit(tid, entry, book, TaskChange.LINKED, at, created_at, out, note=note)
        out.transitions.append((entry["rule"], Transition.LINKED))


def _close(book: Book, tid: str) -> None:
    del book.open[tid]
    book.closed = [*book.closed[-(RECENTLY_CLOSED - 1) :], tid]
