"""L, the limit: what plain Python does on this machine with the same input.
A minimal aiokafka consumer that decodes every event with the same pydantic
models (one event or a JSON array per message) and produces one small output
per 100 events. No rules, no state, no Faust.

    python -m bench.limit ENV_JSON EXPECTED   (run by bench.compare)

Prints one JSON line: {"events": n, "seconds": first message to last}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import BaseModel, TypeAdapter

from schemas import BillingEvent, NetworkQualityEvent, UsageEvent
from stream.settings import Settings


async def run(settings: Settings, expected: int) -> dict[str, float]:
    models: dict[str, type[BaseModel]] = {
        settings.topic("usage_events"): UsageEvent,
        settings.topic("billing_events"): BillingEvent,
        settings.topic("network_quality_events"): NetworkQualityEvent,
    }
    many = {topic: TypeAdapter(list[model]) for topic, model in models.items()}  # type: ignore[valid-type]
    consumer = AIOKafkaConsumer(
        *models,
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=f"{settings.app_id}-limit",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    events = 0
    first = 0.0
    try:
        while events < expected:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, messages in batch.items():
                for msg in messages:
                    if not first:
                        first = time.monotonic()
                    value = msg.value or b""
                    if value[:1] == b"[":
                        n = len(many[tp.topic].validate_json(value))
                    else:
                        models[tp.topic].model_validate_json(value)
                        n = 1
                    before, events = events, events + n
                    if events // 100 > before // 100:
                        await producer.send(
                            settings.topic("customer_notices"), b'{"n": %d}' % events
                        )
        await producer.flush()
        return {"events": events, "seconds": time.monotonic() - first}
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    settings = Settings.model_validate_json(sys.argv[1])
    print(json.dumps(asyncio.run(run(settings, int(sys.argv[2])))), flush=True)


if __name__ == "__main__":
    main()
