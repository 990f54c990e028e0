"""Per-partition continuity of the records an agent receives: a guard for
at-least-once delivery against records that never reach the agent.

faust-streaming 0.15.3 can lose records between fetch and delivery right
after a rebalance: when recovery completes it resumes the partitions and
seeks them, then resumes flow control, which clears the stream buffers; a
record fetched in between is marked read by Faust's fetch loop and never
handed over, while the ones after it are. Measured here: after a worker took
over a partition, two or three consecutive records were never delivered;
their offsets were never committed, so a restart would replay them, but the
running worker would not. (`tests/integration/test_scale_out.py` found it.)

The same loss can take *every* record Faust fetched for a partition it was
just given (a worker that took over a dead one's partitions, whose backlog
arrived in one fetch): then no later record reveals a hole, and the
partition stalls with records waiting. `stalled` names such partitions:
records exist past what this worker processed and what the group committed,
yet none of that partition's records arrived for a while (a partition with
a backlog gets records in every fetch, so a quiet one is a lost one); the
app seeks them back and Faust delivers them again. A false alarm costs
duplicates, which at-least-once delivery with idempotent ids absorbs.

Within one consumer generation the offsets of a non-compacted partition
follow each other. When a record arrives past a hole, `Continuity.check`
names the hole; the agent reads the missing records itself with a plain
consumer (`refetch`) and processes them, in order, before this one. A hole
that is really there (a transaction marker upstream) yields no records.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.connection import kafka_python_config
from stream.settings import Settings

Partition = tuple[str, int]


class Continuity:
    def __init__(self, exempt: frozenset[str] = frozenset()) -> None:
        self.exempt = exempt  # compacted topics: holes are normal there
        self.generation: dict[Partition, int | None] = {}
        self.next: dict[Partition, int] = {}

    def check(
        self, topic: str, partition: int, offset: int, generation: int | None
    ) -> tuple[int, int] | None:
        """The hole [first, end) before this record, if there is one."""
        if topic in self.exempt:
            return None
        tp = (topic, partition)
        expected = self.next.get(tp)
        fresh = self.generation.get(tp, -1) != generation  # a rebalance: start afresh
        self.generation[tp] = generation
        self.next[tp] = max(offset + 1, expected or 0) if not fresh else offset + 1
        if fresh or expected is None or offset <= expected:
            return None
        return expected, offset


def stalled(
    ends: dict[Partition, int],
    processed: dict[Partition, int],
    committed: dict[Partition, int],
) -> dict[Partition, int]:
    """{partition: offset to resume at} for partitions whose log end is past
    both the next offset this worker would process and the group's committed
    offset. Pass only partitions that have been quiet for a while."""
    found = {}
    for tp, end in ends.items():
        resume = max(processed.get(tp, -1) + 1, committed.get(tp, 0))
        if end > resume:
            found[tp] = resume
    return found


Since = tuple[Any, float]  # (a value, since when it has had that value)
Progress = Since | None  # of changelog records remaining


def unchanged_since(before: Since | None, value: Any, now: float) -> Since:
    """`before` if the value is still the same, else (value, now)."""
    return before if before is not None and before[0] == value else (value, now)


def recovery_progress(
    before: Progress, in_recovery: bool, remaining: int, now: float, after: float
) -> tuple[Progress, bool]:
    """(progress to keep, stuck?): changelog recovery is stuck when records
    remain and their count has not moved for `after` seconds."""
    if not in_recovery:
        return None, False
    progress = unchanged_since(before, remaining, now)
    return progress, remaining > 0 and now - progress[1] >= after


async def refetch(
    settings: Settings, topic: str, partition: int, first: int, end: int
) -> list[Any]:
    """The records at offsets [first, end) of one partition, read directly."""
    consumer = AIOKafkaConsumer(
        **kafka_python_config(settings), enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, first)
        found: list[Any] = []
        while True:
            batch = await consumer.getmany(tp, timeout_ms=2000, max_records=end - first)
            records = batch.get(tp, [])
            if not records:
                return found  # nothing more below `end`: the rest of the hole is real
            for record in records:
                if record.offset >= end:
                    return found
                found.append(record)
            if found[-1].offset >= end - 1:
                return found
    finally:
        await consumer.stop()
