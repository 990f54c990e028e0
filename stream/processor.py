"""The per-record work behind the agents, free of Faust: decode a raw record,
apply the pure step from `rules.records` to its key's record, and say what to
send and what to write. One error boundary: whatever happens, the caller gets
an `Outcome` (possibly just a dead letter), never an exception.

Two processors, one per key space (and per agent and table):

- `subscriber`: usage and billing events, profiles, and notice intents from
  other keys, against the subscriber record (profile + engine state + notice
  policy state): one read and one write per record.
- `network`: network-quality events against the cell's or line's record;
  cell-membership changes against the cell's member list.

The rule set is swapped atomically by hot reload (`self.rules = ...`); the
next record uses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from aiokafka.partitioner import murmur2
from pydantic import BaseModel

from rules.engine import Reason, key_of
from rules.policy import PolicyReason
from rules.records import (
    Effects,
    Record,
    apply_event,
    apply_intent,
    apply_membership,
    apply_profile,
    decode_members,
    decode_record,
    encode_members,
    encode_record,
)
from rules.ruleset import RuleSet
from schemas import (
    BillingEvent,
    CellMembership,
    CustomerNotice,
    CustomerProfile,
    DeadLetter,
    InterventionTask,
    NetworkQualityEvent,
    NoticeIntent,
    UsageEvent,
)
from sinks import OutputRecord, encode
from stream.decoding import RawRecord, dead_letter, decode, decode_many
from stream.logs import mask
from stream.metrics import Metrics
from stream.settings import Settings

log = logging.getLogger("forewarn.processor")
Clock = Callable[[], datetime]
Lookup = Callable[[bytes], bytes | None]


@dataclass
class Outcome:
    """What to do for one input record: send `outputs` and `internal`
    records, then, once they are acknowledged, write `record`/`members`
    (`stream.inflight`). Writing state last means a crash in between replays
    the input and resends the same outputs with the same ids."""

    outputs: list[OutputRecord] = field(default_factory=list)
    internal: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # topic, key, value
    record: bytes | None = None  # new key record, None = unchanged
    members: bytes | None = None  # new cell member list, None = unchanged
    # new records of other keys in the record's partition (a batch of notice
    # intents for several subscribers), written with `record`
    others: dict[bytes, bytes] = field(default_factory=dict)


def wall_clock() -> datetime:
    return datetime.now(UTC)


def no_record(key: bytes) -> bytes | None:
    return None


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
        self.intents = settings.internal_topic("notice-intents")
        self.membership = settings.internal_topic("cell-membership")
        self.sources = {
            self.usage: "usage",
            self.billing: "billing",
            self.profiles: "profiles",
            self.network_quality: "network_quality",
            self.intents: "notice_intents",
            self.membership: "cell_membership",
        }

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
        self, raw: RawRecord, current: bytes | None, members: Callable[[], bytes | None]
    ) -> Outcome:
        return self._guarded(raw, lambda now: self._network(raw, current, members, now))

    # -- dispatch ----------------------------------------------------------

    def _guarded(self, raw: RawRecord, work: Callable[[datetime], Outcome]) -> Outcome:
        now = self.clock()
        self.metrics.events.labels(self.sources.get(raw.topic, "unknown")).inc()
        try:
            return work(now)
        except Exception as exc:  # the error boundary: one bad record must not stop the stream
            log.exception("processing failed at %s", raw.where)
            return self._dead(raw, "processing_error", f"{type(exc).__name__}: {exc}", now)

    def _subscriber(
        self, raw: RawRecord, current: bytes | None, lookup: Lookup, now: datetime
    ) -> Outcome:
        if raw.topic == self.profiles:
            return self._profile(raw, current, now)
        if raw.topic == self.intents:
            return self._intents(raw, current, lookup, now)
        model: type[BaseModel] = UsageEvent if raw.topic == self.usage else BillingEvent
        return self._events(raw, current, model, now, lambda: None)

    def _network(
        self,
        raw: RawRecord,
        current: bytes | None,
        members: Callable[[], bytes | None],
        now: datetime,
    ) -> Outcome:
        if raw.topic == self.membership:
            change = self._decode(raw, CellMembership, now)
            if isinstance(change, Outcome):
                return change
            assert isinstance(change, CellMembership)
            before = decode_members(current)
            after = apply_membership(before, change)
            return Outcome(members=encode_members(after) if after != before else None)
        return self._events(raw, current, NetworkQualityEvent, now, members)

    # -- steps ---------------------------------------------------------------

    def _events(
        self,
        raw: RawRecord,
        current: bytes | None,
        model: type[BaseModel],
        now: datetime,
        members: Callable[[], bytes | None],
    ) -> Outcome:
        """The record's event, or each event of a batch in order, against the
        key's record: one decode and one encode of the record per Kafka record."""
        decoded = decode_many(raw, model, now)
        outcome = Outcome()
        if len(decoded) > 1:
            self.metrics.events.labels(self.sources.get(raw.topic, "unknown")).inc(len(decoded) - 1)
        record = None
        for at, event in self._each_valid(raw, decoded, outcome):
            assert isinstance(event, UsageEvent | BillingEvent | NetworkQualityEvent)
            key = key_of(event)
            if raw.key is None or raw.key.decode("utf-8", "replace") != key:
                field_name = (
                    "cell_id or line_id"
                    if isinstance(event, NetworkQualityEvent)
                    else "subscriber_id"
                )
                outcome.outputs.extend(
                    self._dead(
                        at,
                        "key_mismatch",
                        f"record key must be the event's {field_name} ({mask(key)});"
                        " state is partitioned by it",
                        now,
                    ).outputs
                )
                continue
            start = time.perf_counter()
            if record is None:
                record = decode_record(current)
            record, effects = apply_event(
                record,
                event,
                self.rules,
                created_at=now,
                members=lambda: tuple(decode_members(members())),
            )
            done = self._outcome(at, effects, now)
            outcome.outputs.extend(done.outputs)
            outcome.internal.extend(done.internal)
            self.metrics.processing.labels("engine").observe(time.perf_counter() - start)
        if record is not None:
            outcome.record = encode_record(record)
        return outcome

    def _intents(
        self, raw: RawRecord, current: bytes | None, lookup: Lookup, now: datetime
    ) -> Outcome:
        """Notice intents from cell and line detections, each through its
        subscriber's notice policy. A record holds one intent (keyed by its
        subscriber) or a JSON array of intents for subscribers of this
        partition (`intent_records`)."""
        outcome = Outcome()
        records: dict[bytes, Record] = {}
        decoded = decode_many(raw, NoticeIntent, now)
        for at, intent in self._each_valid(raw, decoded, outcome):
            assert isinstance(intent, NoticeIntent)
            sid = self._intent_subscriber(at, intent, now)
            if isinstance(sid, Outcome):
                outcome.outputs.extend(sid.outputs)
                continue
            if sid not in records:
                records[sid] = decode_record(current if sid == raw.key else lookup(sid))
            records[sid], effects = apply_intent(
                records[sid], sid.decode("utf-8", "replace"), intent, self.rules, created_at=now
            )
            done = self._outcome(at, effects, now)
            outcome.outputs.extend(done.outputs)
        for sid, record in records.items():
            if sid == raw.key:
                outcome.record = encode_record(record)
            else:
                outcome.others[sid] = encode_record(record)
        return outcome

    def _each_valid(
        self, raw: RawRecord, decoded: Sequence[BaseModel | DeadLetter], outcome: Outcome
    ) -> Iterator[tuple[RawRecord, BaseModel]]:
        """Each valid item of a record (or of its batch) with its coordinates;
        the invalid ones go to `outcome` as dead letters."""
        for i, item in enumerate(decoded):
            at = raw if len(decoded) == 1 else replace(raw, index=i)
            if isinstance(item, DeadLetter):
                self._count_invalid(raw, item.error_type)
                outcome.outputs.append(encode(item))
                continue
            yield at, item

    def _intent_subscriber(
        self, raw: RawRecord, intent: NoticeIntent, now: datetime
    ) -> bytes | Outcome:
        """The intent's subscriber, or a dead letter when it has none or its
        state lives in another partition than the record's."""
        sid = intent.subscriber_id.encode() if intent.subscriber_id else raw.key
        if sid is None:
            return self._dead(raw, "missing_key", "notice intents name their subscriber", now)
        home = partition_of(sid, self.partitions)
        if raw.partition is not None and home != raw.partition:
            who = mask(sid.decode("utf-8", "replace"))
            return self._dead(
                raw, "key_mismatch", f"intent for subscriber {who} belongs to partition {home}", now
            )
        return sid

    def _profile(self, raw: RawRecord, current: bytes | None, now: datetime) -> Outcome:
        if raw.key is None:
            return self._dead(raw, "missing_key", "profiles are keyed by subscriber_id", now)
        subscriber = raw.key.decode("utf-8", "replace")
        profile: CustomerProfile | None = None
        if raw.value is not None:  # None is a tombstone: forget the profile
            decoded = self._decode(raw, CustomerProfile, now)
            if isinstance(decoded, Outcome):
                return decoded
            assert isinstance(decoded, CustomerProfile)
            if decoded.subscriber_id != subscriber:
                return self._dead(
                    raw, "key_mismatch", "profile key must equal its subscriber_id", now
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

    def _outcome(self, raw: RawRecord, effects: Effects, now: datetime) -> Outcome:
        m = self.metrics
        outcome = Outcome()
        m.evaluations.add(effects.evaluated)
        for rule_id, tier in effects.fired:
            m.firings.labels(rule_id, tier).inc()
        for d in effects.decisions:
            m.suppressions.labels(d.rule_id, d.reason.value).inc()
        for rule_id, _tier, reason in effects.policy:
            m.suppressions.labels(rule_id, reason.value).inc()
        for output in effects.outputs:
            outcome.outputs.append(encode(output))
            m.latency.observe(max((now - output.event_time).total_seconds(), 0.0))
            if isinstance(output, CustomerNotice):
                m.notices.labels(
                    output.rule_id, output.tier, output.channel.value, output.severity.value
                ).inc()
            elif isinstance(output, InterventionTask):
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
        for rule_id, message in effects.failures:
            m.rule_failures.labels(rule_id).inc()
            log.error("rule %s failed at %s: %s", rule_id, raw.where, message)
            outcome.outputs.extend(self._dead(raw, "rule_error", message, now, rule_id).outputs)
        return outcome

    def _decode(self, raw: RawRecord, model: type[BaseModel], now: datetime) -> BaseModel | Outcome:
        decoded = decode(raw, model, now)
        if isinstance(decoded, DeadLetter):
            self._count_invalid(raw, decoded.error_type)
            return Outcome(outputs=[encode(decoded)])
        return decoded

    def _count_invalid(self, raw: RawRecord, error_type: str) -> None:
        self.metrics.invalid.labels(self.sources.get(raw.topic, "unknown"), error_type).inc()
        self.metrics.dead_letters.labels(error_type).inc()

    def _dead(
        self, raw: RawRecord, kind: str, message: str, now: datetime, rule_id: str | None = None
    ) -> Outcome:
        if rule_id is None:
            self.metrics.invalid.labels(self.sources.get(raw.topic, "unknown"), kind).inc()
        self.metrics.dead_letters.labels(kind).inc()
        return Outcome(outputs=[encode(dead_letter(raw, kind, message, now, rule_id))])


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as in the Java
    client and aiokafka) gives `key`: where that subscriber's state lives."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def intent_records(intents: list[NoticeIntent], partitions: int) -> list[tuple[bytes, bytes]]:
    """A cell detection's intents as one record per partition instead of one
    per subscriber: a JSON array of the intents for that partition's
    subscribers, keyed by the first of them, so the default partitioner
    sends it where all of them live. A red cell with 200 home subscribers
    costs at most `partitions` Kafka records on the way to their policies."""
    groups: dict[int, list[NoticeIntent]] = {}
    for intent in intents:
        assert intent.subscriber_id is not None
        groups.setdefault(partition_of(intent.subscriber_id.encode(), partitions), []).append(
            intent
        )
    records = []
    for group in groups.values():
        key = group[0].subscriber_id
        assert key is not None
        value = "[" + ",".join(i.model_dump_json() for i in group) + "]"
        records.append((key.encode(), value.encode()))
    return records
