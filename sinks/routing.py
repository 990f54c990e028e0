"""Where records go: the partition Kafka's default partitioner gives a key
(murmur2, as the Java client and aiokafka compute it), and how a detection's
notice intents for many subscribers travel as few records.

The partition a key lands in is where that key's state lives, so the
worker, `forewarn replay` (its partition clocks and guard budgets) and the
tests must agree on it: this is the one implementation. Pure Python, no
Kafka client.
"""

from __future__ import annotations

from schemas import NoticeIntent

INTENT_RECORD_BYTES = 512 * 1024  # well under Kafka's 1 MiB record limit
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of `data` (seed 0x9747b28c), as an unsigned 32-bit
    int (as aiokafka returns it; the Java client's is the same bits, signed)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key`: where that
    key's state lives."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def intent_records(intents: list[NoticeIntent], partitions: int) -> list[tuple[bytes, bytes]]:
    """A detection's intents as one record per partition instead of one per
    subscriber: a JSON array of the intents for that partition's
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
        chunk: list[str] = []
        size = 0
        first = group[0].subscriber_id
        for intent in group:  # a huge cell's partition share is split to fit a record
            text = intent.model_dump_json()
            if chunk and size + len(text) > INTENT_RECORD_BYTES:
                records.append(_intent_record(first, chunk))
                chunk, size, first = [], 0, intent.subscriber_id
            chunk.append(text)
            size += len(text) + 1
        records.append(_intent_record(first, chunk))
    return records


def _intent_record(key: str | None, items: list[str]) -> tuple[bytes, bytes]:
    assert key is not None
    return key.encode(), ("[" + ",".join(items) + "]").encode()
