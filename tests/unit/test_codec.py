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
