"""Decoding of raw Kafka records into validated input models.

A record carries one JSON object, or, for event topics, a JSON array of
them (a batch: producers that batch save a Kafka message per event, and the
worker a state read and write per event). Every failure becomes a
`DeadLetter` that says which topic[partition]@offset (and #index in a batch)
failed and why; the other events of a batch are kept. Nothing here raises
for bad input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas import DeadLetter

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as it came off Kafka, with its coordinates."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    index: int | None = None  # position within a batch

    @property
    def where(self) -> str:
        batch = "" if self.index is None else f"#{self.index}"
        return f"{self.topic}[{self.partition}]@{self.offset}{batch}"


def describe_validation_error(exc: ValidationError) -> str:
    """`field.path: message; ...` for every problem, without echoing input."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def dead_letter(
    record: RawRecord,
    error_type: str,
    message: str,
    received_at: datetime,
    rule_id: str | None = None,
) -> DeadLetter:
    return DeadLetter.from_raw(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        payload=record.value,
        error_type=error_type,
        error_message=f"{record.where}: {message}",
        received_at=received_at,
        rule_id=rule_id,
    )


def decode(record: RawRecord, model: type[M], received_at: datetime) -> M | DeadLetter:
    """Validate the record's JSON value as `model`, or explain why not."""
    if record.value is None:
        return dead_letter(record, "empty_value", "record has no value", received_at)
    try:
        return model.model_validate_json(record.value)
    except ValidationError as exc:
        kind = "invalid_json" if _is_json_error(exc) else "validation_error"
        return dead_letter(record, kind, describe_validation_error(exc), received_at)
    except (UnicodeDecodeError, ValueError) as exc:  # pragma: no cover - pydantic wraps these
        return dead_letter(record, "invalid_json", str(exc), received_at)


def decode_many(record: RawRecord, model: type[M], received_at: datetime) -> list[M | DeadLetter]:
    """One event, or each event of a JSON array, validated as `model`."""
    if record.value is None or record.value.lstrip()[:1] != b"[":
        return [decode(record, model, received_at)]
    try:
        return list(_list_of(model).validate_json(record.value))  # the fast path
    except ValidationError:
        pass
    try:
        items = json.loads(record.value)
    except ValueError as exc:
        return [dead_letter(record, "invalid_json", str(exc), received_at)]
    return [
        decode(replace(record, value=json.dumps(item).encode(), index=i), model, received_at)
        for i, item in enumerate(items)
    ]


@cache
def _list_of(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _is_json_error(exc: ValidationError) -> bool:
    return any(err["type"] in ("json_invalid", "json_type") for err in exc.errors())
