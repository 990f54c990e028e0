"""The worker's per-key state on local disk: one RocksDB database per table
partition held here, with the changes made since the last checkpoint kept
in memory in front of it.

A key's record is read from the partition's pending changes, then from
RocksDB; a write only goes to the pending changes. `stream.checkpoint`
decides when those reach the changelog and then this database, in one
`WriteBatch` per partition together with the changelog offset they reach
up to (`offset`); changelog recovery applies records the same way.

Knows nothing of Kafka: it is given records and offsets, and says what
changed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager

# the database's own bookkeeping, kept under a key no record can have
# (record keys are ids from Kafka record keys, never NUL-prefixed this way)
META_KEY = b"\x00\x00forewarn:checkpoint"
# A local database last checkpointed longer ago than this is dropped and
# rebuilt from the whole changelog: its catch-up could miss deletions whose
# tombstones compaction has since removed (delete.retention.ms, 24 h by default).
STALE_SECONDS = 12 * 3600.0


# A worker holds tables x partitions databases: their block cache and
# memtables share one budget, so its memory does not grow with their count
# (RocksDB's defaults give each database its own 8 MB cache and 64 MB memtables).
CACHE_BYTES = 64 << 20  # blocks and memtables of every database of the process
MEMTABLE_BYTES = 32 << 20  # of which memtables, charged to the cache
_CACHE = Cache(CACHE_BYTES)
_MEMTABLES = WriteBufferManager.new_write_buffer_manager_with_cache(MEMTABLE_BYTES, False, _CACHE)


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(4 << 20)
    opts.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(_CACHE)
    opts.set_block_based_table_factory(table)
    opts.set_write_buffer_manager(_MEMTABLES)
    return opts


class Partition:
    """One table partition: its database and its changes not yet written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), _options())
        self.pending: dict[bytes, bytes | None] = {}  # None: deleted
        meta = self.db.get(META_KEY)
        found = json.loads(meta) if meta else {}
        self.offset: int = int(found.get("offset", -1))  # last changelog offset applied
        self.written_at: float = float(found.get("at", 0.0))

    def get(self, key: bytes) -> bytes | None:
        if key in self.pending:
            return self.pending[key]
        value = self.db.get(key)
        return value if isinstance(value, bytes) else None

    def put(self, key: bytes, value: bytes | None) -> None:
        self.pending[key] = value

    def write(self, changes: Iterable[tuple[bytes, bytes | None]], offset: int) -> None:
        """Apply `changes` and note that the database now reflects its
        changelog up to `offset`, in one atomic batch."""
        batch = WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.offset, self.written_at = offset, time.time()
        batch.put(META_KEY, json.dumps({"offset": offset, "at": self.written_at}).encode())
        self.db.write(batch)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every record, with pending changes over the database's."""
        for key, value in self.db.items():
            if key == META_KEY or key in self.pending:
                continue
            assert isinstance(key, bytes) and isinstance(value, bytes)
            yield key, value
        for key, value in self.pending.items():
            if value is not None:
                yield key, value

    def size(self) -> tuple[int, int]:
        """Estimated (keys, live bytes)."""
        keys = self.db.property_int_value("rocksdb.estimate-num-keys") or 0
        size = self.db.property_int_value("rocksdb.estimate-live-data-size") or 0
        return int(keys), int(size)

    def close(self) -> None:
        self.db.close()


class Table:
    """One table: a name, its changelog topic, and the partitions held here."""

    def __init__(self, name: str, changelog: str, directory: Path) -> None:
        self.name, self.changelog, self.directory = name, changelog, directory
        self.partitions: dict[int, Partition] = {}

    def open(self, partition: int, now: float) -> Partition:
        """The partition's database, opened if it is not; a stale one (see
        `STALE_SECONDS`) is deleted first."""
        found = self.partitions.get(partition)
        if found is not None:
            return found
        path = self.directory / self.name / str(partition)
        part = Partition(path)
        if part.offset >= 0 and now - part.written_at > STALE_SECONDS:
            part.close()
            shutil.rmtree(path)
            part = Partition(path)
        self.partitions[partition] = part
        return part

    def get(self, partition: int, key: bytes) -> bytes | None:
        part = self.partitions.get(partition)
        return part.get(key) if part is not None else None

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.partitions[partition].put(key, value)

    def forget(self, partition: int) -> None:
        """Drop the partition's unwritten changes (it is no longer ours: its
        inputs are processed again by its next owner)."""
        part = self.partitions.get(partition)
        if part is not None:
            part.pending.clear()

    def changed(self) -> Iterator[tuple[int, Partition]]:
        return ((p, part) for p, part in self.partitions.items() if part.pending)

    def size(self) -> tuple[int, int]:
        keys = size = 0
        for part in self.partitions.values():
            k, s = part.size()
            keys, size = keys + k, size + s
        return keys, size

    def close(self) -> None:
        for part in self.partitions.values():
            part.close()
        self.partitions = {}
