"""The checkpoint protocol without a broker: inputs are acked only after
their outputs and their state's changelog records are acknowledged and the
state is in RocksDB, in that order; a refused output or changelog record
writes nothing and acks nothing. Recovery itself is tested against the real
broker (tests/integration/test_resilience.py, test_scale_out.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from stream.checkpoint import Checkpointer
from stream.store import STALE_SECONDS, Partition, Table


class Event:
    def __init__(self, name: str) -> None:
        self.name, self.acked = name, False

    def ack(self) -> None:
        self.acked = True


class Changelogs:
    """Records what is produced; each batch's ack is a future the test resolves."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes | None]]]] = []
        self.acks: list[asyncio.Future[Any]] = []
        self.next_offset = 100

    async def write(
        self, topic: str, partition: int, changes: Sequence[tuple[bytes, bytes | None]]
    ) -> list[tuple[asyncio.Future[Any], int]]:
        self.sent.append((topic, partition, list(changes)))
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return [(ack, len(changes))]

    def reader(self) -> Reader:
        return Reader()

    def ack_all(self) -> None:
        for f in self.acks:
            if not f.done():
                f.set_result(type("Meta", (), {"offset": self.next_offset})())


class Reader:
    """A changelog reader over empty changelogs; `gate` holds `end_offsets`
    (a recovery in progress) until it is set."""

    gate: asyncio.Event | None = None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, tps: Any) -> None: ...

    async def end_offsets(self, tps: Any) -> dict[Any, int]:
        if Reader.gate is not None:
            await Reader.gate.wait()
        return {tp: 0 for tp in tps}

    async def beginning_offsets(self, tps: Any) -> dict[Any, int]:
        return {tp: 0 for tp in tps}


def test_reads_see_unwritten_changes_and_a_write_keeps_its_changelog_offset(
    tmp_path: Path,
) -> None:
    table = Table("t", "app-t-changelog", tmp_path)
    part = table.open(3, time.time())
    part.write([(b"a", b"1"), (b"b", b"2")], offset=41)
    table.put(3, b"a", b"1'")
    assert (table.get(3, b"a"), table.get(3, b"b"), table.get(3, b"c")) == (b"1'", b"2", None)
    assert table.get(4, b"a") is None  # a partition not held here has nothing
    assert dict(part.items()) == {b"a": b"1'", b"b": b"2"}
    table.close()
    again = Partition(tmp_path / "t" / "3")  # a restart with the disk intact
    assert (again.offset, again.get(b"a"), again.get(b"b")) == (41, b"1", b"2")
    again.close()


def test_a_local_database_checkpointed_too_long_ago_is_rebuilt_from_scratch(
    tmp_path: Path,
) -> None:
    table = Table("t", "app-t-changelog", tmp_path)
    table.open(0, time.time()).write([(b"gone", b"x")], offset=7)
    table.close()
    later = Table("t", "app-t-changelog", tmp_path)
    part = later.open(0, time.time() + STALE_SECONDS + 60)
    assert (part.offset, part.get(b"gone")) == (-1, None)  # recovery reads the whole changelog
    later.close()


@pytest.fixture
def table(tmp_path: Path) -> Any:
    t = Table("subs", "app-subs-changelog", tmp_path)
    t.open(0, time.time())
    t.open(1, time.time())
    yield t
    t.close()


def test_inputs_are_acked_only_after_outputs_then_changelog_then_rocksdb(table: Table) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        changelogs, failures = Changelogs(), []
        cp = Checkpointer("agent", [table], changelogs, failures.append)  # type: ignore[arg-type]
        output = loop.create_future()
        first, second = Event("1"), Event("2")
        table.put(0, b"a", b"a1")
        cp.track(first, [output])
        table.put(1, b"b", b"b1")
        table.put(0, b"a", b"a2")  # the same key twice: one changelog record, the latest
        cp.track(second, [])
        running = asyncio.ensure_future(cp.checkpoint())
        await asyncio.sleep(0.01)
        assert changelogs.sent == []  # 1: outputs first
        output.set_result(None)
        await asyncio.sleep(0.01)
        assert sorted(changelogs.sent) == [
            ("app-subs-changelog", 0, [(b"a", b"a2")]),
            ("app-subs-changelog", 1, [(b"b", b"b1")]),
        ]  # 2: one record per changed key
        assert table.partitions[0].db.get(b"a") is None and not first.acked
        changelogs.ack_all()
        assert await running
        assert table.partitions[0].db.get(b"a") == b"a2"  # 3
        assert table.partitions[0].offset == 100 and table.partitions[0].pending == {}
        assert first.acked and second.acked and len(cp) == 0 and failures == []  # 4

    asyncio.run(scenario())


def test_a_refused_output_writes_no_state_and_acks_nothing(table: Table) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        changelogs, failures = Changelogs(), []
        cp = Checkpointer("agent", [table], changelogs, failures.append)  # type: ignore[arg-type]
        output, event = loop.create_future(), Event("1")
        table.put(0, b"a", b"a1")
        cp.track(event, [output])
        output.set_exception(RuntimeError("message too large"))
        assert not await cp.checkpoint()
        assert changelogs.sent == [] and table.partitions[0].db.get(b"a") is None
        assert not event.acked and len(failures) == 1
        assert not await cp.checkpoint()  # stopped for good: the inputs are replayed

    asyncio.run(scenario())


def test_a_refused_changelog_record_leaves_rocksdb_and_the_input_alone(table: Table) -> None:
    async def scenario() -> None:
        changelogs, failures = Changelogs(), []
        cp = Checkpointer("agent", [table], changelogs, failures.append)  # type: ignore[arg-type]
        event = Event("1")
        table.put(0, b"a", b"a1")
        cp.track(event, [])
        running = asyncio.ensure_future(cp.checkpoint())
        await asyncio.sleep(0.01)
        changelogs.acks[0].set_exception(RuntimeError("not enough replicas"))
        assert not await running
        assert table.partitions[0].db.get(b"a") is None and not event.acked and failures

    asyncio.run(scenario())


def test_a_checkpoint_is_due_after_the_interval_or_the_record_limit(table: Table) -> None:
    async def scenario() -> None:
        cp = Checkpointer("agent", [table], Changelogs(), print, interval=1.0, max_records=3)  # type: ignore[arg-type]
        assert not cp.due(time.monotonic())  # nothing to checkpoint
        cp.track(Event("1"), [])
        assert not cp.due(time.monotonic()) and cp.due(time.monotonic() + 1.01)
        cp.track(Event("2"), [])
        cp.track(Event("3"), [])
        assert cp.full() and cp.due(time.monotonic())

    asyncio.run(scenario())


def test_revoked_partitions_are_checkpointed_then_no_longer_read(table: Table) -> None:
    async def scenario() -> None:
        changelogs = Changelogs()
        cp = Checkpointer("agent", [table], changelogs, print)  # type: ignore[arg-type]
        cp.recovered = {0, 1}
        event = Event("1")
        table.put(1, b"b", b"b1")
        cp.track(event, [])
        going = asyncio.ensure_future(cp.revoked({1}))
        await asyncio.sleep(0.01)
        changelogs.ack_all()
        await going
        assert event.acked and table.partitions[1].db.get(b"b") == b"b1"
        assert cp.recovered == {0}  # a record of it recovers it again first (`ready`)

    asyncio.run(scenario())


def test_a_record_whose_recovery_a_rebalance_voided_recovers_its_partition_itself(
    table: Table,
) -> None:
    """The agent must not wait for a recovery that will never come: Faust's
    rebalance waits for the record to be acked, so that would hang both."""

    async def scenario() -> None:
        cp = Checkpointer("agent", [table], Changelogs(), print)  # type: ignore[arg-type]
        Reader.gate = asyncio.Event()
        try:
            background = asyncio.ensure_future(cp.assigned({0}))  # the assignment's recovery
            await asyncio.sleep(0.01)
            await cp.revoked(set())  # a rebalance meanwhile: that recovery is void
            agent = asyncio.ensure_future(cp.ready(0))  # a record of partition 0 arrives
            await asyncio.sleep(0.01)
            assert not agent.done()  # recovery runs one at a time
            Reader.gate.set()
            await asyncio.wait_for(agent, 1)
            await background
            assert 0 in cp.recovered
        finally:
            Reader.gate = None

    asyncio.run(scenario())


class CompactedReader(Reader):
    """A changelog partition whose end offset is 6 while compaction left
    records at offsets 1 and 3 only, the latter a deletion: the position
    moves past the gaps, the last record does not reach the end."""

    def __init__(self) -> None:
        self.pos = 0

    async def end_offsets(self, tps: Any) -> dict[Any, int]:
        return {tp: 6 for tp in tps}

    def seek(self, tp: Any, offset: int) -> None:
        self.pos = offset

    async def getmany(self, *tps: Any, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        if self.pos >= 6:
            return {}
        self.pos = 6
        rec = type("Rec", (), {})
        one, three = rec(), rec()
        one.key, one.value, one.offset = b"a", b"a1", 1
        three.key, three.value, three.offset = b"gone", None, 3
        return {tps[0]: [one, three]}

    async def position(self, tp: Any) -> int:
        return self.pos


def test_recovery_ends_at_the_end_offset_across_compaction_gaps(table: Table) -> None:
    async def scenario() -> None:
        changelogs = Changelogs()
        changelogs.reader = CompactedReader  # type: ignore[method-assign]
        table.partitions[0].write([(b"gone", b"old")], offset=-1)  # stale, before the changelog
        table.partitions[0].offset = -1
        cp = Checkpointer("agent", [table], changelogs, print)  # type: ignore[arg-type]
        assert await asyncio.wait_for(cp.assigned({0}), 2) == 2
        part = table.partitions[0]
        assert (part.offset, part.get(b"a"), part.get(b"gone")) == (5, b"a1", None)
        assert cp.recovering() == (False, 0)

    asyncio.run(scenario())
