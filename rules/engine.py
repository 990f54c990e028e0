"""The pure rule engine: `evaluate(state, event, profile, rules)` returns the
new state and what the detection produced. No Kafka, no clock, no metrics:
time comes from the event. The worker, `forewarn replay` and `forewarn rules
test` all call this same function, so the same input gives the same outputs
with the same ids.

State is one JSON-compatible dict per key (subscriber, cell or line), read
and written once per event whatever the number of rules (every name is
spelled out in `rules.state.EngineState`):

    {"seen": [recent event ids], "acc": {cycle: {service: used}},
     "series": {series_id: {"win", "base", "chg"}},
     "rules": {rule_id: {"shape", "streak", "clear", "episode", "sent"}},
     "policy": {...}}   # the notice policy's part (rules.policy)

A series is what a rule computes before its tiers (filter, measures,
window, baseline, change); rules with the same one share its computation
and its state. Rules whose conditions do not hold and that have nothing
under way are found by one generated check per series and cost no state,
so a large rule set costs little more than its few series.

Lifecycle of a rule for a key (after Prometheus' alerting rules): a tier's
condition must hold `for` N evaluations or a duration; the highest such tier
fires unless its de-duplication scope says it already did; firing opens an
episode, and lower tiers count as sent in it. `clear` (or, without it, no
tier condition holding) ends the episode: tasks get a `resolved` update and
notified subscribers a `resolved` notice where the tier defines one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC as _UTC
from datetime import datetime
from enum import Enum, StrEnum
from functools import partial
from types import MappingProxyType
from typing import Any, NamedTuple, TypeGuard

from rules.guard import Budget
from rules.identity import detection_id, resolution_id, task_id
from rules.model import Audience, DedupScope, KeyField, Source
from rules.names import fields_env, profile_env
from rules.places import local_timezone
from rules.ruleset import REPEAT_OF, STILL_AFFECTED, Persist, Plan, Rule, RuleSet, Tier
from rules.tasks import (
    Book,
    Opening,
    TaskEffects,
    advance,
    close_silently,
    condition_cleared,
    feedback,
    hold_notice,
    next_due,
    open_task,
    widen,
)
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
    NetworkQualityEvent,
    NetworkScope,
    NoticeIntent,
    NoticePart,
    Service,
    TargetType,
    TaskUpdate,
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
    MAINTENANCE = "maintenance"  # the key (or its area) is in planned work
    INHIBITED = "inhibited"  # an incident of the key's area covers it (`inhibited_by`)
    # the customer was told the work's outcome: the condition clearing later is not news
    OUTCOME_TOLD = "outcome_told"


@dataclass(frozen=True)
class Covers:
    """What covers a key from outside its own rules at this step: planned
    work on it or its area (`windows`, [start, end) in epoch seconds), and
    open incidents of other keys, as (rule id, that key) pairs."""

    windows: tuple[tuple[float, float], ...] = ()
    incidents: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Incident:
    """An episode of an inhibiting rule opened (or closed) on this key."""

    rule_id: str
    detection: str
    task_id: str | None
    open: bool


@dataclass(init=False)
class Decision:
    """A detection not sent, and why; never changed once made (`__init__`
    written out, not frozen: native when compiled)."""

    rule_id: str
    tier: str | None
    reason: Reason

    def __init__(self, rule_id: str, tier: str | None, reason: Reason) -> None:
        self.rule_id, self.tier, self.reason = rule_id, tier, reason


@dataclass(frozen=True)
class RuleFailure:
    rule_id: str
    message: str


@dataclass(init=False, slots=True)
class Result(TaskEffects):
    """What one step produced: tasks and notice intents (with the task
    transitions and a rejected feedback's reason from `TaskEffects`), and
    what the step decided not to send."""

    decisions: list[Decision]
    evaluated: list[str]
    fired: list[tuple[str, str]]
    failures: list[RuleFailure]
    incidents: list[Incident]

    def __init__(self) -> None:  # written out: native when compiled (dev/compile.py)
        # not super(): dataclass(slots=True) makes a new class, which the
        # zero-argument super() of a method written in the old one refuses
        TaskEffects.__init__(self)
        self.decisions = []
        self.evaluated = []
        self.fired = []
        self.failures = []
        self.incidents = []


def where_now(event: InputEvent) -> str | None:
    """The timezone the subscriber is in, when the event says so: its own
    `timezone`, else the roaming country's (`rules.places`)."""
    if type(event) is UsageEvent:
        return event.timezone or local_timezone(event.roaming_country)
    return None


def source_of(event: InputEvent) -> Source:
    if type(event) is UsageEvent:
        return Source.USAGE
    if type(event) is BillingEvent:
        return Source.BILLING
    return Source.NETWORK_QUALITY


def is_input_event(event: object) -> TypeGuard[InputEvent]:
    """Whether `event` is an input event. Here and in the per-event code,
    `type(x) is Model`, not `isinstance`: a pydantic model's metaclass is an
    `ABCMeta`, whose check costs ~145 ns when it fails (~25 when it holds),
    several times per event; input and output models are never subclassed."""
    kind = type(event)
    return kind is UsageEvent or kind is BillingEvent or kind is NetworkQualityEvent


def key_of(event: InputEvent) -> str:
    """The state key: subscriber for usage/billing, cell or line for network."""
    if type(event) is NetworkQualityEvent:
        return event.target_id
    subscriber = event.subscriber_id
    assert subscriber is not None  # usage and billing events name their subscriber
    return subscriber


def area_of(event: InputEvent) -> str:
    """The area (access node) of a line's event; only such events have one."""
    area = getattr(event, "area_id", None)
    assert area is not None, "only line events with an area_id go to their area"
    return str(area)


_MONTHS: dict[int, str] = {}  # UTC day number -> "YYYY-MM"


def cycle_of(event: InputEvent, at: float | None = None) -> str:
    """The billing cycle of an event: a usage event's own, else the UTC
    month of its time (`at`: that time in epoch seconds, when known)."""
    if type(event) is UsageEvent:
        return event.cycle_id
    t = event.event_time.timestamp() if at is None else at
    day = int(t // 86400)
    month = _MONTHS.get(day)
    if month is None:
        month = _MONTHS[day] = datetime.fromtimestamp(t, _UTC).strftime("%Y-%m")
    return month


def _quota(event: UsageEvent, profile: CustomerProfile | None) -> float | None:
    if event.cycle_quota is not None:
        return event.cycle_quota
    plan = profile.plan if profile is not None else None
    if plan is None:
        return None
    service = event.service
    if service is Service.DATA:
        return plan.data_quota_mb
    return plan.voice_quota_min if service is Service.VOICE else plan.sms_quota


def _accumulate(state: State, event: UsageEvent) -> tuple[dict[str, Any], float]:
    """Per subscriber, service and cycle: charging's `cycle_used` when given,
    else the running sum of `volume`. Keeps the two most recent cycles."""
    old: dict[str, dict[str, float]] = state.get("acc", {})
    cycle = dict(old.get(event.cycle_id, {}))
    service = str(event.service)  # not `.value`: interpreted code per call
    if event.cycle_used is not None:
        used = event.cycle_used
    else:
        used = cycle.get(service, 0.0) + event.volume
    cycle[service] = used
    if event.cycle_id in old or not old:  # the cycles kept stay the same
        return {**old, event.cycle_id: cycle}, used
    acc = {**old, event.cycle_id: cycle}
    keep = sorted(acc)[-2:]
    return {k: acc[k] for k in keep}, used


# a subscriber with no profile yet is read with the default one (its
# `profile.*` names do not depend on who it is)
_DEFAULT_PROFILE_ENV = profile_env(default_profile("-"))


def event_env(
    event: InputEvent, profile: CustomerProfile | None, state: State, at: float | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Names an expression can read for this event (`rules.names`), and
    the new usage accumulator (usage events only). Only subscriber events
    read a profile (None: the default one); a cell or a line has none."""
    env = fields_env(event, at)
    env["cycle"] = cycle_of(event, env["event_time"])
    if type(event) is NetworkQualityEvent:
        return env, None
    env.update(profile_env(profile) if profile is not None else _DEFAULT_PROFILE_ENV)
    acc = None
    if type(event) is UsageEvent:
        acc, used = _accumulate(state, event)
        env["cycle_used"] = used
        env["quota"] = _quota(event, profile)
    return env, acc


def _outcome_told(tier: Tier) -> bool:
    """Whether work reported done on the tier's task told its audience so
    (`outcomes.done`): then the condition clearing afterwards is not news."""
    outcomes = tier.task.outcomes if tier.task is not None else None
    return outcomes is not None and outcomes.done is not None


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


class _Step(Enum):
    """How far a series got for one event."""

    FILTERED = "filtered"  # the rule's filter rejected the event
    LATE = "late"  # older than the window: ignored
    OPEN = "open"  # added to a tumbling window that has not closed yet
    READY = "ready"  # values to evaluate the tiers on
    FAILED = "failed"


class _Computed(NamedTuple):
    """A series' outcome for one event: its new state (None: unchanged), and
    when READY the names the tiers read and the events behind them. (A named
    tuple: one is built per series and event, hundreds per event with a
    large rule set.)"""

    step: _Step
    state: dict[str, Any] | None = None
    scope: Mapping[str, Any] = MappingProxyType({})
    sources: tuple[str, ...] = ()
    error: str = ""
    affected: Mapping[str, str | None] = MappingProxyType({})  # an area's hit lines: subscriber


_FILTERED = _Computed(_Step.FILTERED)
_LATE = _Computed(_Step.LATE)
_NO_LINES: Mapping[str, str | None] = MappingProxyType({})
_NO_SCOPE: Mapping[str, Any] = MappingProxyType({})


def _compute(
    rule: Rule, previous: dict[str, Any] | None, env: dict[str, Any], t: float, event_id: str
) -> _Computed:
    """The series part of `rule` (filter, measures, window, baseline, change)
    for one event: the same for every rule with its series id."""
    if rule.filter is not None and not rule.filter.evaluate(env):
        return _FILTERED
    ss: dict[str, Any] = dict(previous) if previous else {}
    affected = _NO_LINES
    if rule.members is not None:
        ss["grp"], counts, affected = _group_step(ss.get("grp"), rule, env, t)
        env = {**env, **counts}
    values = rule.measure_values(env)
    scope = dict(env)
    sources: tuple[str, ...] = (event_id,)  # the events behind a detection
    if rule.window is None:
        for m, v in zip(rule.measures, values):  # noqa: B905 (one value per measure)
            scope[m.name] = v
    elif rule.window[0] == "sliding":
        entries = sliding_step(ss.get("win"), t, values, rule.window[1])
        if entries is None:
            return _LATE
        ss["win"] = entries
        for i, m in enumerate(rule.measures):
            assert m.aggregate is not None
            scope[m.name] = aggregate(m.aggregate, sliding_values(entries, i))
        scope["window_start"] = t - rule.window[1]
    else:
        win, closed = tumbling_step(ss.get("win"), t, values, rule.window[1], event_id)
        if win is None:
            return _LATE
        ss["win"] = win
        if closed is None:
            return _Computed(_Step.OPEN, ss)
        for i, m in enumerate(rule.measures):
            assert m.aggregate is not None
            scope[m.name] = aggregate(m.aggregate, closed["samples"][i])
        scope["window_start"] = closed["start"]
        scope["window_end"] = closed["start"] + rule.window[1]
        sources = tuple(closed["ids"])
    if rule.baseline is not None:
        b = rule.baseline
        v = b.of.evaluate(env)
        ss["base"], scope["baseline"], scope["history_days"] = baseline_step(
            ss.get("base"),
            t,
            v if isinstance(v, int | float) else None,
            b.per_s,
            b.lookback_s,
            b.min_history_s,
        )
    if rule.change is not None:
        current = rule.change.evaluate(env)
        prev = (ss.get("chg") or {}).get("value")
        scope.update(previous=prev, current=current, changed=current != prev)
        ss["chg"] = {"value": current}
    return _Computed(_Step.READY, ss, scope, sources, "", affected)


MAX_MEMBERS = 4096  # lines kept per area: a PON port has at most a few hundred


def _group_step(
    group: dict[str, Any] | None, rule: Rule, env: dict[str, Any], t: float
) -> tuple[dict[str, Any], dict[str, float], Mapping[str, str | None]]:
    """An area's lines: each one's latest measurement `[t, affected,
    subscriber]` within `members.within`; returns the new group, the counts
    the rule reads and the affected lines with their subscribers."""
    assert rule.members is not None
    lines = dict(group or {})
    line = env.get("line_id")
    if line is not None and (line not in lines or lines[line][0] <= t):
        lines[line] = [t, bool(rule.members.affected.evaluate(env)), env.get("subscriber_id")]
    newest = max((e[0] for e in lines.values()), default=t)
    lines = {k: e for k, e in lines.items() if e[0] > newest - rule.members.within_s}
    if len(lines) > MAX_MEMBERS:  # keep the most recent
        lines = dict(sorted(lines.items(), key=lambda kv: kv[1][0])[-MAX_MEMBERS:])
    hit = {k: e[2] for k, e in sorted(lines.items()) if e[1]}
    counts = {
        "members": float(len(lines)),
        "affected": float(len(hit)),
        "affected_share": len(hit) / len(lines) if lines else 0.0,
    }
    return lines, counts, MappingProxyType(hit)


def _during_work(
    windows: tuple[tuple[float, float], ...], scope: Mapping[str, Any], t: float
) -> bool:
    """Whether a detection's values were measured, at least in part, during
    planned work `[start, end)`: a closed tumbling window's samples (taken in
    `[window_start, window_end)`, judged at the first event after it, which
    may come after the work ended), a sliding window's (`[window_start, t]`),
    or the event's own time."""
    first = scope.get("window_start", t)
    end_of = scope.get("window_end")
    for start, end in windows:
        if first < end and (start < end_of if end_of is not None else start <= t):
            return True
    return False


class _RuleRun:
    """One rule's tiers for one event: builds the rule's new state (streaks,
    episode, de-duplication memory) from the series' values."""

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
        sources: tuple[str, ...],
        book: Book,
        covers: Covers | None = None,
        affected: Mapping[str, str | None] = MappingProxyType({}),
        inhibitors: frozenset[str] = frozenset(),
    ) -> None:
        self.inhibitors = inhibitors  # rules whose episodes other rules' covers follow
        self.book = book
        self.covers = covers
        self.affected = affected  # an area rule's hit lines, with their subscribers
        self.rule = rule
        self.rs = rs
        self.event = event
        self.key = key
        self.t = t  # the event's time in epoch seconds
        self.created_at = created_at
        self.renderer = renderer
        self.result = result
        self.sources = sources  # the events behind a detection: this one, or a closed window's

    # -- tiers, episodes, de-duplication ---------------------------------
    def tiers(self, scope: Mapping[str, Any], conds: list[bool], clear_cond: bool) -> None:
        """`conds`: each tier's condition, `clear_cond`: the clear condition
        (False without one). Streaks are kept only while under way."""
        rule, rs = self.rule, self.rs
        previous_streaks = rs.get("streak", {})
        streaks: dict[str, Any] = {}
        active: list[Tier] = []
        for tier, cond in zip(rule.tiers, conds, strict=True):
            if cond:
                streak = streaks[tier.name] = _advance(
                    previous_streaks.get(tier.name), True, self.t
                )
                if _holds(tier.persist, streak):
                    active.append(tier)
        rs["streak"] = streaks
        episode = rs.get("episode")
        if rule.clear is not None:
            previous_clear = rs.pop("clear", None)
            if clear_cond:
                rs["clear"] = _advance(previous_clear, True, self.t)
            cleared = clear_cond and _holds(rule.clear.persist, rs["clear"])
        else:
            cleared = not any(conds)
        if cleared:
            rs.pop("repeat", None)
        if episode and cleared:
            self.resolve(episode, scope)
            episode = rs["episode"] = None
        elif episode and self.book.done and self.not_fixed(episode, conds, scope):
            episode = rs["episode"] = None  # a new one opens, with a repeat task
        if episode and self.affected:
            rs["episode"] = episode = self.join(episode, scope)
        if not active:
            return
        top = active[-1]
        gated = self.gate(scope)
        if gated is not None:  # nothing is opened or sent; the streak goes on
            self.result.decisions.append(Decision(rule.id, top.name, gated))
            return
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

    def not_fixed(
        self, episode: dict[str, Any], conds: list[bool], scope: Mapping[str, Any]
    ) -> bool:
        """Work reported done while the episode's condition still held
        (`rules.tasks.Book.done`) is verified (`task.verify`): the tier's
        condition holding that long again after the report means the work
        did not fix it. Only values measured after the report count (a
        window's from its start). The episode then ends without a resolution,
        and the next firing opens a repeat task (`rs["repeat"]`: the task it
        repeats)."""
        measured = scope.get("window_start", self.t)
        holding = {t.name: (t, c) for t, c in zip(self.rule.tiers, conds, strict=True)}
        done = self.book.done
        failed = None
        for fired in episode.get("fired", []):
            found = done.get(fired["detection"])
            tier, cond = holding.get(fired["tier"], (None, False))
            if found is None or tier is None or tier.verify is None:
                continue
            if measured < found["at"] or self.t <= found["at"]:  # measured before the report
                continue
            streak = _advance(found.get("streak"), cond, self.t)
            if _holds(tier.verify, streak):
                failed = found["task"]
                break
            done[fired["detection"]] = {**found, "streak": streak}
        if failed is None:
            return False
        for fired in episode.get("fired", []):
            done.pop(fired["detection"], None)
        self.rs["repeat"] = failed
        return True

    def gate(self, scope: Mapping[str, Any]) -> Reason | None:
        """Planned work on the key, or an open incident that inhibits this rule."""
        covers = self.covers
        if covers is None:
            return None
        if self.rule.source is Source.NETWORK_QUALITY and _during_work(
            covers.windows, scope, self.t
        ):
            return Reason.MAINTENANCE
        for rule_id, on in self.rule.inhibited_by:
            if (rule_id, scope.get(on)) in covers.incidents:
                return Reason.INHIBITED
        return None

    def join(self, episode: dict[str, Any], scope: Mapping[str, Any]) -> dict[str, Any]:
        """Lines hit after an area's episode opened: their subscribers get
        the opening notice too (each once, by the detection's id), and the
        area's task lists them once the outage has grown by half
        (`rules.tasks.widen`), so the field team sees its real size."""
        told = episode.get("told", {})
        new = {line: sub for line, sub in self.affected.items() if line not in told}
        if not new:
            return episode
        hit = {**told, **new}
        by_name = {t.name: t for t in self.rule.tiers}
        for fired in episode.get("fired", []):
            tier = by_name.get(fired["tier"])
            if tier is None:
                continue
            if tier.task is not None:
                facts = self.facts(tier, scope)
                summary = self.renderer.render(
                    tier.task.summary, self.template_scope(tier, facts, scope)
                )
                subs = tuple(sorted({s for s in hit.values() if s}))
                widen(
                    self.book,
                    fired["detection"],
                    tuple(sorted(hit)),
                    subs,
                    summary,
                    self.event.event_time,
                    self.created_at,
                    self.result,
                )
            if tier.notice is None:
                continue
            for sub in sorted({s for s in new.values() if s}):
                self.result.intents.append(
                    self.intent(
                        tier,
                        fired["detection"],
                        fired["facts"],
                        NoticePart.OPENING,
                        self.sources,
                        subscriber=sub,
                    )
                )
        return {**episode, "told": hit}

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
        if tier.threshold is not None:  # texts need not repeat the tier's number
            facts["threshold"] = tier.threshold
        facts["key"] = self.key
        if self.rule.key is not KeyField.CELL_ID:  # whom a subscriber's or a line's task is for
            facts["subscriber_id"] = getattr(self.event, "subscriber_id", None)
        facts["cycle"] = scope["cycle"]
        return facts

    def template_scope(
        self, tier: Tier, facts: Mapping[str, Any], scope: Mapping[str, Any]
    ) -> dict[str, Any]:
        flat = {k: v for k, v in scope.items() if "." not in k}
        return {**flat, **facts, "rule_id": self.rule.id, "tier": tier.name}

    def fire(self, tier: Tier, scope: Mapping[str, Any], episode: dict[str, Any]) -> None:
        rule, ev = self.rule, self.event
        det = detection_id(rule.id, tier.name, self.key, ev.event_id)
        facts = self.facts(tier, scope)
        repeat = self.rs.pop("repeat", None)
        if repeat is not None:  # the task and the notice say what they repeat
            facts[REPEAT_OF] = repeat
        sources = self.sources
        self.result.fired.append((rule.id, tier.name))
        episode["fired"] = [
            *episode["fired"],
            {"tier": tier.name, "detection": det, "facts": facts, "sources": list(sources)},
        ]
        held = None
        if tier.task is not None:
            summary = self.renderer.render(
                tier.task.summary, self.template_scope(tier, facts, scope)
            )
            held = open_task(
                self.book,
                self.opening(tier, det, facts, summary, repeat),
                self.created_at,
                self.result,
            )
        if self.rule.id in self.inhibitors:
            tid = task_id(det) if tier.task is not None else None
            self.result.incidents.append(Incident(self.rule.id, det, tid, True))
        if tier.notice is None:
            return
        if self.rule.members is not None:  # an area: every hit line's subscriber
            episode["told"] = {**episode.get("told", {}), **self.affected}
            for sub in sorted({s for s in self.affected.values() if s}):
                self.result.intents.append(
                    self.intent(tier, det, facts, NoticePart.OPENING, sources, subscriber=sub)
                )
            return
        intent = self.intent(tier, det, facts, NoticePart.OPENING, sources)
        if held is not None:  # the customer hears of held work when it is released
            hold_notice(self.book, held, intent)
        else:
            self.result.intents.append(intent)

    def resolve(self, episode: dict[str, Any], scope: Mapping[str, Any]) -> None:
        by_name = {t.name: t for t in self.rule.tiers}
        if self.rule.id in self.inhibitors and episode.get("fired"):
            first = episode["fired"][0]["detection"]
            self.result.incidents.append(Incident(self.rule.id, first, None, False))
        for fired in episode.get("fired", []):
            tier = by_name.get(fired["tier"])
            done = self.book.done.pop(fired["detection"], None)
            if tier is None:
                continue
            facts = {**fired["facts"], "resolved_at": self.event.event_time.isoformat()}
            sources = (self.event.event_id,)
            if tier.task is not None:
                if tier.task.resolve:
                    condition_cleared(
                        self.book,
                        fired["detection"],
                        self.event.event_time,
                        self.created_at,
                        self.result,
                    )
                else:
                    close_silently(self.book, fired["detection"])
            if tier.notice is None or tier.notice.resolved is None:
                continue
            if done is not None and _outcome_told(tier):  # "repaired" was the news
                self.result.decisions.append(Decision(self.rule.id, tier.name, Reason.OUTCOME_TOLD))
                continue
            whom: list[tuple[str | None, dict[str, Any]]] = [(None, facts)]
            if self.rule.members is not None:
                # not "repaired" to a line still hit: its own rules take over. Its
                # subscriber is still sent the resolution, marked: the policy drops
                # their opening if it is still held, and never sends this
                told = episode.get("told", {})
                back = {s for ln, s in told.items() if s and ln not in self.affected}
                hit = {s for ln, s in told.items() if s and ln in self.affected} - back
                still = {**facts, STILL_AFFECTED: True}
                whom = sorted([(s, facts) for s in back] + [(s, still) for s in hit])
            for sub, told_facts in whom:
                self.result.intents.append(
                    self.intent(
                        tier,
                        resolution_id(fired["detection"]),
                        told_facts,
                        NoticePart.RESOLVED,
                        sources,
                        opening=fired["detection"],
                        subscriber=sub,
                    )
                )

    def target(self) -> TargetType:
        return {
            KeyField.SUBSCRIBER_ID: TargetType.SUBSCRIBER,
            KeyField.CELL_ID: TargetType.CELL,
            KeyField.LINE_ID: TargetType.BROADBAND_LINE,
            KeyField.AREA_ID: TargetType.AREA,
        }[self.rule.key]

    def opening(
        self,
        tier: Tier,
        det: str,
        facts: dict[str, Any],
        summary: str,
        repeat_of: str | None = None,
    ) -> Opening:
        """The task a detection opens, with whom its notices go to: the
        subscriber (of the event, or of the line), or the cell's home
        subscribers."""
        cell = self.key if self.rule.key is KeyField.CELL_ID else None
        area = self.rule.key is KeyField.AREA_ID
        return Opening(
            rule_id=self.rule.id,
            rule_version=self.rule.version,
            tier=tier,
            detection=det,
            key=self.key,
            target=self.target(),
            subscriber=None if cell or area else getattr(self.event, "subscriber_id", None),
            cell=cell,
            severity=tier.severity,
            category=self.rule.spec.category,
            facts=facts,
            summary=summary,
            at=self.event.event_time,
            sources=self.sources,
            lines=tuple(self.affected),
            subscribers=tuple(sorted({s for s in self.affected.values() if s})),
            repeat_of=repeat_of,
            milder=tuple(t.name for t in self.rule.tiers[: tier.index]),
        )

    def intent(
        self,
        tier: Tier,
        det: str,
        facts: dict[str, Any],
        part: NoticePart,
        sources: tuple[str, ...],
        opening: str | None = None,
        subscriber: str | None = None,
    ) -> NoticeIntent:
        assert tier.notice is not None
        ev = self.event
        fan_out = tier.notice.audience is Audience.HOME_CELL
        if subscriber is None and not fan_out:
            subscriber = getattr(ev, "subscriber_id", None)
        return NoticeIntent(
            detection_id=det,
            subscriber_id=subscriber,
            cell_id=self.key if fan_out else None,
            rule_id=self.rule.id,
            rule_version=self.rule.version,
            tier=tier.name,
            severity=tier.severity,
            category=self.rule.spec.category,
            part=part,
            opening_id=opening,
            timezone=where_now(ev),
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
    budget: Budget | None = None,
    area: bool = False,
    covers: Covers | None = None,
    at: float | None = None,
) -> tuple[State, Result]:
    """Evaluate every enabled rule of the event's source against the key's
    state (with `area`, a line's event against its area's rules, keyed by
    `area_id`). `covers`: planned work and incidents covering the key;
    `at`: the event's time in epoch seconds, when the caller has it. Pure:
    returns a new state and never mutates `state`. A rule that fails is
    reported in `Result.failures` and keeps its previous state.

    Rules sharing a series (`Rule.series_id`) compute it once; each rule then
    evaluates its tiers. A rule with no condition holding and nothing under
    way is not given any state."""
    result = Result()
    old: State = state or {}
    seen: list[str] = old.get("seen", [])
    if event.event_id in seen:
        result.decisions.append(Decision("*", None, Reason.DUPLICATE_EVENT))
        return old, result
    env, acc = event_env(event, profile, old, at)
    new: State = {**old, "seen": [*seen[-(RECENT_EVENT_IDS - 1) :], event.event_id]}
    if acc is not None:
        new["acc"] = acc
    book = Book.of(old, budget)
    t = env["event_time"]
    made_at = created_at or event.event_time
    render = renderer or _RENDERER
    if book.open:  # promises due by this event's time
        advance(book, t, rules, created_at, render, result)
    old_rules, old_series = _layout(old, rules)
    known = rules.series_ids
    series_states = {sid: ss for sid, ss in old_series.items() if sid in known}
    rule_states: dict[str, Any] = dict(old_rules)
    plan = _plan_for(event, rules, area)
    computed, visit = _series_phase(
        plan, series_states, rule_states, env, t, event.event_id, result.evaluated
    )
    key = (area_of(event) if area else key_of(event)) if visit else ""
    for position in sorted(visit):  # file order, as outputs must be
        rule = plan.rules[position]
        series = computed[rule.series_id]
        if series.step is _Step.READY:
            run = partial(
                _RuleRun,
                rule,
                event=event,
                key=key,
                created_at=made_at,
                renderer=render,
                result=result,
                t=t,
                sources=series.sources,
                book=book,
                covers=covers,
                affected=series.affected,
                inhibitors=rules.inhibitors,
            )
            _tiers_phase(rule, run, rule_states, series.scope, result, book)
        elif series.step is _Step.LATE:
            result.decisions.append(Decision(rule.id, None, Reason.LATE_EVENT))
        elif series.step is _Step.FAILED:
            result.failures.append(RuleFailure(rule.id, series.error))
    new["rules"] = rule_states
    new["series"] = series_states
    book.store(new)
    return new, result


def advance_clock(
    state: State | None,
    now: datetime,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    renderer: Renderer | None = None,
    budget: Budget | None = None,
) -> tuple[State, Result]:
    """The key's promises due at `now` (the partition's stream time, or a
    live tick): overdue tasks escalate. Pure; the outputs are dated at each
    task's due time, so they do not depend on which clock noticed them."""
    result = Result()
    old: State = state or {}
    if next_due(old.get("tasks", {})) is None:
        return old, result
    book = Book.of(old, budget)
    advance(book, now.timestamp(), rules, created_at, renderer or _RENDERER, result)
    new = dict(old)
    book.store(new)
    return new, result


def apply_feedback(
    state: State | None,
    update: TaskUpdate,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    renderer: Renderer | None = None,
    budget: Budget | None = None,
) -> tuple[State, Result]:
    """A work system's report on one of the key's tasks. An unknown task,
    one already closed, or the same status again changes nothing and says
    why in `Result.rejected`."""
    result = Result()
    old: State = state or {}
    book = Book.of(old, budget)
    feedback(book, update, rules, created_at or update.at, renderer or _RENDERER, result)
    if result.rejected is not None:
        return old, result
    new = dict(old)
    book.store(new)
    return new, result


def due_at(state: State | None) -> float | None:
    """When the key's next promise falls due (epoch seconds), if any."""
    return next_due((state or {}).get("tasks", {}))


def _series_phase(
    plan: Plan,
    series_states: dict[str, Any],
    rule_states: Mapping[str, Any],
    env: dict[str, Any],
    t: float,
    event_id: str,
    evaluated: list[str],
) -> tuple[dict[str, _Computed], set[int]]:
    """Compute each series of the plan once (updating `series_states`), and
    pick the rules to visit: those with a condition holding or a state under
    way, and every rule of a late or failed series."""
    computed: dict[str, _Computed] = {}
    visit = {plan.position[r] for r in rule_states if r in plan.position}
    for group in plan.groups:
        sid = group.first.series_id
        series = computed[sid] = _compute_safely(
            group.first, series_states.get(sid), env, t, event_id
        )
        if series.state:
            series_states[sid] = series.state
        if series.step is _Step.READY:
            evaluated.extend(group.rule_ids)
            try:
                visit.update(group.check(series.scope))
            except Exception:  # let each rule fail (or not) on its own
                visit.update(group.members)
        elif series.step is _Step.LATE or series.step is _Step.FAILED:
            visit.update(group.members)
    return computed, visit


def _tiers_phase(
    rule: Rule,
    run: Callable[..., _RuleRun],
    rule_states: dict[str, Any],
    scope: Mapping[str, Any],
    result: Result,
    book: Book,
) -> None:
    """One rule's tiers on its series' values; its state in `rule_states`
    is replaced, dropped when fresh, or kept as it was when the rule fails
    (the key's tasks too). `run(rs=...)` builds the rule's run, only when
    something holds."""
    previous = rule_states.get(rule.id)
    if previous is not None and previous.get("shape") != rule.state_shape:
        previous = None  # the rule's meaning changed: start its state afresh
    try:
        conds = [bool(tier.when.evaluate(scope)) for tier in rule.tiers]
        clear_cond = rule.clear is not None and bool(rule.clear.when.evaluate(scope))
    except Exception as exc:  # one broken rule must not stop the others
        result.failures.append(RuleFailure(rule.id, f"{type(exc).__name__}: {exc}"))
        return
    if previous is None and not clear_cond and not any(conds):
        return  # fresh and nothing holds: stays fresh
    before = (len(result.tasks), len(result.intents), len(result.fired), len(result.transitions))
    tasks_before = (dict(book.open), list(book.closed), dict(book.done))
    try:
        rs = _copy_rule_state(previous, rule)
        run(rs=rs).tiers(scope, conds, clear_cond)
        if _is_fresh(rs):
            rule_states.pop(rule.id, None)
        else:
            rule_states[rule.id] = rs
    except Exception as exc:  # its outputs and task changes are undone
        del result.tasks[before[0] :], result.intents[before[1] :], result.fired[before[2] :]
        del result.transitions[before[3] :]
        book.open, book.closed, book.done = tasks_before
        result.failures.append(RuleFailure(rule.id, f"{type(exc).__name__}: {exc}"))


def _compute_safely(
    rule: Rule, previous: dict[str, Any] | None, env: dict[str, Any], t: float, event_id: str
) -> _Computed:
    try:
        return _compute(rule, previous, env, t, event_id)
    except Exception as exc:  # its rules fail; the series keeps its state
        return _Computed(_Step.FAILED, None, _NO_SCOPE, (), f"{type(exc).__name__}: {exc}")


_SERIES_PARTS = ("win", "base", "chg")


def _layout(old: State, rules: RuleSet) -> tuple[dict[str, Any], dict[str, Any]]:
    """The key's rule states and series states. A state written before
    series existed (no "series" entry) kept windows, baselines and change
    values in each rule's state: they move to the rule's series, so an
    upgrade loses no window or baseline history."""
    old_rules: dict[str, Any] = old.get("rules", {})
    if "series" in old or not old_rules:
        return old_rules, old.get("series", {})
    series: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    for rule_id, rs in old_rules.items():
        rule = rules.rule(rule_id)
        parts = {k: rs[k] for k in _SERIES_PARTS if k in rs}
        if parts and rule is not None and rs.get("shape") == rule.state_shape:
            series.setdefault(rule.series_id, parts)
        moved[rule_id] = {k: v for k, v in rs.items() if k not in _SERIES_PARTS}
    return moved, series


def _plan_for(event: InputEvent, rules: RuleSet, area: bool = False) -> Plan:
    """The rules an event is evaluated against: its source's, and for a
    network event only those keyed like its scope (cell or line), or, for a
    line's event evaluated for its area, those keyed by area."""
    if type(event) is NetworkQualityEvent:
        if area:
            return rules.plan(Source.NETWORK_QUALITY, KeyField.AREA_ID)
        cell = event.scope is NetworkScope.CELL
        return rules.plan(Source.NETWORK_QUALITY, KeyField.CELL_ID if cell else KeyField.LINE_ID)
    return rules.plan(source_of(event))


def _is_fresh(rs: Mapping[str, Any]) -> bool:
    """True when a rule's state says nothing a missing one would not. After
    `_RuleRun.tiers` a rule state holds only what is under way (streaks with
    a count, a clear streak, an episode, de-duplication memory), so it is
    fresh when all of that is empty. Such states are not stored, so a key's
    record grows with the rules that have something to remember, not with
    the size of the rule set."""
    return not any(value for name, value in rs.items() if name != "shape")


def _copy_rule_state(previous: dict[str, Any] | None, rule: Rule) -> dict[str, Any]:
    """A shallow copy: runs replace nested values instead of mutating them."""
    if previous is None:
        return {"shape": rule.state_shape}
    copied = dict(previous)
    if copied.get("episode"):
        copied["episode"] = dict(copied["episode"])
    return copied


_RENDERER = Renderer()
