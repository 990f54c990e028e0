"""The pure rule engine: `evaluate(state, event, profile, rules)` returns the
new state and what the detection produced. No Kafka, no clock, no metrics:
time comes from the event. The worker, `forewarn replay` and `forewarn rules
test` all call this same function, so the same input gives the same outputs
with the same ids.

State is one JSON-compatible dict per key (subscriber, cell or line), read
and written once per event whatever the number of rules:

    {"seen": [recent event ids], "acc": {cycle: {service: used}},
     "rules": {rule_id: {"shape", "win", "base", "chg", "streak", "clear",
                         "episode", "sent"}},
     "policy": {...}}   # the notice policy's part (rules.policy)

Lifecycle of a rule for a key (after Prometheus' alerting rules): a tier's
condition must hold `for` N evaluations or a duration; the highest such tier
fires unless its de-duplication scope says it already did; firing opens an
episode, and lower tiers count as sent in it. `clear` (or, without it, no
tier condition holding) ends the episode: tasks get a `resolved` update and
notified subscribers a `resolved` notice where the tier defines one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC as _UTC
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from rules.identity import detection_id, resolution_id, task_id
from rules.model import Audience, DedupScope, KeyField, Source
from rules.ruleset import Persist, Rule, RuleSet, Tier
from rules.templates import Renderer
from rules.windows import (
    aggregate,
    baseline_step,
    sliding_step,
    sliding_values,
    tumbling_step,
)
from schemas import (
    BillingEvent,
    CustomerProfile,
    InterventionTask,
    NetworkQualityEvent,
    NetworkScope,
    NoticeIntent,
    Service,
    TargetType,
    TaskStatus,
    TaskTarget,
    UsageEvent,
    default_profile,
)

InputEvent = UsageEvent | BillingEvent | NetworkQualityEvent
State = dict[str, Any]
RECENT_EVENT_IDS = 32


class Reason(StrEnum):
    """Why an evaluation did not produce an output. Values are metric labels."""

    DUPLICATE_EVENT = "duplicate_event"
    LATE_EVENT = "late_event"
    DUPLICATE = "duplicate"
    COOLDOWN = "cooldown"
    SUPERSEDED = "superseded"
    NO_QUOTA = "no_quota"


@dataclass(frozen=True)
class Decision:
    rule_id: str
    tier: str | None
    reason: Reason


@dataclass(frozen=True)
class RuleFailure:
    rule_id: str
    message: str


@dataclass
class Result:
    tasks: list[InterventionTask] = field(default_factory=list)
    intents: list[NoticeIntent] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    fired: list[tuple[str, str]] = field(default_factory=list)
    failures: list[RuleFailure] = field(default_factory=list)


def source_of(event: InputEvent) -> Source:
    if isinstance(event, UsageEvent):
        return Source.USAGE
    if isinstance(event, BillingEvent):
        return Source.BILLING
    return Source.NETWORK_QUALITY


def key_of(event: InputEvent) -> str:
    """The state key: subscriber for usage/billing, cell or line for network."""
    if isinstance(event, NetworkQualityEvent):
        return event.target_id
    return event.subscriber_id


def cycle_of(event: InputEvent) -> str:
    if isinstance(event, UsageEvent):
        return event.cycle_id
    return event.event_time.astimezone(_UTC).strftime("%Y-%m")


def _quota(event: UsageEvent, profile: CustomerProfile) -> float | None:
    if event.cycle_quota is not None:
        return event.cycle_quota
    plan = profile.plan
    if plan is None:
        return None
    return {
        Service.DATA: plan.data_quota_mb,
        Service.VOICE: plan.voice_quota_min,
        Service.SMS: plan.sms_quota,
    }[event.service]


def _accumulate(state: State, event: UsageEvent) -> tuple[dict[str, Any], float]:
    """Per subscriber, service and cycle: charging's `cycle_used` when given,
    else the running sum of `volume`. Keeps the two most recent cycles."""
    acc: dict[str, dict[str, float]] = {k: dict(v) for k, v in state.get("acc", {}).items()}
    cycle = acc.setdefault(event.cycle_id, {})
    if event.cycle_used is not None:
        used = event.cycle_used
    else:
        used = cycle.get(event.service.value, 0.0) + event.volume
    cycle[event.service.value] = used
    keep = sorted(acc)[-2:]
    return {k: acc[k] for k in keep}, used


def event_env(
    event: InputEvent, profile: CustomerProfile, state: State
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Names an expression can read for this event, and the new usage
    accumulator (usage events only)."""
    env: dict[str, Any] = {
        name: (v.value if isinstance(v, StrEnum) else v)
        for name, v in event.__dict__.items()
        if not isinstance(v, datetime)
    }
    env["event_time"] = event.event_time.timestamp()
    env["cycle"] = cycle_of(event)
    plan = profile.plan
    env.update(
        {
            "profile.segment": profile.segment.value,
            "profile.language": profile.language.value,
            "profile.preferred_channel": profile.preferred_channel.value,
            "profile.timezone": profile.timezone,
            "profile.prepaid": profile.prepaid,
            "profile.home_cell_id": profile.home_cell_id,
            "profile.broadband_line_id": profile.broadband_line_id,
            "profile.plan.data_quota_mb": plan.data_quota_mb if plan else None,
            "profile.plan.voice_quota_min": plan.voice_quota_min if plan else None,
            "profile.plan.sms_quota": plan.sms_quota if plan else None,
        }
    )
    acc = None
    if isinstance(event, UsageEvent):
        acc, used = _accumulate(state, event)
        env["cycle_used"] = used
        env["quota"] = _quota(event, profile)
    return env, acc


def _holds(p: Persist, streak: dict[str, Any]) -> bool:
    if streak.get("n", 0) < p.count:
        return False
    return p.seconds is None or streak["now"] - streak["since"] >= p.seconds


def _advance(streak: dict[str, Any] | None, cond: bool, t: float) -> dict[str, Any]:
    if not cond:
        return {"n": 0}
    prev = streak or {}
    n = prev.get("n", 0)
    return {"n": n + 1, "since": prev["since"] if n else t, "now": t}


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


class _RuleRun:
    """One rule's evaluation for one event: builds the new rule state."""

    def __init__(
        self,
        rule: Rule,
        rs: dict[str, Any],
        event: InputEvent,
        key: str,
        created_at: datetime,
        renderer: Renderer,
        result: Result,
        t: float,
    ) -> None:
        self.rule = rule
        self.rs = rs
        self.event = event
        self.key = key
        self.t = t  # the event's time in epoch seconds
        self.created_at = created_at
        self.renderer = renderer
        self.result = result
        # the events behind a detection: this one, or a closed window's
        self.sources: tuple[str, ...] = (event.event_id,)

    def run(self, env: dict[str, Any]) -> dict[str, Any]:
        rule = self.rule
        if rule.filter is not None and not rule.filter.evaluate(env):
            return self.rs
        values = [m.expr.evaluate(env) for m in rule.measures]
        values = [
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
            for v in values
        ]
        scope = dict(env)
        if rule.window is None:
            scope.update({m.name: v for m, v in zip(rule.measures, values, strict=True)})
        elif rule.window[0] == "sliding":
            entries = sliding_step(self.rs.get("win"), self.t, values, rule.window[1])
            if entries is None:
                self.result.decisions.append(Decision(rule.id, None, Reason.LATE_EVENT))
                return self.rs
            self.rs["win"] = entries
            for i, m in enumerate(rule.measures):
                assert m.aggregate is not None
                scope[m.name] = aggregate(m.aggregate, sliding_values(entries, i))
            scope["window_start"] = self.t - rule.window[1]
        else:
            win, closed = tumbling_step(
                self.rs.get("win"), self.t, values, rule.window[1], self.event.event_id
            )
            if win is None:
                self.result.decisions.append(Decision(rule.id, None, Reason.LATE_EVENT))
                return self.rs
            self.rs["win"] = win
            if closed is None:
                return self.rs
            for i, m in enumerate(rule.measures):
                assert m.aggregate is not None
                scope[m.name] = aggregate(m.aggregate, closed["samples"][i])
            scope["window_start"] = closed["start"]
            scope["window_end"] = closed["start"] + rule.window[1]
            self.sources = tuple(closed["ids"])
        if rule.baseline is not None:
            b = rule.baseline
            v = b.of.evaluate(env)
            self.rs["base"], scope["baseline"], scope["history_days"] = baseline_step(
                self.rs.get("base"),
                self.t,
                v if isinstance(v, int | float) else None,
                b.per_s,
                b.lookback_s,
                b.min_history_s,
            )
        if rule.change is not None:
            current = rule.change.evaluate(env)
            prev = (self.rs.get("chg") or {}).get("value")
            scope.update(previous=prev, current=current, changed=current != prev)
            self.rs["chg"] = {"value": current}
        self.result.evaluated.append(rule.id)
        self.tiers(scope)
        return self.rs

    # -- tiers, episodes, de-duplication ---------------------------------
    def tiers(self, scope: dict[str, Any]) -> None:
        rule, rs = self.rule, self.rs
        streaks = dict(rs.get("streak", {}))
        active: list[Tier] = []
        any_cond = False
        for tier in rule.tiers:
            cond = bool(tier.when.evaluate(scope))
            any_cond = any_cond or cond
            streaks[tier.name] = _advance(streaks.get(tier.name), cond, self.t)
            if cond and _holds(tier.persist, streaks[tier.name]):
                active.append(tier)
        rs["streak"] = streaks
        episode = rs.get("episode")
        if rule.clear is not None:
            rs["clear"] = _advance(rs.get("clear"), bool(rule.clear.when.evaluate(scope)), self.t)
            cleared = _holds(rule.clear.persist, rs["clear"])
        else:
            cleared = not any_cond
        if episode and cleared:
            self.resolve(episode, scope)
            episode = rs["episode"] = None
        if not active:
            return
        top = active[-1]
        if not episode:
            episode = rs["episode"] = {"id": self.event.event_id, "fired": []}
        sent = {k: dict(v) for k, v in rs.get("sent", {}).items()}
        marker = self.dedup_marker(top, scope, episode)
        if self.already_sent(top, sent.get(top.name, {}), marker, scope):
            self.result.decisions.append(
                Decision(
                    rule.id,
                    top.name,
                    Reason.COOLDOWN if top.scope is DedupScope.COOLDOWN else Reason.DUPLICATE,
                )
            )
            return
        for lower in rule.tiers[: top.index + 1]:
            mark_key, value = self.dedup_marker(lower, scope, episode)
            sent.setdefault(lower.name, {})[mark_key] = value
        rs["sent"] = sent
        self.fire(top, scope, episode)

    def dedup_marker(
        self, tier: Tier, scope: Mapping[str, Any], episode: dict[str, Any]
    ) -> tuple[str, Any]:
        by = "" if tier.dedup_by is None else str(tier.dedup_by.evaluate(scope))
        if tier.scope is DedupScope.CYCLE:
            return by, scope["cycle"]
        if tier.scope is DedupScope.EPISODE:
            return by, episode["id"]
        return by, self.t

    def already_sent(
        self,
        tier: Tier,
        memory: Mapping[str, Any],
        marker: tuple[str, Any],
        scope: Mapping[str, Any],
    ) -> bool:
        key, value = marker
        if key not in memory:
            return False
        if tier.scope is DedupScope.COOLDOWN:
            assert tier.cooldown_s is not None
            return bool(self.t - memory[key] < tier.cooldown_s)
        return bool(memory[key] == value)

    def facts(self, tier: Tier, scope: Mapping[str, Any]) -> dict[str, Any]:
        names = [m.name for m in self.rule.measures]
        extra = [
            "baseline",
            "history_days",
            "previous",
            "current",
            "quota",
            "cycle_used",
            "window_start",
            "window_end",
        ]
        facts: dict[str, Any] = {n: _round(scope.get(n)) for n in names}
        facts.update({n: _round(scope[n]) for n in extra if n in scope})
        for n in ("window_start", "window_end"):
            if n in facts:
                facts[n] = datetime.fromtimestamp(facts[n], _UTC).isoformat()
        facts["condition"] = tier.when.source
        facts["key"] = self.key
        facts["cycle"] = scope["cycle"]
        return facts

    def template_scope(
        self, tier: Tier, facts: Mapping[str, Any], scope: Mapping[str, Any]
    ) -> dict[str, Any]:
        flat = {k: v for k, v in scope.items() if "." not in k}
        return {**flat, **facts, "rule_id": self.rule.id, "tier": tier.name}

    def fire(self, tier: Tier, scope: dict[str, Any], episode: dict[str, Any]) -> None:
        rule, ev = self.rule, self.event
        det = detection_id(rule.id, tier.name, self.key, ev.event_id)
        facts = self.facts(tier, scope)
        sources = self.sources
        self.result.fired.append((rule.id, tier.name))
        episode["fired"] = [
            *episode["fired"],
            {"tier": tier.name, "detection": det, "facts": facts, "sources": list(sources)},
        ]
        if tier.task is not None:
            self.result.tasks.append(self.task(tier, det, facts, scope, TaskStatus.OPEN, sources))
        if tier.notice is not None:
            self.result.intents.append(self.intent(tier, det, facts, False, sources))

    def resolve(self, episode: dict[str, Any], scope: dict[str, Any]) -> None:
        by_name = {t.name: t for t in self.rule.tiers}
        for fired in episode.get("fired", []):
            tier = by_name.get(fired["tier"])
            if tier is None:
                continue
            facts = {**fired["facts"], "resolved_at": self.event.event_time.isoformat()}
            sources = (self.event.event_id,)
            if tier.task is not None and tier.task.resolve:
                self.result.tasks.append(
                    self.task(tier, fired["detection"], facts, scope, TaskStatus.RESOLVED, sources)
                )
            if tier.notice is not None and tier.notice.resolved is not None:
                self.result.intents.append(
                    self.intent(tier, resolution_id(fired["detection"]), facts, True, sources)
                )

    def target(self) -> TaskTarget:
        kind = {
            KeyField.SUBSCRIBER_ID: TargetType.SUBSCRIBER,
            KeyField.CELL_ID: TargetType.CELL,
            KeyField.LINE_ID: TargetType.BROADBAND_LINE,
        }[self.rule.key]
        return TaskTarget(type=kind, id=self.key)

    def task(
        self,
        tier: Tier,
        det: str,
        facts: dict[str, Any],
        scope: Mapping[str, Any],
        status: TaskStatus,
        sources: tuple[str, ...],
    ) -> InterventionTask:
        spec = tier.task
        assert spec is not None
        ev = self.event
        summary = self.renderer.render(spec.summary, self.template_scope(tier, facts, scope))
        if status is TaskStatus.RESOLVED:
            summary = f"RESOLVED: {summary}"
        return InterventionTask(
            task_id=task_id(det),
            correlation_id=det,
            rule_id=self.rule.id,
            tier=tier.name,
            status=status,
            queue=spec.queue,
            action=spec.action,
            priority=spec.priority,
            target=self.target(),
            due_by=(ev.event_time + timedelta(seconds=tier.due_in_s))
            if tier.due_in_s and status is TaskStatus.OPEN
            else None,
            summary=summary,
            facts=facts,
            event_time=ev.event_time,
            created_at=self.created_at,
            source_event_ids=sources,
            rule_version=self.rule.version,
        )

    def intent(
        self, tier: Tier, det: str, facts: dict[str, Any], resolved: bool, sources: tuple[str, ...]
    ) -> NoticeIntent:
        assert tier.notice is not None
        ev = self.event
        fan_out = tier.notice.audience is Audience.HOME_CELL
        subscriber = None if fan_out else getattr(ev, "subscriber_id", None)
        return NoticeIntent(
            detection_id=det,
            subscriber_id=subscriber,
            cell_id=self.key if fan_out else None,
            rule_id=self.rule.id,
            rule_version=self.rule.version,
            tier=tier.name,
            severity=tier.severity,
            category=self.rule.spec.category,
            resolved=resolved,
            facts=facts,
            event_time=ev.event_time,
            source_event_ids=sources,
        )


def evaluate(
    state: State | None,
    event: InputEvent,
    profile: CustomerProfile | None,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    renderer: Renderer | None = None,
) -> tuple[State, Result]:
    """Evaluate every enabled rule of the event's source against the key's
    state. Pure: returns a new state and never mutates `state`. A rule that
    fails is reported in `Result.failures` and keeps its previous state."""
    result = Result()
    old: State = state or {}
    seen: list[str] = old.get("seen", [])
    if event.event_id in seen:
        result.decisions.append(Decision("*", None, Reason.DUPLICATE_EVENT))
        return old, result
    key = key_of(event)
    prof = profile or default_profile(getattr(event, "subscriber_id", None) or key)
    env, acc = event_env(event, prof, old)
    new: State = {**old, "seen": [*seen[-(RECENT_EVENT_IDS - 1) :], event.event_id]}
    if acc is not None:
        new["acc"] = acc
    rule_states: dict[str, Any] = dict(old.get("rules", {}))
    made_at = created_at or event.event_time
    t = env["event_time"]
    render = renderer or _RENDERER
    for rule in _rules_for(event, rules):
        previous = rule_states.get(rule.id)
        if previous is not None and previous.get("shape") != rule.state_shape:
            previous = None  # the rule's meaning changed: start its state afresh
        rs = _copy_rule_state(previous, rule)
        before = (len(result.tasks), len(result.intents), len(result.fired))
        try:
            after = _RuleRun(rule, rs, event, key, made_at, render, result, t).run(env)
            if _is_fresh(after):
                rule_states.pop(rule.id, None)
            else:
                rule_states[rule.id] = after
        except Exception as exc:  # one broken rule must not stop the others
            del result.tasks[before[0] :], result.intents[before[1] :], result.fired[before[2] :]
            result.failures.append(RuleFailure(rule.id, f"{type(exc).__name__}: {exc}"))
    new["rules"] = rule_states
    return new, result


def _rules_for(event: InputEvent, rules: RuleSet) -> tuple[Rule, ...]:
    """The rules an event is evaluated against: its source's, and for a
    network event only those keyed like its scope (cell or line)."""
    if isinstance(event, NetworkQualityEvent):
        return rules.for_network(event.scope is NetworkScope.CELL)
    return rules.for_source(source_of(event))


def _is_fresh(rs: Mapping[str, Any]) -> bool:
    """True when a rule's state says nothing a missing one would not: no
    streak under way, no window, baseline, previous value, episode or
    de-duplication memory. Such states are not stored, so a key's record
    grows with the rules that have something to remember, not with the
    size of the rule set."""
    for name, value in rs.items():
        if name == "shape":
            continue
        if name == "streak":
            if any(streak.get("n", 0) for streak in value.values()):
                return False
        elif name == "clear":
            if value.get("n", 0):
                return False
        elif name == "chg":
            if value.get("value") is not None:
                return False
        elif value:
            return False
    return True


def _copy_rule_state(previous: dict[str, Any] | None, rule: Rule) -> dict[str, Any]:
    """A shallow copy: runs replace nested values instead of mutating them."""
    if previous is None:
        return {"shape": rule.state_shape}
    copied = dict(previous)
    if copied.get("episode"):
        copied["episode"] = dict(copied["episode"])
    return copied


_RENDERER = Renderer()
