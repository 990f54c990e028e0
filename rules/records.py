"""Per-key records and the pure steps that update them: the one place where
engine, notice policy, profiles and the cell index meet. The worker keeps
records in Faust tables (one agent owns each table), `forewarn replay` and
`forewarn rules test` keep them in dicts; both call these functions, so both
produce the same outputs with the same ids.

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

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from rules.engine import (
    Decision,
    InputEvent,
    Result,
    advance_clock,
    apply_feedback,
    due_at,
    evaluate,
    key_of,
)
from rules.guard import Budget
from rules.policy import PolicyReason, deliver, next_release, release
from rules.ruleset import RuleSet
from rules.tasks import FeedbackReason, Transition
from schemas import (
    CellMembership,
    CustomerNotice,
    CustomerProfile,
    InterventionTask,
    NetworkQualityEvent,
    NoticeIntent,
    TargetType,
    TaskUpdate,
    default_profile,
)

Record = dict[str, Any]
Output = CustomerNotice | InterventionTask


class Suppression(NamedTuple):
    """A detection or notice that was not sent (or was held), with whom and
    when: what `forewarn replay --suppressions` writes for a rule author."""

    rule_id: str
    tier: str | None
    reason: str
    key: str  # the subscriber (policy) or the detecting key (engine)
    at: str  # the event time, RFC 3339


@dataclass
class Effects:
    """What one step produced besides the new record."""

    outputs: list[Output] = field(default_factory=list)
    intents: list[NoticeIntent] = field(default_factory=list)  # for other subscribers
    memberships: list[CellMembership] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    policy: list[tuple[str, str, PolicyReason]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    fired: list[tuple[str, str]] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    transitions: list[tuple[str, Transition]] = field(default_factory=list)
    rejected: FeedbackReason | None = None  # a task update that changed nothing
    suppressed: list[Suppression] = field(default_factory=list)


def encode_record(record: Record) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def decode_record(data: bytes | str | None) -> Record:
    return json.loads(data) if data else {}


@lru_cache(maxsize=8192)
def _parse_profile(text: str) -> CustomerProfile:
    return CustomerProfile.model_validate_json(text)


def profile_of(record: Record, subscriber_id: str) -> CustomerProfile:
    text = record.get("profile")
    return _parse_profile(text) if text else default_profile(subscriber_id)


def is_subscriber_event(event: InputEvent) -> bool:
    return not isinstance(event, NetworkQualityEvent)


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
) -> tuple[Record, Effects]:
    """Evaluate an input event against its key's record. `members` gives a
    cell's home subscribers; it is called only when a cell detection fires.
    Held notices due by the event's time are released first."""
    key = key_of(event)
    effects = Effects()
    profile: CustomerProfile | None = None  # a cell or a line: no subscriber profile
    if is_subscriber_event(event):
        profile = profile_of(record, key)
        record = _release(record, profile, event.event_time, rules, created_at, effects)
    engine, result = evaluate(
        record.get("engine"), event, profile, rules, created_at=created_at, budget=budget
    )
    if result.decisions:  # rare: kept off the common path
        at = event.event_time.isoformat()
        effects.suppressed.extend(
            Suppression(d.rule_id, d.tier, d.reason.value, key, at) for d in result.decisions
        )
    new = _route(
        {**record, "engine": engine}, key, profile, result, rules, created_at, members, effects
    )
    return with_due(new), effects


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
    times = [t for t in (due_at(record.get("engine")), next_release(record.get("policy"))) if t]
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
    return json.dumps(members, separators=(",", ":")).encode()


def decode_members(data: bytes | None) -> list[str]:
    return list(json.loads(data)) if data else []


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
        Suppression(intent.rule_id, intent.tier, r.value, who, at) for r in delivery.reasons
    )
    effects.suppressed.extend(
        Suppression(d.rule_id, d.tier, PolicyReason.SUPERSEDED.value, who, d.event_time.isoformat())
        for d in delivery.dropped
    )
    if delivery.notice is not None:
        effects.outputs.append(delivery.notice)
    return {**record, "policy": policy} if policy else record
