"""Per-key records and the pure steps that update them: the one place where
engine, notice policy, profiles and the cell index meet. The worker keeps
records in its state store (`stream.store`, one agent owns each table),
`forewarn replay` and `forewarn rules test` keep them in dicts; both call
these functions, so both produce the same outputs with the same ids. The
layout of a record, with the meaning of every stored name and its version,
is `rules.state`.

Two key spaces, each record read once and written once per input:

    subscriber record  {"profile": "<profile JSON>", "engine": {...}, "policy": {...}}
        inputs: usage and billing events, profile changes, notice intents
    network record     {"engine": {...}}
        inputs: network-quality events (cell or line)
    cell members       [subscriber ids whose home cell it is], kept apart and read
                       only when a cell detection needs its audience
        inputs: cell membership changes

A detection on a subscriber's own event is delivered through that
subscriber's notice policy in the same step. A detection on a cell or a line
yields `NoticeIntent`s for other keys (the cell's members, the line's
subscriber); the caller routes them to those subscribers' records (through a
subscriber-keyed Kafka topic in the worker) and applies `apply_intent`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from pydantic_core import from_json, to_json

from rules import maintenance
from rules.engine import (
    Covers,
    Decision,
    InputEvent,
    Result,
    advance_clock,
    apply_feedback,
    area_of,
    due_at,
    evaluate,
    key_of,
)
from rules.guard import Budget
from rules.policy import PolicyReason, deliver, next_release, release
from rules.ruleset import RuleSet
from rules.state import migrate, stamp
from rules.tasks import Book, FeedbackReason, TaskEffects, Transition, link
from schemas import (
    CellMembership,
    CoverMark,
    CustomerNotice,
    CustomerProfile,
    InterventionTask,
    MaintenanceWindow,
    NetworkQualityEvent,
    NetworkScope,
    NoticeIntent,
    TargetType,
    TaskUpdate,
    default_profile,
)

Record = dict[str, Any]  # laid out as `rules.state.KeyRecord`
Output = CustomerNotice | InterventionTask


class Suppression(NamedTuple):
    """A detection or notice that was not sent (or was held), with whom and
    when: what `forewarn replay --suppressions` writes for a rule author."""

    rule_id: str
    tier: str | None
    reason: str
    key: str  # the subscriber (policy) or the detecting key (engine)
    at: str  # the event time, RFC 3339


@dataclass(init=False, slots=True)
class Effects:
    """What one step produced besides the new record: the one effects type
    of every caller (the worker's processor, `rules.session` for replay and
    rule tests). Every step makes one: its `__init__` is written out, so
    that compiled (dev/compile.py) it is native, not the interpreted one
    `dataclass` would generate."""

    outputs: list[Output]
    intents: list[NoticeIntent]  # for other subscribers
    memberships: list[CellMembership]
    decisions: list[Decision]
    policy: list[tuple[str, str, PolicyReason]]
    failures: list[tuple[str, str]]
    fired: list[tuple[str, str]]
    evaluated: list[str]
    transitions: list[tuple[str, Transition]]
    rejected: FeedbackReason | None  # a task update that changed nothing
    suppressed: list[Suppression]
    marks: list[CoverMark]  # for lines of this area
    implausible: str | None  # why an event's time was not believed (it changed nothing)

    def __init__(self) -> None:
        self.outputs = []
        self.intents = []
        self.memberships = []
        self.decisions = []
        self.policy = []
        self.failures = []
        self.fired = []
        self.evaluated = []
        self.transitions = []
        self.rejected = None
        self.suppressed = []
        self.marks = []
        self.implausible = None

    def quiet(self) -> bool:
        """Nothing to send, route or count but the evaluations."""
        return not (
            self.outputs
            or self.intents
            or self.decisions
            or self.policy
            or self.failures
            or self.fired
            or self.transitions
            or self.marks
        )

    def absorb(self, other: Effects) -> None:
        """Take in what `other` (a step on another key, or due work) made
        visible: its outputs, decisions and counts. Its intents, marks and
        memberships are the caller's to route, so they are not taken."""
        self.outputs.extend(other.outputs)
        self.decisions.extend(other.decisions)
        self.policy.extend(other.policy)
        self.failures.extend(other.failures)
        self.fired.extend(other.fired)
        self.evaluated.extend(other.evaluated)
        self.transitions.extend(other.transitions)
        self.suppressed.extend(other.suppressed)
        self.rejected = self.rejected or other.rejected


# Records are compact UTF-8 JSON, read and written with pydantic-core's
# JSON codec (the one pydantic validates events with): 2-3x faster than the
# standard library's, same values (non-ASCII text is written as UTF-8, not
# escaped; either is read back the same).


def encode_record(record: Record) -> bytes:
    """A record as stored, stamped with its layout version (`rules.state`)."""
    return to_json(stamp(record))


def decode_record(data: bytes | str | None) -> Record:
    """A stored record in this version's layout (`rules.state.migrate`)."""
    if not data:
        return {}
    found: Record = from_json(data, cache_strings="keys")
    return migrate(found)


@lru_cache(maxsize=8192)
def _parse_profile(text: str) -> CustomerProfile:
    return CustomerProfile.model_validate_json(text)


def profile_of(record: Record, subscriber_id: str) -> CustomerProfile:
    text = record.get("profile")
    return _parse_profile(text) if text else default_profile(subscriber_id)


def is_subscriber_event(event: InputEvent) -> bool:
    return type(event) is not NetworkQualityEvent


def goes_to_area(event: InputEvent, rules: RuleSet) -> bool:
    """A line's event with an area, when some rule is keyed by area."""
    return (
        type(event) is NetworkQualityEvent
        and event.area_id is not None
        and event.scope is NetworkScope.BROADBAND_LINE
        and rules.area_rules
    )


def no_members() -> tuple[str, ...]:
    return ()


def apply_event(
    record: Record,
    event: InputEvent,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    members: Callable[[], tuple[str, ...]] = no_members,
    budget: Budget | None = None,
    at: float | None = None,
) -> tuple[Record, Effects]:
    """Evaluate an input event against its key's record. `members` gives a
    cell's home subscribers; it is called only when a cell detection fires.
    Held notices due by the event's time are released first. `at`: the
    event's time in epoch seconds, when the caller has it already."""
    key = key_of(event)
    effects = Effects()
    profile: CustomerProfile | None = None  # a cell or a line: no subscriber profile
    if is_subscriber_event(event):
        profile = profile_of(record, key)
        record = _release(record, profile, event.event_time, rules, created_at, effects)
    covers = covers_of(record)
    engine, result = evaluate(
        record.get("engine"),
        event,
        profile,
        rules,
        created_at=created_at,
        budget=budget,
        covers=covers,
        at=at,
    )
    who = getattr(event, "subscriber_id", None)
    if profile is None and who is not None and record.get("who") != who:
        record = {**record, "who": who}  # a line's subscriber: told of planned work
    if result.decisions:  # rare: kept off the common path
        when = event.event_time.isoformat()
        effects.suppressed.extend(
            Suppression(d.rule_id, d.tier, str(d.reason), key, when) for d in result.decisions
        )
    new = _route(
        {**record, "engine": engine}, key, profile, result, rules, created_at, members, effects
    )
    if result.incidents:  # a cell's incident covers its home subscribers
        _cover_members(key, result, event.event_time, members, effects)
    return with_due(new), effects


def _cover_members(
    cell: str,
    result: Result,
    at: datetime,
    members: Callable[[], tuple[str, ...]],
    effects: Effects,
) -> None:
    home = sorted(members())
    for inc in result.incidents:
        effects.marks.extend(
            _incident_marks(home, "subscribers", cell, inc.rule_id, inc.open, inc.task_id, at)
        )


def _incident_marks(
    keys: Iterable[str],
    space: Literal["network", "subscribers"],
    source: str,
    rule_id: str,
    open_: bool,
    task: str | None,
    at: datetime,
) -> list[CoverMark]:
    """An incident of `source` (an area or a cell) opening or closing, for
    each key it covers."""
    return [
        CoverMark(
            key=key,
            space=space,
            source=source,
            kind="incident",
            ref=rule_id,
            open=open_,
            task_id=task if open_ else None,
            at=at,
        )
        for key in keys
    ]


def apply_clock(
    record: Record,
    key: str,
    subscriber: bool,
    now: datetime,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    members: Callable[[], tuple[str, ...]] = no_members,
    budget: Budget | None = None,
) -> tuple[Record, Effects]:
    """What falls due at `now` for one key: overdue tasks escalate, held
    notices are released."""
    effects = Effects()
    profile = profile_of(record, key) if subscriber else None
    if profile is not None:
        record = _release(record, profile, now, rules, created_at, effects)
    elif record.get("maint"):
        record = _planned_work(record, now, members, effects)
    engine, result = advance_clock(
        record.get("engine"), now, rules, created_at=created_at, budget=budget
    )
    new = _route(
        {**record, "engine": engine}, key, profile, result, rules, created_at, members, effects
    )
    return with_due(new), effects


def apply_task_update(
    record: Record,
    key: str,
    subscriber: bool,
    update: TaskUpdate,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    members: Callable[[], tuple[str, ...]] = no_members,
    budget: Budget | None = None,
) -> tuple[Record, Effects]:
    """A work system's report on one of the key's tasks; `Effects.rejected`
    says why it changed nothing."""
    effects = Effects()
    profile = profile_of(record, key) if subscriber else None
    engine, result = apply_feedback(
        record.get("engine"), update, rules, created_at=created_at, budget=budget
    )
    effects.rejected = result.rejected
    if result.rejected is not None:
        return record, effects
    new = _route(
        {**record, "engine": engine}, key, profile, result, rules, created_at, members, effects
    )
    return with_due(new), effects


def due_of(record: Record) -> float | None:
    """When something next falls due for this key (epoch seconds): a task's
    promise or a held notice. Kept in the record as `due` so a clock can
    find due keys without decoding every record."""
    return record.get("due")


def with_due(record: Record) -> Record:
    times = [
        t
        for t in (
            due_at(record.get("engine")),
            next_release(record.get("policy")),
            maintenance.next_step(record),
        )
        if t
    ]
    if times:
        return {**record, "due": min(times)}
    if "due" in record:
        return {k: v for k, v in record.items() if k != "due"}
    return record


def _release(
    record: Record,
    profile: CustomerProfile,
    now: datetime,
    rules: RuleSet,
    created_at: datetime | None,
    effects: Effects,
) -> Record:
    if not record.get("policy", {}).get("held"):
        return record
    policy, notices, failures, superseded = release(
        record.get("policy"), profile, now, rules, created_at=created_at
    )
    effects.outputs.extend(notices)
    effects.failures.extend(failures)
    for d in superseded:
        effects.policy.append((d.rule_id, d.tier, PolicyReason.SUPERSEDED))
        effects.suppressed.append(
            Suppression(
                d.rule_id,
                d.tier,
                PolicyReason.SUPERSEDED.value,
                profile.subscriber_id,
                d.event_time.isoformat(),
            )
        )
    return {**record, "policy": policy}


def _route(
    new: Record,
    key: str,
    profile: CustomerProfile | None,
    result: Result,
    rules: RuleSet,
    created_at: datetime | None,
    members: Callable[[], tuple[str, ...]],
    effects: Effects,
) -> Record:
    """A step's tasks become outputs (a cell's with its home subscribers);
    its intents go through this subscriber's policy, or out to the cell's
    members or the line's subscriber."""
    _merge(effects, result)
    audience = members() if result.tasks or result.intents else ()
    effects.outputs.extend(
        with_affected(t, audience) if t.target.type is TargetType.CELL else t for t in result.tasks
    )
    for intent in result.intents:
        if intent.subscriber_id is None:  # a cell-wide notice: one per member
            effects.intents.extend(
                intent.model_copy(update={"subscriber_id": m}) for m in sorted(audience)
            )
        elif profile is not None and intent.subscriber_id == key:
            new = _deliver(new, profile, intent, rules, created_at, effects)
        else:
            effects.intents.append(intent)
    return new


def apply_intent(
    record: Record,
    subscriber_id: str,
    intent: NoticeIntent,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
) -> tuple[Record, Effects]:
    """Deliver a notice intent from another key through this subscriber's policy."""
    effects = Effects()
    new = _deliver(
        dict(record), profile_of(record, subscriber_id), intent, rules, created_at, effects
    )
    return with_due(new), effects


def apply_profile(
    record: Record, subscriber_id: str, profile: CustomerProfile | None
) -> tuple[Record, Effects]:
    """Store (or, with None, delete) a profile; report home-cell moves."""
    effects = Effects()
    old_cell = profile_of(record, subscriber_id).home_cell_id if record.get("profile") else None
    new_cell = profile.home_cell_id if profile is not None else None
    new = dict(record)
    if profile is None:
        new.pop("profile", None)
    else:
        new["profile"] = profile.model_dump_json(exclude_defaults=True)
    if old_cell != new_cell:
        if old_cell:
            effects.memberships.append(
                CellMembership(cell_id=old_cell, subscriber_id=subscriber_id, member=False)
            )
        if new_cell:
            effects.memberships.append(
                CellMembership(cell_id=new_cell, subscriber_id=subscriber_id, member=True)
            )
    return new, effects


def apply_membership(members: list[str], change: CellMembership) -> list[str]:
    """The cell's member list after a change (sorted, idempotent)."""
    present = change.subscriber_id in members
    if change.member == present:
        return members
    if change.member:
        return sorted([*members, change.subscriber_id])
    return [m for m in members if m != change.subscriber_id]


def encode_members(members: list[str]) -> bytes:
    return to_json(members)


def decode_members(data: bytes | None) -> list[str]:
    return list(from_json(data)) if data else []


MAX_AFFECTED = 5000  # ids listed in a cell task: ~100 KB, well inside a Kafka record


def with_affected(task: InterventionTask, subscribers: tuple[str, ...]) -> InterventionTask:
    """A cell task names the subscribers whose home cell it is (sorted, so the
    output is deterministic); the engine itself only knows the cell. A large
    cell lists the first `MAX_AFFECTED` and counts all of them in
    `affected_subscribers_total`, so the task always fits in a record."""
    members = tuple(sorted(subscribers))
    if not members:
        return task
    return task.model_copy(
        update={
            "affected_subscribers": members[:MAX_AFFECTED],
            "affected_subscribers_total": len(members),
        }
    )


def _merge(effects: Effects, result: Result) -> None:
    effects.decisions.extend(result.decisions)
    effects.failures.extend((f.rule_id, f.message) for f in result.failures)
    effects.fired.extend(result.fired)
    effects.evaluated.extend(result.evaluated)
    effects.transitions.extend(result.transitions)


def _deliver(
    record: Record,
    profile: CustomerProfile,
    intent: NoticeIntent,
    rules: RuleSet,
    created_at: datetime | None,
    effects: Effects,
) -> Record:
    try:
        policy, delivery = deliver(
            record.get("policy"), profile, intent, rules, created_at=created_at
        )
    except Exception as exc:  # a notice text that fails costs only this notice
        effects.failures.append((intent.rule_id, f"notice text: {type(exc).__name__}: {exc}"))
        return record
    effects.policy.extend((intent.rule_id, intent.tier, r) for r in delivery.reasons)
    effects.policy.extend((d.rule_id, d.tier, PolicyReason.SUPERSEDED) for d in delivery.dropped)
    who, at = profile.subscriber_id, intent.event_time.isoformat()
    effects.suppressed.extend(
        Suppression(intent.rule_id, intent.tier, str(r), who, at) for r in delivery.reasons
    )
    effects.suppressed.extend(
        Suppression(d.rule_id, d.tier, PolicyReason.SUPERSEDED.value, who, d.event_time.isoformat())
        for d in delivery.dropped
    )
    if delivery.notice is not None:
        effects.outputs.append(delivery.notice)
    return {**record, "policy": policy} if policy else record


# -- areas, planned work and what covers a line ---------------------------------


_SEP = "\x1f"  # in the names of a record's covers: kind, covering key, window or rule


WORK_MEMORY_S = 86400.0  # planned work covers a key for a day after it ended


def _covered(
    record: Record, name: tuple[str, str, str], cover: dict[str, Any] | None, at: float
) -> Record:
    """The record with the cover `name` (kind, covering key, window or
    rule) set, or removed (None). Planned work that ended more than
    `WORK_MEMORY_S` before `at` is dropped: a detection about its time (a
    measurement window closed after it ended) has been judged by then."""
    covers: dict[str, Any] = dict(record.get("covers", {}))
    key = _SEP.join(name)
    if cover is None:
        covers.pop(key, None)
    else:
        covers[key] = cover
    covers = {k: c for k, c in covers.items() if c.get("end", float("inf")) > at - WORK_MEMORY_S}
    if covers:
        return {**record, "covers": covers}
    return {k: v for k, v in record.items() if k != "covers"}


def covers_of(record: Record) -> Covers | None:
    """Planned work on the key (its own window, or its area's) and the open
    incidents of its area, from its record."""
    own = maintenance.windows_in(record)
    marks = record.get("covers")
    if not own and not marks:
        return None
    windows = list(own)
    incidents = set()
    for name, c in (marks or {}).items():
        kind, area, ref = name.split(_SEP)
        if kind == "maintenance":
            windows.append((c["start"], c["end"]))
        else:
            incidents.add((ref, area))
    return Covers(tuple(windows), frozenset(incidents))


def apply_area(
    record: Record,
    event: InputEvent,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    budget: Budget | None = None,
) -> tuple[Record, Effects]:
    """A line's event, again, for its area (`area_id`): the area's rules see
    every line of it. The area keeps its lines (with their subscribers) to
    tell them of planned work and to cover them with its open incidents:
    a line it did not know yet is covered at once by what is in force."""
    area = area_of(event)
    effects = Effects()
    line = getattr(event, "line_id", None)
    lines: dict[str, str | None] = dict(record.get("lines", {}))
    new_line = line is not None and line not in lines
    if line is not None and (new_line or lines[line] != event.subscriber_id):
        lines[line] = getattr(event, "subscriber_id", None)
    engine, result = evaluate(
        record.get("engine"),
        event,
        None,
        rules,
        created_at=created_at,
        budget=budget,
        area=True,
        covers=covers_of(record),
    )
    if result.decisions:
        at = event.event_time.isoformat()
        effects.suppressed.extend(
            Suppression(d.rule_id, d.tier, str(d.reason), area, at) for d in result.decisions
        )
    new = _route(
        {**record, "engine": engine, "lines": lines},
        area,
        None,
        result,
        rules,
        created_at,
        no_members,
        effects,
    )
    if new_line and line is not None:
        effects.marks.extend(_marks_for(new, area, [line], event.event_time))
    new = _incidents(new, area, result, event.event_time, effects)
    return with_due(new), effects


def _incidents(record: Record, area: str, result: Result, at: datetime, effects: Effects) -> Record:
    """Inhibiting episodes opened or closed on the area: every line is told."""
    if not result.incidents:
        return record
    open_now: dict[str, Any] = dict(record.get("incidents", {}))
    for inc in result.incidents:
        if inc.open:
            open_now[inc.rule_id] = {
                "task": inc.task_id or open_now.get(inc.rule_id, {}).get("task")
            }
        else:
            open_now.pop(inc.rule_id, None)
    lines = sorted(record.get("lines", {}))
    for inc in result.incidents:
        task = open_now.get(inc.rule_id, {}).get("task")
        effects.marks.extend(
            _incident_marks(lines, "network", area, inc.rule_id, inc.open, task, at)
        )
    if open_now:
        return {**record, "incidents": open_now}
    return {k: v for k, v in record.items() if k != "incidents"}


def _marks_for(record: Record, area: str, lines: list[str], at: datetime) -> list[CoverMark]:
    """What covers `lines` of the area now: its planned work, its open incidents."""
    marks = []
    m = record.get("maint")
    for line in lines:
        if m:
            marks.append(_window_mark(m, area, line, True, at))
        for rule_id, inc in sorted(record.get("incidents", {}).items()):
            marks += _incident_marks([line], "network", area, rule_id, True, inc.get("task"), at)
    return marks


def _window_mark(m: dict[str, Any], area: str, line: str, open_: bool, at: datetime) -> CoverMark:
    return CoverMark(
        key=line,
        space="network",
        source=area,
        kind="maintenance",
        ref=m["id"],
        open=open_,
        start=datetime.fromtimestamp(m["start"], UTC),
        end=datetime.fromtimestamp(m["end"], UTC),
        at=at,
    )


def apply_mark(
    record: Record, mark: CoverMark, rules: RuleSet, *, created_at: datetime | None = None
) -> tuple[Record, Effects]:
    """Something of the line's area covers it now, or no more. An incident
    that opens links the line's open tasks of the rules it inhibits to the
    area's task."""
    effects = Effects()
    cover: dict[str, Any] | None = None
    if mark.open and mark.kind == "maintenance":
        assert mark.start is not None and mark.end is not None
        cover = {"start": mark.start.timestamp(), "end": mark.end.timestamp()}
    elif mark.open:
        cover = {"task": mark.task_id}
    new = _covered(record, (mark.kind, mark.source, mark.ref), cover, mark.at.timestamp())
    if mark.open and mark.kind == "incident":
        inhibited = frozenset(
            r.id for r in rules.rules if any(i[0] == mark.ref for i in r.inhibited_by)
        )
        engine = dict(new.get("engine", {}))
        book = Book.of(engine)
        out = TaskEffects()
        link(book, inhibited, mark.task_id, mark.at, created_at or mark.at, out)
        if out.tasks:
            book.store(engine)
            new = {**new, "engine": engine}
            effects.outputs.extend(out.tasks)
            effects.transitions.extend(out.transitions)
    return with_due(new), effects


def apply_window(
    record: Record,
    key: str,
    window: MaintenanceWindow | None,
    at: datetime,
) -> tuple[Record, Effects]:
    """Planned work on a cell, a line or an area (None: withdrawn). An
    area's lines are covered by it (or no more) through marks; the notices
    fall due on the clock (`apply_clock`)."""
    effects = Effects()
    before = record.get("maint")
    new = maintenance.store(record, window, key)
    after = new.get("maint")
    is_area = (after or before or {}).get("target") == "area"
    if is_area and before != after:
        lines = sorted(new.get("lines", {}))
        if before and (not after or after["id"] != before["id"]):
            effects.marks.extend(_window_mark(before, key, ln, False, at) for ln in lines)
        if after:
            effects.marks.extend(_window_mark(after, key, ln, True, at) for ln in lines)
    return with_due(new), effects


def _planned_work(
    record: Record, now: datetime, members: Callable[[], tuple[str, ...]], effects: Effects
) -> Record:
    """Announcements and "work finished" notices due by `now`."""
    target = record["maint"]["target"]

    def audience() -> list[str]:
        if target == "cell":
            return list(members())
        if target == "area":
            return [s for s in record.get("lines", {}).values() if s]
        return [record["who"]] if record.get("who") else []

    m = record["maint"]
    new, intents = maintenance.steps(record, now.timestamp(), audience)
    effects.intents.extend(intents)
    if "maint" not in new:  # finished: what was measured during it is still its own
        cover = {"start": m["start"], "end": m["end"]}
        new = _covered(new, ("maintenance", m["key"], m["id"]), cover, now.timestamp())
    return new
