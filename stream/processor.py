"""The per-record work behind the agents, free of Faust: decode a raw record,
apply the pure step from `rules.records` to its key's record, and say what to
send and what to write. One error boundary: whatever happens, the caller gets
an `Outcome` (possibly just a dead letter), never an exception.

Two processors, one per key space (and per agent and table):

- `subscriber`: usage and billing events, profiles, notice intents from
  other keys, and task updates (those for a cell or a line are forwarded to
  the network key space), against the subscriber record (profile + engine
  state + notice policy state): one read and one write per record.
- `network`: network-quality events and forwarded task updates against the
  cell's or line's record; cell-membership changes against the cell's
  member list.

Each key space keeps the event-time clock of `rules.agenda` per partition:
an input event (or intent) moves its partition's clock, and every key of
the partition with something due by then (a task's promise, a held notice)
is handled first, in the same record's step. A clock record (`tick`), sent
by the worker's live trigger, moves a partition's clock when no traffic
does (see `stream.app`).

The rule set is swapped atomically by hot reload (`self.rules = ...`); the
next record uses it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import BaseModel

from rules.agenda import Agenda
from rules.engine import Reason, is_input_event, key_of
from rules.guard import BUDGET_KEY, Budget
from rules.policy import PolicyReason
from rules.records import (
    Effects,
    Record,
    apply_area,
    apply_clock,
    apply_event,
    apply_intent,
    apply_mark,
    apply_membership,
    apply_profile,
    apply_task_update,
    apply_window,
    decode_members,
    decode_record,
    due_of,
    encode_members,
    encode_record,
    goes_to_area,
)
from rules.ruleset import RuleSet
from rules.tasks import FeedbackReason
from schemas import (
    BillingEvent,
    CellMembership,
    CoverMark,
    CustomerNotice,
    CustomerProfile,
    DeadLetter,
    DeadLetterReason,
    InterventionTask,
    MaintenanceWindow,
    NetworkQualityEvent,
    NoticeIntent,
    TargetType,
    TaskChange,
    TaskUpdate,
    UsageEvent,
)
from sinks import MAX_RECORD_BYTES, OutputRecord, encode, fits
from sinks.routing import intent_records, partition_of
from stream.decoding import Problems, RawRecord, dead_letter, decode, decode_many, events_of
from stream.logs import mask
from stream.metrics import InputSource, Metrics
from stream.settings import Settings
from stream.workload import Workload

log = logging.getLogger("forewarn.processor")
Clock = Callable[[], datetime]
Lookup = Callable[[bytes], bytes | None]
SUBSCRIBERS = "subscribers"
NETWORK = "network"


@dataclass(init=False)
class Outcome:
    """What to do for one input record: send `outputs` and `internal`
    records and write `record`/`members`/`others` to the store; the next
    checkpoint makes them durable in that order, outputs first
    (`stream.checkpoint`), so a crash in between replays the input and
    resends the same outputs with the same ids. (`__init__` written out:
    native when compiled, dev/compile.py.)"""

    outputs: list[OutputRecord]
    internal: list[tuple[str, bytes, bytes]]  # topic, key, value
    record: bytes | None  # new key record, None = unchanged
    members: bytes | None  # new cell member list, None = unchanged
    # new records of other keys in the record's partition (a batch of notice
    # intents for several subscribers), written with `record`
    others: dict[bytes, bytes]

    def __init__(
        self,
        outputs: list[OutputRecord] | None = None,
        internal: list[tuple[str, bytes, bytes]] | None = None,
        record: bytes | None = None,
        members: bytes | None = None,
        others: dict[bytes, bytes] | None = None,
    ) -> None:
        self.outputs = [] if outputs is None else outputs
        self.internal = [] if internal is None else internal
        self.record = record
        self.members = members
        self.others = {} if others is None else others


def wall_clock() -> datetime:
    return datetime.now(UTC)


def no_record(key: bytes) -> bytes | None:
    return None


def _spent(lookup: Lookup, key: bytes) -> dict[str, Any] | None:
    """A partition's guard budget counters, from its record."""
    spent: dict[str, Any] | None = decode_record(lookup(key)).get("spent")
    return spent


class _Work:
    """The records one input record touches in its partition: its key's,
    and other keys' (due work, a batch of intents), each decoded once and
    encoded once; due times are noted in the key space's agenda."""

    def __init__(
        self,
        space: str,
        raw: RawRecord,
        current: bytes | None,
        lookup: Lookup,
        agenda: Agenda,
        members: Lookup = no_record,
        partitions: int = 1,
    ) -> None:
        self.space, self.raw, self.current, self.lookup = space, raw, current, lookup
        self.agenda, self.members_of = agenda, members
        self.records: dict[bytes, Record] = {}
        # the partition's guard budget, its own record in the partition's table
        # (the key names the partition: writes in flight are looked up by key)
        self.budget_key = f"{BUDGET_KEY}:{raw.partition}".encode()
        # (read through `lookup`, not `self`: a closure over `self` would make
        # every record's work a reference cycle, left to the garbage collector)
        self.budget = Budget(partitions=partitions, load=partial(_spent, lookup, self.budget_key))

    def get(self, key: bytes) -> Record:
        if key not in self.records:
            data = self.current if key == self.raw.key else self.lookup(key)
            self.records[key] = decode_record(data)
        return self.records[key]

    def put(self, key: bytes, record: Record) -> None:
        self.records[key] = record
        if self.raw.partition is not None:
            self.agenda.note(self.raw.partition, key.decode("utf-8", "replace"), due_of(record))

    def members(self, key: bytes) -> Callable[[], tuple[str, ...]]:
        return lambda: tuple(decode_members(self.members_of(key)))

    def finish(self, outcome: Outcome) -> Outcome:
        if self.budget.changed:
            self.records[self.budget_key] = {"spent": self.budget.state}
        for key, record in self.records.items():
            if key == self.raw.key:
                outcome.record = encode_record(record)
            else:
                outcome.others[key] = encode_record(record)
        return outcome


class Processor:
    def __init__(
        self, settings: Settings, rules: RuleSet, metrics: Metrics, clock: Clock = wall_clock
    ) -> None:
        self.metrics = metrics
        self.rules = rules
        self.clock = clock
        self.partitions = settings.partitions
        t = settings.topic
        self.usage, self.billing = t("usage_events"), t("billing_events")
        self.profiles, self.network_quality = t("customer_profiles"), t("network_quality_events")
        self.task_updates = t("task_updates")
        self.windows = t("maintenance_windows")
        self.intents = settings.internal_topic("notice-intents")
        self.area_samples = settings.internal_topic("area-samples")
        self.marks = settings.internal_topic("network-marks")
        self.subscriber_marks = settings.internal_topic("subscriber-marks")
        self.membership = settings.internal_topic("cell-membership")
        self.network_updates = settings.internal_topic("task-updates-network")
        self.clocks = {
            SUBSCRIBERS: settings.internal_topic("clock-subscribers"),
            NETWORK: settings.internal_topic("clock-network"),
        }
        self.sources = {
            self.usage: InputSource.USAGE,
            self.billing: InputSource.BILLING,
            self.profiles: InputSource.PROFILES,
            self.network_quality: InputSource.NETWORK_QUALITY,
            self.task_updates: InputSource.TASK_UPDATES,
            self.intents: InputSource.NOTICE_INTENTS,
            self.membership: InputSource.CELL_MEMBERSHIP,
            self.network_updates: InputSource.TASK_UPDATES_NETWORK,
            self.windows: InputSource.MAINTENANCE_WINDOWS,
            self.area_samples: InputSource.AREA_SAMPLES,
            self.marks: InputSource.NETWORK_MARKS,
            self.subscriber_marks: InputSource.SUBSCRIBER_MARKS,
            self.clocks[SUBSCRIBERS]: InputSource.CLOCK,
            self.clocks[NETWORK]: InputSource.CLOCK,
        }
        # the per-record metrics' children, looked up once (a labels() call costs ~2 µs)
        self.consumed = {topic: metrics.events.labels(src) for topic, src in self.sources.items()}
        self.engine_time = metrics.processing.labels("engine")
        self.agendas = {SUBSCRIBERS: Agenda(), NETWORK: Agenda()}
        self.bounds = settings.time_bounds
        self.workload = {SUBSCRIBERS: Workload(), NETWORK: Workload()}

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @rules.setter
    def rules(self, rules: RuleSet) -> None:
        self.metrics.declare(
            (rule.id for rule in rules.rules),
            (*(r.value for r in Reason), *(r.value for r in PolicyReason)),
        )
        self._rules = rules

    # -- the two agents' entry points ------------------------------------

    def subscriber(
        self, raw: RawRecord, current: bytes | None, lookup: Lookup = no_record
    ) -> Outcome:
        """`current` is the record of `raw.key`; `lookup` gives the records of
        other subscribers of the partition (a batch of notice intents)."""
        return self._guarded(raw, lambda now: self._subscriber(raw, current, lookup, now))

    def network(
        self,
        raw: RawRecord,
        current: bytes | None,
        lookup: Lookup = no_record,
        members: Lookup = no_record,
    ) -> Outcome:
        """`lookup` gives the records of other cells and lines of the
        partition (due work), `members` a cell's member list."""
        return self._guarded(raw, lambda now: self._network(raw, current, lookup, members, now))

    def consumed_of(self, topic: str) -> Any:
        child = self.consumed.get(topic)
        return child if child is not None else self.metrics.events.labels("unknown")

    # -- dispatch ----------------------------------------------------------

    def _guarded(self, raw: RawRecord, work: Callable[[datetime], Outcome]) -> Outcome:
        now = self.clock()
        self.consumed_of(raw.topic).inc()
        try:
            return work(now)
        except Exception as exc:  # the error boundary: one bad record must not stop the stream
            log.exception("processing failed at %s", raw.where)
            return self._dead(
                raw, DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}", now
            )

    def _subscriber(
        self, raw: RawRecord, current: bytes | None, lookup: Lookup, now: datetime
    ) -> Outcome:
        if raw.topic == self.profiles:
            return self._profile(raw, current, now)
        if raw.topic == self.intents:
            return self._intents(raw, current, lookup, now)
        work = _Work(
            SUBSCRIBERS, raw, current, lookup, self.agendas[SUBSCRIBERS], partitions=self.partitions
        )
        if raw.topic == self.task_updates:
            return self._task_update(raw, work, now)
        if raw.topic == self.clocks[SUBSCRIBERS]:
            return self._tick(raw, work, now)
        if raw.topic == self.subscriber_marks:
            return self._mark(raw, work, now)
        model: type[BaseModel] = UsageEvent if raw.topic == self.usage else BillingEvent
        return self._events(raw, work, model, now)

    def _network(
        self,
        raw: RawRecord,
        current: bytes | None,
        lookup: Lookup,
        members: Lookup,
        now: datetime,
    ) -> Outcome:
        work = _Work(NETWORK, raw, current, lookup, self.agendas[NETWORK], members, self.partitions)
        if raw.topic == self.network_updates:
            return self._task_update(raw, work, now)
        if raw.topic == self.clocks[NETWORK]:
            return self._tick(raw, work, now)
        if raw.topic == self.windows:
            return self._window(raw, work, now)
        if raw.topic == self.area_samples:
            return self._area(raw, work, now)
        if raw.topic == self.marks:
            return self._mark(raw, work, now)
        if raw.topic == self.membership:
            change = self._decode(raw, CellMembership, now)
            if isinstance(change, Outcome):
                return change
            assert isinstance(change, CellMembership)
            before = decode_members(current)
            after = apply_membership(before, change)
            return Outcome(members=encode_members(after) if after != before else None)
        return self._events(raw, work, NetworkQualityEvent, now)

    # -- steps ---------------------------------------------------------------

    def _events(
        self, raw: RawRecord, work: _Work, model: type[BaseModel], now: datetime
    ) -> Outcome:
        """The record's event, or each event of a batch in order, against the
        key's record: one decode and one encode of the record per Kafka record.
        The refused events of a record cost one dead letter."""
        good, problems = events_of(raw, model, event_key)
        outcome = Outcome()
        total = len(good) + len(problems.items)
        if total > 1:
            self.consumed_of(raw.topic).inc(total - 1)
        partition = raw.partition if raw.partition is not None else -1
        agenda = self.agendas[work.space]
        now_s = now.timestamp()
        key = raw.key or b""  # a record without a key has no good events (events_of)
        members = work.members(key)
        observe = self.engine_time.observe
        for at, event in good:
            assert is_input_event(event)
            start = time.perf_counter()
            t = event.event_time.timestamp()
            implausible = agenda.implausible(partition, t, now_s, self.bounds)
            if implausible is not None:  # moves no clock and no state
                problems.add(at.index or 0, DeadLetterReason.IMPLAUSIBLE_TIME, implausible)
                continue
            self._fire_due(work, t, now, outcome)
            current = work.get(key)
            if work.space == SUBSCRIBERS and "profile" not in current:
                # evaluated with the default profile: a profile not sent yet, or in flight
                self.metrics.without_profile.labels(self.sources.get(raw.topic, "unknown")).inc()
            record, effects = apply_event(
                current,
                event,
                self.rules,
                created_at=now,
                members=members,
                budget=work.budget,
                at=t,
            )
            work.put(key, record)
            self._outcome(at, effects, now, outcome)
            self._fire_due(work, None, now, outcome)
            if goes_to_area(event, self.rules):  # again for its area, in the area's partition
                assert isinstance(event, NetworkQualityEvent) and event.area_id is not None
                outcome.internal.append(
                    (self.area_samples, event.area_id.encode(), event.model_dump_json().encode())
                )
            observe(time.perf_counter() - start)
        self._refused(problems, total, now, outcome)
        return work.finish(outcome)

    def _refused(self, problems: Problems, total: int, now: datetime, outcome: Outcome) -> None:
        """Count each refused item; send the record's one dead letter."""
        for _, kind, _ in problems.items:
            self._count_invalid(problems.raw, kind)
        letter = problems.dead_letter(now, total)
        if letter is not None:
            outcome.outputs.append(encode(letter))

    def _fire_due(self, work: _Work, t: float | None, now: datetime, outcome: Outcome) -> None:
        """Move the partition's clock to `t` (None: leave it) and handle
        every key of the partition with something due by then (`rules.agenda`)."""
        partition = work.raw.partition
        if partition is None:
            return
        taken = self.agendas[work.space].take_due(partition, t)
        if taken is None:
            return
        at, due = taken
        for key in due:
            k = key.encode()
            record, effects = apply_clock(
                work.get(k),
                key,
                work.space == SUBSCRIBERS,
                at,
                self.rules,
                created_at=now,
                members=work.members(k),
                budget=work.budget,
            )
            work.put(k, record)
            if work.space == NETWORK:
                self.workload[NETWORK].window(partition, key, record.get("maint"))
            self._outcome(work.raw, effects, now, outcome)

    def _tick(self, raw: RawRecord, work: _Work, now: datetime) -> Outcome:
        """A clock record from the live trigger: `{"at": RFC 3339}`."""
        try:
            at = datetime.fromisoformat(json.loads(raw.value or b"")["at"])
            if at.tzinfo is None:
                raise ValueError("'at' needs a UTC offset")
        except (ValueError, KeyError, TypeError) as exc:
            return self._dead(raw, DeadLetterReason.INVALID_JSON, f"not a clock record: {exc}", now)
        outcome = Outcome()
        self._fire_due(work, at.timestamp(), now, outcome)
        return work.finish(outcome)

    def _task_update(self, raw: RawRecord, work: _Work, now: datetime) -> Outcome:
        """A work system's report on a task, keyed by the task's target id.
        Reports on cells and lines are forwarded to the network key space."""
        decoded = self._decode(raw, TaskUpdate, now)
        if isinstance(decoded, Outcome):
            return decoded
        assert isinstance(decoded, TaskUpdate)
        update, key = decoded, decoded.target.id
        status = update.status.value
        if raw.key is None or raw.key.decode("utf-8", "replace") != key:
            self.metrics.feedback.labels(status, DeadLetterReason.KEY_MISMATCH).inc()
            return self._dead(
                raw,
                DeadLetterReason.KEY_MISMATCH,
                f"task updates are keyed by the task's target id ({mask(key)});"
                " state is partitioned by it",
                now,
            )
        subscriber = update.target.type is TargetType.SUBSCRIBER
        if work.space == SUBSCRIBERS and not subscriber:
            return Outcome(internal=[(self.network_updates, raw.key, raw.value or b"")])
        record, effects = apply_task_update(
            work.get(raw.key),
            key,
            subscriber,
            update,
            self.rules,
            created_at=now,
            members=work.members(raw.key),
            budget=work.budget,
        )
        result = effects.rejected.value if effects.rejected else "applied"
        self.metrics.feedback.labels(status, result).inc()
        if effects.rejected is FeedbackReason.UNKNOWN_TASK:
            return self._dead(
                raw,
                DeadLetterReason.UNKNOWN_TASK,
                f"no open or recent task {update.task_id} on this key",
                now,
            )
        if effects.rejected is not None:
            return Outcome()  # redelivered, late, or the same status again
        work.put(raw.key, record)
        outcome = self._outcome(raw, effects, now)
        self._fire_due(work, None, now, outcome)
        return work.finish(outcome)

    def _window(self, raw: RawRecord, work: _Work, now: datetime) -> Outcome:
        """Planned work on the record's key (a cell, line or area); a
        tombstone withdraws it. Its notices fall due on the clock."""
        if raw.key is None:
            return self._dead(
                raw, DeadLetterReason.MISSING_KEY, "maintenance windows are keyed by target id", now
            )
        key = raw.key.decode("utf-8", "replace")
        window: MaintenanceWindow | None = None
        if raw.value is not None:
            decoded = self._decode(raw, MaintenanceWindow, now)
            if isinstance(decoded, Outcome):
                return decoded
            assert isinstance(decoded, MaintenanceWindow)
            if decoded.target.id != key:
                return self._dead(
                    raw,
                    DeadLetterReason.KEY_MISMATCH,
                    "a maintenance window is keyed by its target id",
                    now,
                )
            window = decoded
        at = window.planned_at if window is not None else now
        record, effects = apply_window(work.get(raw.key), key, window, at)
        work.put(raw.key, record)
        if raw.partition is not None:
            self.workload[NETWORK].window(raw.partition, key, record.get("maint"))
        outcome = self._outcome(raw, effects, now)
        self._fire_due(work, None, now, outcome)
        return work.finish(outcome)

    def _area(self, raw: RawRecord, work: _Work, now: datetime) -> Outcome:
        """A line's event for its area (`area-samples`, keyed by area id)."""
        decoded = self._decode(raw, NetworkQualityEvent, now)
        if isinstance(decoded, Outcome):
            return decoded
        assert isinstance(decoded, NetworkQualityEvent) and raw.key is not None
        event = decoded
        outcome = Outcome()
        self._fire_due(work, event.event_time.timestamp(), now, outcome)
        record, effects = apply_area(
            work.get(raw.key), event, self.rules, created_at=now, budget=work.budget
        )
        work.put(raw.key, record)
        self._outcome(raw, effects, now, outcome)
        self._fire_due(work, None, now, outcome)
        return work.finish(outcome)

    def _mark(self, raw: RawRecord, work: _Work, now: datetime) -> Outcome:
        """What covers a line (from its area) or a subscriber (from its home
        cell) now: `network-marks` and `subscriber-marks`, keyed by the covered key."""
        decoded = self._decode(raw, CoverMark, now)
        if isinstance(decoded, Outcome):
            return decoded
        assert isinstance(decoded, CoverMark) and raw.key is not None
        record, effects = apply_mark(work.get(raw.key), decoded, self.rules, created_at=now)
        work.put(raw.key, record)
        outcome = self._outcome(raw, effects, now)
        return work.finish(outcome)

    def _intents(
        self, raw: RawRecord, current: bytes | None, lookup: Lookup, now: datetime
    ) -> Outcome:
        """Notice intents from cell and line detections, each through its
        subscriber's notice policy. A record holds one intent (keyed by its
        subscriber) or a JSON array of intents for subscribers of this
        partition (`intent_records`). An intent's time moves the partition's
        clock like an event's."""
        outcome = Outcome()
        work = _Work(
            SUBSCRIBERS, raw, current, lookup, self.agendas[SUBSCRIBERS], partitions=self.partitions
        )
        decoded = decode_many(raw, NoticeIntent)
        problems = Problems(raw, batch=len(decoded) > 1)
        for i, intent in enumerate(decoded):
            if isinstance(intent, tuple):
                problems.add(i, *intent)
                continue
            at = raw.item(i) if problems.batch else raw
            sid = self._intent_subscriber(at, intent, now)
            if isinstance(sid, Outcome):
                outcome.outputs.extend(sid.outputs)
                continue
            self._fire_due(work, intent.event_time.timestamp(), now, outcome)
            record, effects = apply_intent(
                work.get(sid), sid.decode("utf-8", "replace"), intent, self.rules, created_at=now
            )
            work.put(sid, record)
            self._outcome(at, effects, now, outcome)
            self._fire_due(work, None, now, outcome)
        self._refused(problems, len(decoded), now, outcome)
        return work.finish(outcome)

    def _intent_subscriber(
        self, raw: RawRecord, intent: NoticeIntent, now: datetime
    ) -> bytes | Outcome:
        """The intent's subscriber, or a dead letter when it has none or its
        state lives in another partition than the record's."""
        sid = intent.subscriber_id.encode() if intent.subscriber_id else raw.key
        if sid is None:
            return self._dead(
                raw, DeadLetterReason.MISSING_KEY, "notice intents name their subscriber", now
            )
        home = partition_of(sid, self.partitions)
        if raw.partition is not None and home != raw.partition:
            who = mask(sid.decode("utf-8", "replace"))
            return self._dead(
                raw,
                DeadLetterReason.KEY_MISMATCH,
                f"intent for subscriber {who} belongs to partition {home}",
                now,
            )
        return sid

    def _profile(self, raw: RawRecord, current: bytes | None, now: datetime) -> Outcome:
        if raw.key is None:
            return self._dead(
                raw, DeadLetterReason.MISSING_KEY, "profiles are keyed by subscriber_id", now
            )
        subscriber = raw.key.decode("utf-8", "replace")
        profile: CustomerProfile | None = None
        if raw.value is not None:  # None is a tombstone: forget the profile
            decoded = self._decode(raw, CustomerProfile, now)
            if isinstance(decoded, Outcome):
                return decoded
            assert isinstance(decoded, CustomerProfile)
            if decoded.subscriber_id != subscriber:
                return self._dead(
                    raw,
                    DeadLetterReason.KEY_MISMATCH,
                    "profile key must equal its subscriber_id",
                    now,
                )
            profile = decoded
        record, effects = apply_profile(decode_record(current), subscriber, profile)
        outcome = Outcome(record=encode_record(record))
        outcome.internal.extend(
            (self.membership, m.cell_id.encode(), m.model_dump_json().encode())
            for m in effects.memberships
        )
        return outcome

    # -- outputs and metrics ----------------------------------------------------

    def _outcome(
        self, raw: RawRecord, effects: Effects, now: datetime, outcome: Outcome | None = None
    ) -> Outcome:
        """`effects` as records to send (added to `outcome` when given), counted."""
        m = self.metrics
        outcome = Outcome() if outcome is None else outcome
        m.evaluations.add(effects.evaluated)
        if effects.quiet():
            return outcome
        for rule_id, tier in effects.fired:
            m.firings.labels(rule_id, tier).inc()
        for d in effects.decisions:
            m.suppressions.labels(d.rule_id, d.reason).inc()
        for rule_id, _tier, reason in effects.policy:
            m.suppressions.labels(rule_id, reason).inc()
        for rule_id, transition in effects.transitions:
            m.transitions.labels(rule_id, transition).inc()
        for output in effects.outputs:
            record = encode(output)
            if not fits(record):  # the broker would refuse it for good: say so, send the rest
                message = (
                    f"{type(output).__name__} of {len(record.value):,} bytes is over the"
                    f" {MAX_RECORD_BYTES:,}-byte output limit; not sent"
                )
                log.error("rule %s at %s: %s", output.rule_id, raw.where, message)
                outcome.outputs.extend(
                    self._dead(
                        raw, DeadLetterReason.OUTPUT_TOO_LARGE, message, now, output.rule_id
                    ).outputs
                )
                continue
            outcome.outputs.append(record)
            delay = max((now - output.event_time).total_seconds(), 0.0)
            if is_detection(output):
                m.latency.observe(delay)
            if type(output) is CustomerNotice:
                m.notices.labels(
                    output.rule_id, output.tier, output.channel.value, output.severity.value
                ).inc()
            elif type(output) is InterventionTask:
                if output.change is TaskChange.ESCALATED:
                    m.escalation_delay.observe(delay)
                if raw.partition is not None:
                    self.workload[self._space(output)].track(raw.partition, output)
                m.tasks.labels(
                    output.rule_id,
                    output.tier,
                    output.queue.value,
                    output.priority.value,
                    output.status.value,
                ).inc()
        outcome.internal.extend(
            (self.intents, key, value)
            for key, value in intent_records(effects.intents, self.partitions)
        )
        outcome.internal.extend(
            (
                self.subscriber_marks if mark.space == "subscribers" else self.marks,
                mark.key.encode(),
                mark.model_dump_json().encode(),
            )
            for mark in effects.marks
        )
        for rule_id, message in effects.failures:
            m.rule_failures.labels(rule_id).inc()
            log.error("rule %s failed at %s: %s", rule_id, raw.where, message)
            outcome.outputs.extend(
                self._dead(raw, DeadLetterReason.RULE_ERROR, message, now, rule_id).outputs
            )
        return outcome

    @staticmethod
    def _space(task: InterventionTask) -> str:
        return SUBSCRIBERS if task.target.type is TargetType.SUBSCRIBER else NETWORK

    def index(self, space: str, partition: int, records: Iterator[tuple[bytes, bytes]]) -> int:
        """Note the due times and open tasks of a partition's stored records
        (after it is assigned to this worker); returns the keys with something
        due. Records written since the assignment are already noted and win."""
        agenda, workload = self.agendas[space], self.workload[space]
        found = 0
        for key, value in records:
            if b'"due":' not in value:  # nothing due: no decode
                continue
            record = decode_record(value)
            name = key.decode("utf-8", "replace")
            if name not in agenda.due:
                agenda.note(partition, name, due_of(record))
            workload.index(partition, record.get("engine", {}).get("tasks", {}))
            workload.window(partition, name, record.get("maint"))
            found += 1
        return found

    def forget(self, space: str, partition: int) -> None:
        """A partition moved to another worker: its due work goes with it."""
        keys = {k for _, k in self.agendas[space].heaps.get(partition, [])}
        self.agendas[space].forget(partition, keys)
        self.workload[space].forget(partition)

    def _decode(self, raw: RawRecord, model: type[BaseModel], now: datetime) -> BaseModel | Outcome:
        decoded = decode(raw, model, now)
        if isinstance(decoded, DeadLetter):
            self._count_invalid(raw, decoded.error_type)
            return Outcome(outputs=[encode(decoded)])
        return decoded

    def _count_invalid(self, raw: RawRecord, error_type: DeadLetterReason) -> None:
        self.metrics.invalid.labels(self.sources.get(raw.topic, "unknown"), error_type).inc()
        self.metrics.dead_letters.labels(error_type).inc()

    def _dead(
        self,
        raw: RawRecord,
        kind: DeadLetterReason,
        message: str,
        now: datetime,
        rule_id: str | None = None,
    ) -> Outcome:
        if rule_id is None:
            self.metrics.invalid.labels(self.sources.get(raw.topic, "unknown"), kind).inc()
        self.metrics.dead_letters.labels(kind).inc()
        return Outcome(outputs=[encode(dead_letter(raw, kind, message, now, rule_id))])


def event_key(event: BaseModel) -> tuple[str, str]:
    """An input event's state key and the field it comes from."""
    assert is_input_event(event)
    field_name = "cell_id or line_id" if type(event) is NetworkQualityEvent else "subscriber_id"
    return key_of(event), field_name


def is_detection(output: CustomerNotice | InterventionTask) -> bool:
    """Outputs whose event time is the detecting event's, for the detection
    latency: not a notice released after quiet hours or a group wait, an
    escalation (its own histogram) or a work system's report."""
    if isinstance(output, CustomerNotice):
        return output.deliver_after is None
    return output.change not in (TaskChange.ESCALATED, TaskChange.FEEDBACK)
