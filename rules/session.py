"""An in-memory run over a sequence of inputs, as `forewarn replay` and
`forewarn rules test` need it: the same per-key records and steps the worker
uses (`rules.records`), kept as encoded bytes in dicts instead of Faust
tables, with intents for other subscribers and cell-membership changes
applied at once instead of crossing an internal topic.

Records are stored encoded, exactly as the worker's tables store them, so a
replay also proves the state survives serialization, and memory per key is
a few hundred bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rules.engine import Decision, InputEvent, key_of
from rules.policy import PolicyReason
from rules.records import (
    Effects,
    Output,
    Record,
    apply_event,
    apply_intent,
    apply_membership,
    apply_profile,
    decode_members,
    decode_record,
    encode_members,
    encode_record,
    is_subscriber_event,
)
from rules.ruleset import RuleSet
from schemas import CustomerProfile


@dataclass
class Step:
    """What one input produced, intents for other subscribers included."""

    outputs: list[Output] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    policy: list[tuple[str, str, PolicyReason]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    fired: list[tuple[str, str]] = field(default_factory=list)

    def add(self, effects: Effects) -> None:
        self.outputs.extend(effects.outputs)
        self.decisions.extend(effects.decisions)
        self.policy.extend(effects.policy)
        self.failures.extend(effects.failures)
        self.fired.extend(effects.fired)


class Store:
    """Encoded records by key, like a table."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> Record:
        return decode_record(self.data.get(key))

    def put(self, key: str, record: Record) -> None:
        self.data[key] = encode_record(record)


class Session:
    def __init__(
        self, rules: RuleSet, created_at: Callable[[InputEvent], datetime | None] = lambda e: None
    ) -> None:
        self.rules = rules
        self.created_at = created_at
        self.subscribers = Store()
        self.network = Store()
        self.members: dict[str, bytes] = {}

    def put_profile(self, subscriber_id: str, profile: CustomerProfile | None) -> None:
        record, effects = apply_profile(self.subscribers.get(subscriber_id), subscriber_id, profile)
        self.subscribers.put(subscriber_id, record)
        for change in effects.memberships:
            members = decode_members(self.members.get(change.cell_id))
            self.members[change.cell_id] = encode_members(apply_membership(members, change))

    def process(self, event: InputEvent) -> Step:
        key = key_of(event)
        store = self.subscribers if is_subscriber_event(event) else self.network
        created = self.created_at(event)
        record, effects = apply_event(
            store.get(key),
            event,
            self.rules,
            created_at=created,
            members=lambda: tuple(decode_members(self.members.get(key))),
        )
        store.put(key, record)
        step = Step()
        step.add(effects)
        for intent in effects.intents:
            assert intent.subscriber_id is not None
            sub = intent.subscriber_id
            new, delivered = apply_intent(
                self.subscribers.get(sub), sub, intent, self.rules, created_at=created
            )
            self.subscribers.put(sub, new)
            step.add(delivered)
        return step
