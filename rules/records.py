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
from typing import Any

from rules.engine import Decision, InputEvent, Result, evaluate, key_of
from rules.policy import PolicyReason, deliver
from rules.ruleset import RuleSet
from schemas import (
    CellMembership,
    CustomerNotice,
    CustomerProfile,
    InterventionTask,
    NetworkQualityEvent,
    NoticeIntent,
    TargetType,
    default_profile,
)

Record = dict[str, Any]
Output = CustomerNotice | InterventionTask


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
) -> tuple[Record, Effects]:
    """Evaluate an input event against its key's record. `members` gives a
    cell's home subscribers; it is called only when a cell detection fires."""
    key = key_of(event)
    if is_subscriber_event(event):
        profile: CustomerProfile | None = profile_of(record, key)
    else:
        profile = None  # a cell or a line: no subscriber profile on this key
    engine, result = evaluate(record.get("engine"), event, profile, rules, created_at=created_at)
    new = {**record, "engine": engine}
    effects = _effects(result)
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
    return new, effects


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
    return new, effects


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


def with_affected(task: InterventionTask, subscribers: tuple[str, ...]) -> InterventionTask:
    """A cell task names the subscribers whose home cell it is (sorted, so the
    output is deterministic); the engine itself only knows the cell."""
    members = tuple(sorted(subscribers))
    return task.model_copy(update={"affected_subscribers": members}) if members else task


def _effects(result: Result) -> Effects:
    return Effects(
        decisions=list(result.decisions),
        failures=[(f.rule_id, f.message) for f in result.failures],
        fired=list(result.fired),
        evaluated=list(result.evaluated),
    )


def _deliver(
    record: Record,
    profile: CustomerProfile,
    intent: NoticeIntent,
    rules: RuleSet,
    created_at: datetime | None,
    effects: Effects,
) -> Record:
    policy, delivery = deliver(record.get("policy"), profile, intent, rules, created_at=created_at)
    effects.policy.extend((intent.rule_id, intent.tier, r) for r in delivery.reasons)
    if delivery.notice is not None:
        effects.outputs.append(delivery.notice)
    return {**record, "policy": policy} if policy else record
