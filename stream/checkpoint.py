"""Checkpoints: how one agent's inputs, outputs and state changes become
durable together, and how its state is rebuilt from the changelog when it
gets partitions. See docs/operations.md, "State and checkpoints".

Between checkpoints an agent processes records against its tables
(`stream.store`): reads see every change made so far, writes stay in
memory, outputs are sent at once (never awaited one by one) and inputs are
not acknowledged. A checkpoint, every `checkpoint_interval_seconds` or
`checkpoint_max_records` inputs (whichever comes first), and before a
rebalance or a stop completes:

1. waits for the broker to acknowledge every output sent since the last one;
2. produces one changelog record per changed key (the latest value), in
   batches per changelog partition, and waits for their acknowledgements;
3. writes each partition's changes to RocksDB in one `WriteBatch`, with the
   changelog offset it now reflects;
4. acknowledges the inputs, which Faust then commits.

A crash before 1 completes replays the inputs on the state of the last
checkpoint: the same outputs with the same ids. After 1, every output of
those inputs is in Kafka, so a replayed input whose key's new state did
reach the changelog is skipped by the engine's duplicate-event check, and
one whose state did not is processed again with the same result. After 2,
recovery reads what RocksDB lacks from the changelog. After 3, the
replayed inputs are all duplicates.

Recovery, when partitions are assigned: each table partition's database
catches up from the changelog offset it last wrote (from the beginning
when it is new or was lost), then the agent may process that partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.connection import kafka_python_config
from stream.faust_runtime import metadata_backoff
from stream.settings import Settings
from stream.store import Partition, Table

log = logging.getLogger("forewarn.checkpoint")

RECOVERY_BATCH = 5_000  # changelog records applied per RocksDB batch in recovery
PRODUCE_TIMEOUT_MS = 1_200_000
# a checkpoint's changelog records (and the outputs) go in batches of up to
# this size, under the broker's default message.max.bytes of 1 MiB
CHANGELOG_BATCH_BYTES = 512 * 1024


class Changelogs:
    """The Kafka side of checkpoints: one producer (acks from all in-sync
    replicas) of everything a checkpoint waits for, the agents' outputs and
    internal records (step 1) and the changelog batches (step 2), and
    readers for recovery. Outputs go straight to aiokafka's accumulator
    (`send`), not through Faust's producer queue, which costs ~80 µs a
    record; per-partition order is aiokafka's (one batch in flight per
    partition)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.started = asyncio.Event()

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            **kafka_python_config(self.settings),
            acks="all",
            linger_ms=2,
            max_request_size=2 * 1024 * 1024,
            max_batch_size=CHANGELOG_BATCH_BYTES,
            # 20 min, as Faust's producer waits: a broker outage holds the
            # outputs and checkpoints back, it does not fail them
            request_timeout_ms=PRODUCE_TIMEOUT_MS,
        )
        metadata_backoff(self.producer)
        await self.producer.start()
        self.started.set()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> asyncio.Future[Any]:
        """Queue one record; its ack (a future). Waits only while the
        producer's buffer for that partition is full (a broker outage: up to
        the request timeout), and raises when the record is refused at once."""
        await self.started.wait()
        producer = self.producer
        assert producer is not None
        future: asyncio.Future[Any] = await producer.send(
            topic, value=value, key=key, partition=partition
        )
        return future

    async def write(
        self, topic: str, partition: int, changes: Sequence[tuple[bytes, bytes | None]]
    ) -> list[tuple[asyncio.Future[Any], int]]:
        """Send `changes` as batches; (ack, records in the batch) of each."""
        await self.started.wait()
        producer = self.producer
        assert producer is not None
        sent: list[tuple[asyncio.Future[Any], int]] = []

        async def send(batch: Any) -> None:
            count = batch.record_count()
            sent.append((await producer.send_batch(batch, topic, partition=partition), count))

        batch = producer.create_batch()
        for key, value in changes:
            while batch.append(key=key, value=value, timestamp=None) is None:
                if batch.record_count() == 0:  # not even alone in a batch
                    raise ValueError(f"a {topic} record of {len(value or b'')} bytes is too large")
                await send(batch)
                batch = producer.create_batch()
        if batch.record_count():
            await send(batch)
        return sent

    def reader(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **kafka_python_config(self.settings),
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )


class Checkpointer:
    """One agent's checkpoints and recovery, over its tables (see the module
    docstring). The agent processes each record under `lock` and calls
    `track` with the record's event and output sends; `run` (a task)
    checkpoints when due."""

    def __init__(
        self,
        name: str,
        tables: Sequence[Table],
        changelogs: Changelogs,
        on_failure: Callable[[BaseException], None],
        interval: float = 1.0,
        max_records: int = 10_000,
    ) -> None:
        self.name, self.tables, self.changelogs = name, tables, changelogs
        self.on_failure = on_failure
        self.interval, self.max_records = interval, max_records
        self.lock = asyncio.Lock()
        self.recovery_lock = asyncio.Lock()
        self.events: list[Any] = []  # inputs since the last checkpoint, not acked
        self.sends: list[asyncio.Future[Any]] = []  # their outputs' acks
        self.since: float | None = None  # when the oldest of them was tracked
        self.failed: BaseException | None = None
        self.recovered: set[int] = set()  # partitions ready to process
        self.remaining: dict[tuple[str, int], int] = {}  # recovery: records left to read
        self.generation = 0  # assignments seen; a recovery outlived by a revoke is void
        self.closed = False  # the worker is shutting down: no more checkpoints

    # -- the agent's side ------------------------------------------------

    async def ready(self, partition: int) -> None:
        """Return once `partition`'s state is recovered, recovering it here if
        no recovery has (a record can arrive before the assignment's recovery
        starts, or after a rebalance voided it: waiting for one that never
        comes would hold the record unacked, and Faust's rebalance waits for
        every record it delivered to be acked)."""
        while partition not in self.recovered:
            if self.failed is not None:  # the worker is stopping: never process on partial state
                await asyncio.Event().wait()
            await self.assigned({partition})

    def track(self, event: Any, sends: Iterable[asyncio.Future[Any]]) -> None:
        """`event` was processed: it is acked at the next checkpoint."""
        if self.since is None:
            self.since = time.monotonic()
        self.events.append(event)
        self.sends.extend(sends)

    def full(self) -> bool:
        return len(self.events) >= self.max_records

    def __len__(self) -> int:
        return len(self.events)

    def oldest(self) -> float | None:
        """Seconds the oldest unacked input has waited."""
        return None if self.since is None else time.monotonic() - self.since

    # -- checkpoints -----------------------------------------------------

    def due(self, now: float) -> bool:
        return bool(self.events) and (
            self.full() or (self.since is not None and now - self.since >= self.interval)
        )

    async def run(self, urgent: Callable[[], bool], poll: float = 0.02) -> None:
        """Checkpoint whenever due, or at once when `urgent()` (a rebalance
        or a stop waits for the inputs' acks)."""
        while self.failed is None and not self.closed:
            await asyncio.sleep(poll)
            if self.events and (urgent() or self.due(time.monotonic())):
                await self.checkpoint()

    async def checkpoint(self) -> bool:
        """Steps 1-4 of the module docstring; False (and the worker stopped)
        when the broker refused an output or a changelog record."""
        async with self.lock:
            return await self._checkpoint()

    async def close(self) -> None:
        """The last checkpoint, at shutdown; later inputs are not acked."""
        await self.checkpoint()
        self.closed = True

    async def _checkpoint(self) -> bool:
        if self.failed is not None or self.closed:
            return False
        events, sends = self.events, self.sends
        self.events, self.sends, self.since = [], [], None
        try:
            if sends:  # 1
                await _all_acked(sends, "an output")
            written: list[tuple[Partition, list[tuple[bytes, bytes | None]], list[Any]]] = []
            for table in self.tables:  # 2
                for partition, part in table.changed():
                    changes = list(part.pending.items())
                    acks = await self.changelogs.write(table.changelog, partition, changes)
                    written.append((part, changes, acks))
            for part, changes, acks in written:
                await _all_acked([f for f, _ in acks], "a changelog record")
                last, count = acks[-1][0].result(), acks[-1][1]
                part.write(changes, last.offset + count - 1)  # 3
                part.pending.clear()  # under the lock: no change came in meanwhile
        except Exception as exc:
            self._fail(exc)
            return False
        for event in events:  # 4
            event.ack()
        return True

    def _fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc
            log.error(
                "%s: checkpoint failed (%r); stopping so the inputs are replayed", self.name, exc
            )
            self.on_failure(exc)

    # -- partitions ------------------------------------------------------

    async def revoked(self, partitions: set[int]) -> None:
        """Before partitions go: checkpoint what was processed, then stop
        using them (their next owner recovers from the changelog)."""
        await self.checkpoint()
        self.generation += 1
        for p in partitions:
            self.recovered.discard(p)
            for table in self.tables:
                table.forget(p)

    async def assigned(self, partitions: set[int]) -> int:
        """Recover the partitions not ready yet; each is ready once all its
        tables have caught up with their changelogs. Returns the changelog
        records read."""
        async with self.recovery_lock:  # one recovery at a time: rebalances can follow closely
            return await self._assigned(partitions)

    async def _assigned(self, partitions: set[int]) -> int:
        new = sorted(p for p in partitions if p not in self.recovered)
        if not new:
            return 0
        started = time.perf_counter()
        generation = self.generation
        now = time.time()
        parts = {(t.changelog, p): (t, t.open(p, now)) for t in self.tables for p in new}
        try:
            read = await self._recover(parts)
        except Exception as exc:
            self._fail(exc)
            return 0
        if generation != self.generation:
            return read  # revoked while recovering: the next assignment catches up again
        for p in new:
            self.recovered.add(p)
        log.info(
            "%s: partitions %s recovered, %d changelog records in %.2fs",
            self.name,
            new,
            read,
            time.perf_counter() - started,
        )
        return read

    async def _recover(self, parts: dict[tuple[str, int], tuple[Table, Partition]]) -> int:
        reader = self.changelogs.reader()
        await reader.start()
        try:
            tps = [TopicPartition(topic, p) for topic, p in parts]
            reader.assign(tps)
            ends = await reader.end_offsets(tps)
            begins = await reader.beginning_offsets(tps)
            todo: dict[TopicPartition, Partition] = {}
            for tp in tps:
                _, part = parts[(tp.topic, tp.partition)]
                start = max(part.offset + 1, begins[tp])
                if start < ends[tp]:
                    reader.seek(tp, start)
                    todo[tp] = part
                    self.remaining[(tp.topic, tp.partition)] = ends[tp] - start
            read = 0
            while todo:
                batches = await reader.getmany(*todo, timeout_ms=1000, max_records=RECOVERY_BATCH)
                for tp, records in batches.items():
                    if records:
                        todo[tp].write(((r.key, r.value) for r in records), records[-1].offset)
                        read += len(records)
                for tp in list(todo):
                    # the position, not the last record: compaction leaves gaps
                    left = ends[tp] - await reader.position(tp)
                    self.remaining[(tp.topic, tp.partition)] = max(left, 0)
                    if left <= 0:
                        todo[tp].write((), ends[tp] - 1)
                        del todo[tp]
            return read
        finally:
            for topic, p in parts:
                self.remaining.pop((topic, p), None)
            await reader.stop()

    def recovering(self) -> tuple[bool, int]:
        """(recovery running, changelog records it has left)."""
        return bool(self.remaining), sum(self.remaining.values())


async def _all_acked(futures: Sequence[asyncio.Future[Any]], what: str) -> None:
    results = await asyncio.gather(*futures, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise RuntimeError(f"{what} was not acknowledged: {r!r}") from r
