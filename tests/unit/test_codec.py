"""Outputs encode to stable bytes, keyed as the contract says."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from schemas import DeadLetter
from sinks import OutputTopic, encode, encode_jsonl_line

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_dead_letter_is_keyed_by_the_source_key_and_encodes_identically_twice() -> None:
    dead = DeadLetter.from_raw(
        source_topic="usage-events",
        partition=1,
        offset=7,
        key=b"s9",
        payload=b"{",
        error_type="invalid_json",
        error_message="x",
        received_at=NOW,
    )
    first, second = encode(dead), encode(dead)
    assert first == second
    assert first.topic is OutputTopic.DEAD_LETTERS and first.key == b"s9"
    line = json.loads(encode_jsonl_line(first))
    assert line["topic"] == "dead-letters" and line["key"] == "s9"
    assert line["value"]["payload"] == "{"


def test_the_partitioner_is_kafkas_murmur2_byte_for_byte() -> None:
    """sinks.routing computes the partition where a key's state lives
    without a Kafka client; it must agree with aiokafka's (the Java
    client's) default partitioner on every key."""
    import random

    from aiokafka.partitioner import murmur2 as reference

    from sinks.routing import murmur2, partition_of

    rng = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"8613900000001", "北京-小区-7".encode()]
    keys += [rng.randbytes(rng.randrange(0, 40)) for _ in range(2000)]
    assert [murmur2(k) for k in keys] == [reference(k) for k in keys]
    assert [partition_of(k, 6) for k in keys] == [(reference(k) & 0x7FFFFFFF) % 6 for k in keys]
