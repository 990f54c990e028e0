"""Decoding of raw Kafka records into validated input models.

A record carries one JSON object, or, for event topics, a JSON array of
them (a batch: producers that batch save a Kafka message per event, and the
worker a state read and write per event). Every failure says which
topic[partition]@offset (and #index in a batch) failed and why; the other
events of a batch are kept. A record's failures become one `DeadLetter` at
most (`Problems`): a 1 MB record of 7,500 wrongly keyed events costs one
dead letter that lists the failing indexes, not 7,500 copies of the record.
Nothing here raises for bad input.

`events_of` is the one intake of event records for the worker and
`forewarn replay`: decoding, validation and the key check, so a replay
predicts what the worker accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas import DeadLetter, DeadLetterReason
from stream.logs import mask

M = TypeVar("M", bound=BaseModel)


@dataclass(init=False, slots=True)
class RawRecord:
    """A record as it came off Kafka, with its coordinates; never changed
    once made. (`__init__` written out, not frozen: a frozen dataclass's
    is interpreted code setting each field through `object.__setattr__`,
    and a batch makes one per event, `item`; see dev/compile.py.)"""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    index: int | None  # position within a batch

    def __init__(
        self,
        topic: str,
        partition: int | None,
        offset: int | None,
        key: bytes | None,
        value: bytes | None,
        index: int | None = None,
    ) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value, self.index = key, value, index

    def item(self, index: int) -> RawRecord:
        """The coordinates of a batch's `index`th item."""
        return RawRecord(self.topic, self.partition, self.offset, self.key, self.value, index)

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
    error_type: DeadLetterReason,
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
    item = validate(record.value, model)
    if isinstance(item, tuple):
        return dead_letter(record, item[0], item[1], received_at)
    return item


Problem = tuple[DeadLetterReason, str]  # (kind, message): why one item was refused


def validate(value: bytes | None, model: type[M]) -> M | Problem:
    if value is None:
        return (DeadLetterReason.EMPTY_VALUE, "record has no value")
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        kind = (
            DeadLetterReason.INVALID_JSON
            if _is_json_error(exc)
            else DeadLetterReason.VALIDATION_ERROR
        )
        return (kind, describe_validation_error(exc))
    except (UnicodeDecodeError, ValueError) as exc:  # pragma: no cover - pydantic wraps these
        return (DeadLetterReason.INVALID_JSON, str(exc))


def decode_many(record: RawRecord, model: type[M]) -> list[M | Problem]:
    """One item, or each item of a JSON array, validated as `model`."""
    if record.value is None or record.value.lstrip()[:1] != b"[":
        return [validate(record.value, model)]
    try:
        return list(_list_of(model).validate_json(record.value))  # the fast path
    except ValidationError:
        pass
    try:
        items = json.loads(record.value)
    except ValueError as exc:
        return [(DeadLetterReason.INVALID_JSON, str(exc))]
    if not isinstance(items, list):  # pragma: no cover - starts with '['
        return [(DeadLetterReason.INVALID_JSON, "not a JSON array")]
    return [validate(json.dumps(item).encode(), model) for item in items]


@dataclass(init=False)
class Problems:
    """The refused items of one record, told in one dead letter at most.
    (`__init__` written out: native when compiled, dev/compile.py.)"""

    raw: RawRecord
    batch: bool  # the record is a JSON array: say which items failed
    items: list[tuple[int, DeadLetterReason, str]]

    def __init__(self, raw: RawRecord, batch: bool = False) -> None:
        self.raw = raw
        self.batch = batch
        self.items = []

    def add(self, index: int, kind: DeadLetterReason, message: str) -> None:
        self.items.append((index, kind, message))

    def dead_letter(self, received_at: datetime, total: int) -> DeadLetter | None:
        if not self.items:
            return None
        if len(self.items) == 1:
            index, kind, message = self.items[0]
            at = self.raw.item(index) if self.batch else self.raw
            return dead_letter(at, kind, message, received_at)
        kinds: dict[DeadLetterReason, list[tuple[int, str]]] = {}
        for index, kind, message in self.items:
            kinds.setdefault(kind, []).append((index, message))
        main = max(kinds, key=lambda k: len(kinds[k]))
        parts = [
            f"{kind} at {_ranges([i for i, _ in found])}: {found[0][1]}"
            for kind, found in kinds.items()
        ]
        message = f"{len(self.items)} of {total} events refused; " + "; ".join(parts)
        return dead_letter(self.raw, main, message, received_at)


def _ranges(indexes: list[int], most: int = 12) -> str:
    """`#0-#7499`, or `#3, #7, #10-#12 (+5 more)`: compact, bounded."""
    spans: list[tuple[int, int]] = []
    for i in sorted(indexes):
        if spans and i == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], i)
        else:
            spans.append((i, i))
    shown = [f"#{a}" if a == b else f"#{a}-#{b}" for a, b in spans[:most]]
    more = f" (+{len(spans) - most} more)" if len(spans) > most else ""
    return ", ".join(shown) + more


def events_of(
    raw: RawRecord, model: type[M], key_of: Callable[[M], tuple[str, str]]
) -> tuple[list[tuple[RawRecord, M]], Problems]:
    """A record's valid, correctly keyed items with their coordinates, and
    the problems of the others. `key_of(item)` gives the item's key and the
    name of the field it comes from."""
    decoded = decode_many(raw, model)
    problems = Problems(raw, batch=len(decoded) > 1 or (raw.value or b"").lstrip()[:1] == b"[")
    good: list[tuple[RawRecord, M]] = []
    record_key = None if raw.key is None else raw.key.decode("utf-8", "replace")
    for i, item in enumerate(decoded):
        if isinstance(item, tuple):
            problems.add(i, *item)
            continue
        key, field_name = key_of(item)
        if key != record_key:
            problems.add(
                i,
                DeadLetterReason.KEY_MISMATCH,
                f"record key must be the event's {field_name} ({mask(key)});"
                " state is partitioned by it",
            )
            continue
        good.append((raw.item(i) if problems.batch else raw, item))
    return good, problems


@cache
def _list_of(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _is_json_error(exc: ValidationError) -> bool:
    return any(err["type"] in ("json_invalid", "json_type") for err in exc.errors())
