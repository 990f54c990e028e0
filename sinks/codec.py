"""Encoding of outputs into records: which output topic, which key, which bytes.

Keys follow the contract: notices by subscriber, tasks by their target id,
dead letters by the key of the input they came from. JSON is compact with a
fixed field order, so the same output always encodes to the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from schemas import CustomerNotice, DeadLetter, InterventionTask

Output = CustomerNotice | InterventionTask | DeadLetter
# Kafka's default max.message.bytes is 1 MiB (1,048,588): an output record
# must stay well under it, or the broker refuses it for good.
MAX_RECORD_BYTES = 900_000


class OutputTopic(StrEnum):
    """Logical output topics; the stream layer maps them to physical names."""

    CUSTOMER_NOTICES = "customer-notices"
    INTERVENTION_TASKS = "intervention-tasks"
    DEAD_LETTERS = "dead-letters"


@dataclass(init=False, slots=True)
class OutputRecord:
    """An output as produced; never changed once made (`__init__` written
    out, not frozen: native when compiled, one per output)."""

    topic: OutputTopic
    key: bytes | None
    value: bytes

    def __init__(self, topic: OutputTopic, key: bytes | None, value: bytes) -> None:
        self.topic, self.key, self.value = topic, key, value


def route(output: Output) -> tuple[OutputTopic, str | None]:
    """The logical topic and the key an output is produced with."""
    if isinstance(output, CustomerNotice):
        return OutputTopic.CUSTOMER_NOTICES, output.subscriber_id
    if isinstance(output, InterventionTask):
        return OutputTopic.INTERVENTION_TASKS, output.target.id
    return OutputTopic.DEAD_LETTERS, output.key


def encode(output: Output) -> OutputRecord:
    topic, key = route(output)
    return OutputRecord(
        topic=topic,
        key=key.encode("utf-8") if key is not None else None,
        value=output.model_dump_json().encode("utf-8"),
    )


def fits(record: OutputRecord) -> bool:
    """Whether the broker will take the record (see `MAX_RECORD_BYTES`)."""
    return len(record.value) + len(record.key or b"") <= MAX_RECORD_BYTES


def encode_jsonl_line(record: OutputRecord) -> str:
    """One replay output line: `{"topic": ..., "key": ..., "value": {...}}`."""
    key = record.key.decode("utf-8") if record.key is not None else None
    value = record.value.decode("utf-8")
    head = json.dumps({"topic": record.topic.value, "key": key}, ensure_ascii=False)
    return f'{head[:-1]}, "value": {value}}}'
