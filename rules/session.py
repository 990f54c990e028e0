"""An in-memory run over a sequence of inputs, as `forewarn replay` and
`forewarn rules test` need it: the same per-key records and steps the worker
uses (`rules.records`), kept as encoded bytes in dicts instead of the
worker's state store, with intents for other subscribers and
cell-membership changes applied at once instead of crossing an internal topic.

Records are stored encoded, exactly as the worker's tables store them, so a
replay also proves the state survives serialization, and memory per key is
a few hundred bytes.

The clock is the worker's: each key space (subscribers; cells and lines)
has one stream time per partition, the latest event time of its input
events. Before an event is evaluated, its partition's clock moves to its
time and every key of that partition with something due by then (a task's
promise, a held notice) is handled first, in order of due time. The caller
gives the partitioning (`partition_of`); one partition is the default.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from rules.agenda import DEFAULT_BOUNDS, Agenda, TimeBounds
from rules.engine import InputEvent, key_of
from rules.guard import Budget
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
    is_subscriber_event,
)
from rules.ruleset import RuleSet
from schemas import (
    CoverMark,
    CustomerProfile,
    MaintenanceWindow,
    NetworkQualityEvent,
    NoticeIntent,
    TargetType,
    TaskUpdate,
)

SUBSCRIBERS = "subscribers"
NETWORK = "network"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        self,
        rules: RuleSet,
        created_at: Callable[[InputEvent], datetime | None] = lambda e: None,
        partition_of: Callable[[str], int] = lambda key: 0,
        now: Callable[[], float | None] = lambda: None,
        bounds: TimeBounds = DEFAULT_BOUNDS,
        partitions: int = 1,
    ) -> None:
        self.rules = rules
        self.partitions = partitions  # guard budgets are split over them (`rules.guard`)
        self.budgets: dict[tuple[str, int], Budget] = {}
        self.now = now  # the wall clock, for events dated in the future; None: stream time only
        self.bounds = bounds
        self.created_at = created_at
        self.partition_of = partition_of
        self.subscribers = Store()
        self.network = Store()
        self.members: dict[str, bytes] = {}
        self.agendas = {SUBSCRIBERS: Agenda(), NETWORK: Agenda()}
        self.at: datetime | None = None  # created_at of the current step

    def put_profile(self, subscriber_id: str, profile: CustomerProfile | None) -> None:
        record, effects = apply_profile(self.subscribers.get(subscriber_id), subscriber_id, profile)
        self.subscribers.put(subscriber_id, record)
        for change in effects.memberships:
            members = decode_members(self.members.get(change.cell_id))
            self.members[change.cell_id] = encode_members(apply_membership(members, change))

    def process(self, event: InputEvent) -> Effects:
        """One event; an implausible event time (`Effects.implausible`) changes
        nothing, no clock and no state."""
        key = key_of(event)
        space = SUBSCRIBERS if is_subscriber_event(event) else NETWORK
        step = Effects()
        partition = self.partition_of(key)
        t = event.event_time.timestamp()
        step.implausible = self.agendas[space].implausible(
            partition, t, self.now(), self.bounds, fallback=self._latest()
        )
        if step.implausible is not None:
            return step
        self.at = self.created_at(event)
        self._advance(space, partition, t, step)
        store = self._store(space)
        record, effects = apply_event(
            store.get(key),
            event,
            self.rules,
            created_at=self.at,
            members=self._members(key),
            budget=self.budget(space, partition),
            at=t,
        )
        self._put(space, key, record)
        self._take(effects, step)
        self._advance(space, self.partition_of(key), None, step)
        if isinstance(event, NetworkQualityEvent) and goes_to_area(event, self.rules):
            self._area(event, step)
        return step

    def _area(self, event: NetworkQualityEvent, step: Effects) -> None:
        """A line's event, again, for its area (the worker sends it through
        an area-keyed topic)."""
        area = event.area_id
        assert area is not None
        partition = self.partition_of(area)
        self._advance(NETWORK, partition, event.event_time.timestamp(), step)
        record, effects = apply_area(
            self.network.get(area),
            event,
            self.rules,
            created_at=self.at,
            budget=self.budget(NETWORK, partition),
        )
        self._put(NETWORK, area, record)
        self._take(effects, step)
        self._advance(NETWORK, partition, None, step)

    def window(self, key: str, window: MaintenanceWindow | None) -> Effects:
        """Planned work on a cell, line or area (None: withdrawn); its
        notices fall due on the clock."""
        step = Effects()
        at = window.planned_at if window is not None else self.at
        record, effects = apply_window(self.network.get(key), key, window, at or _EPOCH)
        self._put(NETWORK, key, record)
        self._take(effects, step)
        self._advance(NETWORK, self.partition_of(key), None, step)
        return step

    def budget(self, space: str, partition: int) -> Budget:
        """The partition's guard budget (`rules.guard`)."""
        found = self.budgets.get((space, partition))
        if found is None:
            found = self.budgets[(space, partition)] = Budget(partitions=self.partitions)
        return found

    def task_update(self, update: TaskUpdate) -> Effects:
        """A work system's report, routed to the key space of its target."""
        key = update.target.id
        space = SUBSCRIBERS if update.target.type is TargetType.SUBSCRIBER else NETWORK
        step = Effects()
        record, effects = apply_task_update(
            self._store(space).get(key),
            key,
            space == SUBSCRIBERS,
            update,
            self.rules,
            created_at=self.at,
            members=self._members(key),
            budget=self.budget(space, self.partition_of(key)),
        )
        if effects.rejected is None:
            self._put(space, key, record)
        self._take(effects, step)
        self._advance(space, self.partition_of(key), None, step)
        return step

    def tick(self, now: datetime) -> Effects:
        """Time passes without an event (as a live worker's clock would say):
        every partition's clock moves to `now` and what is due is handled."""
        step = Effects()
        t = now.timestamp()
        for space in (NETWORK, SUBSCRIBERS):  # the network's due work may notify subscribers
            agenda = self.agendas[space]
            for partition in sorted(set(agenda.heaps) | set(agenda.clock)):
                self._advance(space, partition, t, step)
        return step

    def _latest(self) -> float | None:
        """The latest stream time of the run: the reference for an event's
        time when its own partition has none yet, so a bogus first event of
        a partition (dated 2099) cannot set that partition's clock."""
        times = [t for agenda in self.agendas.values() for t in agenda.clock.values()]
        return max(times) if times else None

    def _advance(self, space: str, partition: int, t: float | None, step: Effects) -> None:
        """Move the partition's clock to `t` (None: leave it) and handle what is due."""
        taken = self.agendas[space].take_due(partition, t)
        if taken is None:
            return
        clock, due = taken
        for key in due:
            record, effects = apply_clock(
                self._store(space).get(key),
                key,
                space == SUBSCRIBERS,
                clock,
                self.rules,
                created_at=self.at,
                members=self._members(key),
                budget=self.budget(space, partition),
            )
            self._put(space, key, record)
            self._take(effects, step)

    def _take(self, effects: Effects, step: Effects) -> None:
        step.absorb(effects)
        for intent in effects.intents:
            self._intent(intent, step)
        for mark in effects.marks:
            self._mark(mark, step)

    def _mark(self, mark: CoverMark, step: Effects) -> None:
        """What covers a line (from its area) or a subscriber (from its home
        cell); the worker sends it through a topic keyed by the covered key."""
        space = SUBSCRIBERS if mark.space == "subscribers" else NETWORK
        record, effects = apply_mark(
            self._store(space).get(mark.key), mark, self.rules, created_at=self.at
        )
        self._put(space, mark.key, record)
        step.absorb(effects)

    def _intent(self, intent: NoticeIntent, step: Effects) -> None:
        """A notice for a subscriber from another key; its detection's time
        moves the subscriber's partition clock, as any event's does."""
        assert intent.subscriber_id is not None
        sub = intent.subscriber_id
        self._advance(SUBSCRIBERS, self.partition_of(sub), intent.event_time.timestamp(), step)
        new, delivered = apply_intent(
            self.subscribers.get(sub), sub, intent, self.rules, created_at=self.at
        )
        self._put(SUBSCRIBERS, sub, new)
        step.absorb(delivered)
        self._advance(SUBSCRIBERS, self.partition_of(sub), None, step)

    def _store(self, space: str) -> Store:
        return self.subscribers if space == SUBSCRIBERS else self.network

    def _put(self, space: str, key: str, record: Record) -> None:
        self._store(space).put(key, record)
        self.agendas[space].note(self.partition_of(key), key, due_of(record))

    def _members(self, key: str) -> Callable[[], tuple[str, ...]]:
        return lambda: tuple(decode_members(self.members.get(key)))
