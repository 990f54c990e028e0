"""A small producer/consumer pair for tests: send records to the test's
topics and read back what the worker produced."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.settings import Settings


class KafkaProbe:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=2
        )

    def send(self, logical: str, key: str | None, value: Any) -> None:
        """Send a JSON value (dict) or raw bytes to a logical topic."""
        raw = value if isinstance(value, bytes | None) else json.dumps(value).encode()
        self.producer.send(
            self.settings.topic(logical), key=key.encode() if key is not None else None, value=raw
        )

    def send_record(self, record: dict[str, Any]) -> None:
        """Send a replay-style `{topic, key, value}` record (contract topic names)."""
        logical = record["topic"].replace("-", "_")
        self.send(logical, record["key"], record["value"])

    def flush(self) -> None:
        self.producer.flush()

    def read(
        self,
        logical: str,
        count: int,
        timeout: float = 60.0,
        distinct: Callable[[dict[str, Any]], str] | None = None,
    ) -> list[dict[str, Any]]:
        """Read at least `count` JSON values from a topic (from the start),
        then anything else that arrives within a short grace period. With
        `distinct`, `count` counts different ids, so repeats (after a crash)
        do not end the read before the last new output is in."""
        topic = self.settings.topic(logical)
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            enable_auto_commit=False,
            consumer_timeout_ms=200,
        )
        parts = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        found: list[dict[str, Any]] = []
        ids: set[str] = set()
        deadline = time.monotonic() + timeout
        grace_until: float | None = None
        try:
            while time.monotonic() < deadline:
                for msg in consumer:
                    found.append(json.loads(msg.value))
                    if distinct is not None:
                        ids.add(distinct(found[-1]))
                if (len(ids) if distinct is not None else len(found)) >= count:
                    grace_until = grace_until or time.monotonic() + 1.0
                    if time.monotonic() >= grace_until:
                        break
        finally:
            consumer.close()
        return found

    def close(self) -> None:
        self.producer.close()
