"""The checkpoint protocol's recovery claims, on the real broker and without
a worker around them (`stream.checkpoint`, docs/operations.md "State and
checkpoints"): a database that missed the changelog records of a crash
between steps 2 and 3 catches up from its own offset; a lost one is rebuilt
from the beginning; a checkpoint larger than one produce batch arrives whole."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from stream.checkpoint import CHANGELOG_BATCH_BYTES, Changelogs, Checkpointer
from stream.settings import SUBSCRIBER_TABLE, Settings
from stream.store import Table

pytestmark = pytest.mark.integration


class Event:
    def __init__(self) -> None:
        self.acked = False

    def ack(self) -> None:
        self.acked = True


def table(settings: Settings, directory: Path) -> Table:
    return Table(SUBSCRIBER_TABLE, settings.changelog_topic(SUBSCRIBER_TABLE), directory)


def checkpointer(t: Table, changelogs: Changelogs, failures: list[Any]) -> Checkpointer:
    return Checkpointer("test", [t], changelogs, failures.append)


def test_a_database_catches_up_from_its_offset_and_a_lost_one_is_rebuilt(
    settings: Settings, tmp_path: Path
) -> None:
    big = b"x" * 1500  # 1,000 such records: several produce batches in one checkpoint
    keys = [f"86130{i:08d}".encode() for i in range(1000)]
    assert len(keys) * len(big) > 2 * CHANGELOG_BATCH_BYTES

    async def scenario() -> None:
        changelogs, failures = Changelogs(settings), []
        await changelogs.start()
        try:
            # A checkpoint: every key of partition 1, each with one record.
            first = table(settings, tmp_path / "a")
            cp = checkpointer(first, changelogs, failures)
            assert await cp.assigned({1}) == 0  # an empty changelog: nothing to read
            event = Event()
            for k in keys:
                first.put(1, k, b"v1:" + big)
            cp.track(event, [])
            assert await cp.checkpoint() and event.acked
            checkpointed = first.partitions[1].offset
            assert checkpointed == len(keys) - 1  # one changelog record per key

            # A crash between steps 2 and 3: newer records reach the
            # changelog, the local database never sees them.
            newer = [(k, b"v2") for k in keys[:10]]
            acks = await changelogs.write(first.changelog, 1, newer)
            await asyncio.gather(*(f for f, _ in acks))
            first.close()

            # The restarted worker, disk intact: reads only what it lacks.
            again = table(settings, tmp_path / "a")
            cp2 = checkpointer(again, changelogs, failures)
            assert await cp2.assigned({1}) == len(newer)
            part = again.partitions[1]
            assert part.offset == checkpointed + len(newer)
            assert again.get(1, keys[0]) == b"v2" and again.get(1, keys[-1]) == b"v1:" + big
            again.close()

            # A new machine: everything from the changelog.
            shutil.rmtree(tmp_path / "a")
            rebuilt = table(settings, tmp_path / "a")
            cp3 = checkpointer(rebuilt, changelogs, failures)
            assert await cp3.assigned({1}) == len(keys) + len(newer)
            got = dict(rebuilt.partitions[1].items())
            assert len(got) == len(keys)
            assert got[keys[0]] == b"v2" and got[keys[500]] == b"v1:" + big
            assert cp3.recovered == {1} and failures == []
            rebuilt.close()
        finally:
            await changelogs.stop()

    asyncio.run(scenario())
