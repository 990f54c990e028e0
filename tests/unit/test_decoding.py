"""Bad input of any kind becomes a located dead letter; valid input decodes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from schemas import DeadLetter, UsageEvent
from schemas.deadletter import MAX_PAYLOAD_BYTES
from stream.decoding import RawRecord, decode

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
VALID = (
    b'{"event_id":"e1","subscriber_id":"s1","event_time":"2026-11-20T10:00:00+08:00",'
    b'"service":"data","volume":12.5,"cycle_id":"2026-11","unknown_field":true}'
)


def record(value: bytes | None, key: bytes | None = b"s1") -> RawRecord:
    return RawRecord("usage-events", 2, 41, key, value)


def test_valid_event_decodes_and_ignores_unknown_fields() -> None:
    event = decode(record(VALID), UsageEvent, NOW)
    assert isinstance(event, UsageEvent)
    assert event.volume == 12.5
    assert event.event_time.utcoffset() is not None


@pytest.mark.parametrize(
    ("value", "error_type", "fragment"),
    [
        (b"{not json", "invalid_json", "Invalid JSON"),
        (b"\xff\xfe\x00", "invalid_json", "Invalid JSON"),
        (b"[1, 2]", "validation_error", "(root): Input should be an object"),
        (None, "empty_value", "record has no value"),
        (
            VALID.replace(b"12.5", b'"12.5"'),
            "validation_error",
            "volume: Input should be a valid number",
        ),
        (
            VALID.replace(b"12.5", b"-1"),
            "validation_error",
            "volume: Input should be greater than or equal to 0",
        ),
        (VALID.replace(b'"data"', b'"fax"'), "validation_error", "service: Input should be"),
        (
            VALID.replace(b"+08:00", b""),
            "validation_error",
            "event_time: Input should have timezone info",
        ),
        (VALID.replace(b'"event_id":"e1",', b""), "validation_error", "event_id: Field required"),
    ],
)
def test_bad_input_becomes_a_located_dead_letter(
    value: bytes | None, error_type: str, fragment: str
) -> None:
    dead = decode(record(value), UsageEvent, NOW)
    assert isinstance(dead, DeadLetter)
    assert dead.error_type == error_type
    assert dead.error_message.startswith("usage-events[2]@41: ")
    assert fragment in dead.error_message
    assert (dead.source_topic, dead.partition, dead.offset, dead.key) == (
        "usage-events",
        2,
        41,
        "s1",
    )


def test_invalid_utf8_payload_is_kept_as_base64() -> None:
    raw = b"\xff\xfe{bad"
    dead = decode(record(raw), UsageEvent, NOW)
    assert isinstance(dead, DeadLetter)
    assert dead.payload_encoding == "base64"
    assert base64.b64decode(dead.payload) == raw


def test_huge_payload_is_truncated_but_its_size_kept() -> None:
    raw = b'{"x": "' + b"a" * (MAX_PAYLOAD_BYTES * 3) + b'"}'
    dead = decode(record(raw), UsageEvent, NOW)
    assert isinstance(dead, DeadLetter)
    assert dead.payload_truncated is True
    assert dead.payload_size == len(raw)
    assert len(dead.payload) == MAX_PAYLOAD_BYTES
