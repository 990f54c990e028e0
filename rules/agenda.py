"""The event-time clock of a key space: per partition, the stream time (the
latest event time seen) and the keys with something due (a task's promise,
a notice held for quiet hours), earliest first. Due work fires when the
clock reaches it: before an input is applied (its time moves the clock),
and again after it (it may have left something already due, e.g. a task
opened by a late event whose promise the clock has passed), so the work
that fires does not depend on the order in which the topics of a
partition happen to be read. `rules.session` and the
worker's processor keep one per key space and call the same steps
(`rules.records.apply_clock`) on the keys it says are due, so replay and the
worker fire the same due work.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class TimeBounds:
    """How far an event time may stray from its partition's stream time:
    `future_s` ahead (of the wall clock too, in the live worker), `past_s`
    behind. Coarse by default, to let sparse test and replay data through;
    tighten `future_s` for live feeds."""

    future_s: float = 7 * 86400.0
    past_s: float = 30 * 86400.0


DEFAULT_BOUNDS = TimeBounds()


def _span(seconds: float) -> str:
    if seconds >= 86400 * 365:
        return f"{seconds / (86400 * 365.25):,.0f} years"
    if seconds >= 86400:
        return f"{seconds / 86400:,.1f} days"
    return f"{seconds / 3600:,.1f} h"


class Agenda:
    """Keys with something due, per partition, earliest first (a heap with
    stale entries skipped), and each partition's stream time."""

    def __init__(self) -> None:
        self.clock: dict[int, float] = {}
        self.heaps: dict[int, list[tuple[float, str]]] = {}
        self.due: dict[str, float] = {}

    def note(self, partition: int, key: str, due: float | None) -> None:
        if due is None:
            self.due.pop(key, None)
            return
        if self.due.get(key) != due:
            self.due[key] = due
            heapq.heappush(self.heaps.setdefault(partition, []), (due, key))

    def advance(self, partition: int, t: float | None) -> float | None:
        """Move the partition's clock to `t` (never back); None keeps it
        where it is. Returns the clock, None while no time is known."""
        now = self.clock.get(partition)
        if t is not None and (now is None or t > now):
            now = self.clock[partition] = t
        return now

    def pop_due(self, partition: int, now: float | None) -> list[str]:
        """The keys due by `now`, earliest first; they leave the agenda (a
        key is noted again when its record is written)."""
        if now is None:
            return []
        heap = self.heaps.get(partition, [])
        keys: list[str] = []
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if self.due.get(key) == due:
                del self.due[key]
                keys.append(key)
        return keys

    def take_due(self, partition: int, t: float | None) -> tuple[datetime, list[str]] | None:
        """Move the partition's clock to `t` (None: leave it) and take the
        keys due by then: (the clock, the keys), or None when nothing is."""
        now = self.advance(partition, t)
        heap = self.heaps.get(partition)
        if now is None or not heap or heap[0][0] > now:  # the common case: nothing due
            return None
        due = self.pop_due(partition, now)
        if not due:
            return None
        return datetime.fromtimestamp(now, UTC), due

    def forget(self, partition: int, keys: set[str]) -> None:
        """Drop a partition that moved to another worker."""
        self.clock.pop(partition, None)
        self.heaps.pop(partition, None)
        for key in keys:
            self.due.pop(key, None)

    def implausible(
        self,
        partition: int,
        t: float,
        now: float | None,
        bounds: TimeBounds,
        fallback: float | None = None,
    ) -> str | None:
        """Why an event time cannot be believed, or None: more than
        `future_s` ahead of the partition's stream time (or of `now`, the
        wall clock, when the caller gives it and it is later), or more than
        `past_s` behind the stream time. Such an event must not move any
        clock or state: a single event dated 2099 would otherwise switch
        detection off for its key."""
        stream = self.clock.get(partition, fallback)  # `fallback`: a partition with none yet
        # the later of the two (either may be unknown)
        latest = stream if now is None else now if stream is None else max(stream, now)
        if latest is not None and t - latest > bounds.future_s:
            what = "wall clock" if now is not None and now >= (stream or now) else "stream's time"
            return (
                f"event time is {_span(t - latest)} ahead of the {what}"
                f" (limit {_span(bounds.future_s)})"
            )
        if stream is not None and stream - t > bounds.past_s:
            return (
                f"event time is {_span(stream - t)} behind the stream's time"
                f" (limit {_span(bounds.past_s)})"
            )
        return None

    def pending(self, partition: int) -> float | None:
        """The earliest due time noted in `partition`, if any."""
        heap = self.heaps.get(partition, [])
        while heap and self.due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale: the key's due time changed or was handled
        return heap[0][0] if heap else None
