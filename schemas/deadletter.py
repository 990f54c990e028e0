"""Dead letters: input we could not process, kept with the reason and enough
coordinates (topic[partition]@offset) to find and replay it."""

from __future__ import annotations

import base64
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.outputs import SCHEMA_VERSION

# A dead letter must itself fit in a Kafka message; keep the head of huge payloads.
MAX_PAYLOAD_BYTES = 64 * 1024


class PayloadEncoding(StrEnum):
    UTF8 = "utf-8"
    BASE64 = "base64"


class DeadLetterReason(StrEnum):
    """Why a record became a dead letter (`error_type`); declared once, used
    by the worker, `forewarn replay` and the metrics' labels."""

    INVALID_JSON = "invalid_json"
    EMPTY_VALUE = "empty_value"
    VALIDATION_ERROR = "validation_error"
    KEY_MISMATCH = "key_mismatch"
    MISSING_KEY = "missing_key"
    PROCESSING_ERROR = "processing_error"
    RULE_ERROR = "rule_error"
    UNKNOWN_TASK = "unknown_task"
    IMPLAUSIBLE_TIME = "implausible_time"
    OUTPUT_TOO_LARGE = "output_too_large"
    UNKNOWN_TOPIC = "unknown_topic"  # `forewarn replay`: a line for no input topic
    INVALID_LINE = "invalid_line"  # `forewarn replay`: not a {topic, key, value} line


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_topic: str
    partition: int | None
    offset: int | None
    key: str | None
    payload: str
    payload_encoding: PayloadEncoding
    payload_size: int
    payload_truncated: bool
    error_type: DeadLetterReason
    error_message: str
    rule_id: str | None = None
    received_at: AwareDatetime
    schema_version: str = SCHEMA_VERSION

    @classmethod
    def from_raw(
        cls,
        *,
        source_topic: str,
        partition: int | None,
        offset: int | None,
        key: bytes | str | None,
        payload: bytes | None,
        error_type: DeadLetterReason,
        error_message: str,
        received_at: AwareDatetime,
        rule_id: str | None = None,
    ) -> DeadLetter:
        """Build a dead letter from raw Kafka bytes, whatever they contain."""
        raw = payload or b""
        head = raw[:MAX_PAYLOAD_BYTES]
        try:
            text, encoding = head.decode("utf-8"), PayloadEncoding.UTF8
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(head).decode("ascii"), PayloadEncoding.BASE64
        if isinstance(key, bytes):
            key = key.decode("utf-8", errors="backslashreplace")
        return cls(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key,
            payload=text,
            payload_encoding=encoding,
            payload_size=len(raw),
            payload_truncated=len(raw) > MAX_PAYLOAD_BYTES,
            error_type=error_type,
            error_message=error_message[:4000],
            rule_id=rule_id,
            received_at=received_at,
        )
