"""An in-memory run of the engine over a sequence of inputs, as `forewarn
replay` and `forewarn rules test` need it: keyed state in a dict, profiles as
they arrive, a cell -> subscribers index for fan-out, and each notice intent
delivered through its subscriber's notice policy.

The worker does the same with Kafka tables and an internal topic instead of
dicts; the engine calls are identical, so are the outputs and their ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rules.engine import Decision, InputEvent, Result, State, evaluate
from rules.policy import PolicyReason, deliver
from rules.ruleset import RuleSet
from schemas import CustomerNotice, CustomerProfile, InterventionTask, NoticeIntent, default_profile

Output = CustomerNotice | InterventionTask


@dataclass
class Step:
    """What one input produced."""

    outputs: list[Output] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    policy: list[tuple[str, str, PolicyReason]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


class Session:
    def __init__(
        self, rules: RuleSet, created_at: Callable[[InputEvent], datetime | None] = lambda e: None
    ) -> None:
        self.rules = rules
        self.created_at = created_at
        self.states: dict[str, State] = {}
        self.policy_states: dict[str, dict[str, object]] = {}
        self.profiles: dict[str, CustomerProfile] = {}
        self.cells: dict[str, set[str]] = defaultdict(set)

    def profile(self, subscriber_id: str) -> CustomerProfile:
        return self.profiles.get(subscriber_id) or default_profile(subscriber_id)

    def put_profile(self, subscriber_id: str, profile: CustomerProfile | None) -> None:
        old = self.profiles.pop(subscriber_id, None)
        if old is not None and old.home_cell_id:
            self.cells[old.home_cell_id].discard(subscriber_id)
        if profile is not None:
            self.profiles[subscriber_id] = profile
            if profile.home_cell_id:
                self.cells[profile.home_cell_id].add(subscriber_id)

    def process(self, event: InputEvent, key: str) -> Step:
        sub = getattr(event, "subscriber_id", None)
        profile = self.profile(sub) if sub else None
        created = self.created_at(event)
        state, result = evaluate(
            self.states.get(key), event, profile, self.rules, created_at=created
        )
        self.states[key] = state
        return self._outputs(result, created)

    def _outputs(self, result: Result, created: datetime | None) -> Step:
        step = Step(
            decisions=list(result.decisions),
            failures=[(f.rule_id, f.message) for f in result.failures],
        )
        step.outputs.extend(result.tasks)
        for intent in result.intents:
            for subscriber in self.audience(intent):
                self.deliver(subscriber, intent, created, step)
        return step

    def audience(self, intent: NoticeIntent) -> list[str]:
        if intent.subscriber_id is not None:
            return [intent.subscriber_id]
        return sorted(self.cells.get(intent.cell_id or "", ()))

    def deliver(
        self, subscriber: str, intent: NoticeIntent, created: datetime | None, step: Step
    ) -> None:
        new, delivery = deliver(
            self.policy_states.get(subscriber),
            self.profile(subscriber),
            intent,
            self.rules,
            created_at=created,
        )
        self.policy_states[subscriber] = new
        for reason in delivery.reasons:
            step.policy.append((intent.rule_id, intent.tier, reason))
        if delivery.notice is not None:
            step.outputs.append(delivery.notice)
