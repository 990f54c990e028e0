"""F, the naive Faust peer: one Faust agent (concurrency 1, same broker and
data) that decodes each event with the same pydantic models and does
nothing else. What Faust's own per-message overhead allows.

With `table`, the peer also writes each message's key to a RocksDB table
with a changelog (T): the floor for any design that keeps per-key state in
Faust tables, as the worker must.

    python -m bench.faust_peer SETTINGS_JSON EXPECTED OUT_FILE PORT [table]   (run by bench.compare)

Writes {"events": n, "seconds": first message to last} to OUT_FILE when done.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import faust
from pydantic import BaseModel, TypeAdapter

from schemas import BillingEvent, NetworkQualityEvent, UsageEvent
from stream.settings import Settings


def build(settings: Settings, expected: int, out: Path, web_port: int, table: bool) -> faust.App:
    name = f"{settings.app_id}-faust-peer{'-table' if table else ''}"  # its own group
    app = faust.App(
        name,
        broker=[f"kafka://{h}" for h in settings.kafka.bootstrap_servers],
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        web_port=web_port,
        web_bind="127.0.0.1",
        datadir=str(out.parent / name),
        processing_guarantee="at_least_once",
        store="rocksdb://",
        topic_partitions=settings.partitions,
    )
    state = (
        app.Table(
            "faust-peer-state", key_type=bytes, value_type=bytes, partitions=settings.partitions
        )
        if table
        else None
    )
    models: dict[str, type[BaseModel]] = {
        settings.topic("usage_events"): UsageEvent,
        settings.topic("billing_events"): BillingEvent,
        settings.topic("network_quality_events"): NetworkQualityEvent,
    }
    many = {t: TypeAdapter(list[m]) for t, m in models.items()}  # type: ignore[valid-type]
    source = app.topic(*models, key_type=bytes, value_type=bytes, allow_empty=True)
    seen = {"events": 0, "first": 0.0}

    async def decode(stream: Any) -> None:
        async for event in stream.events():
            if not seen["first"]:
                seen["first"] = time.monotonic()
            msg = event.message
            value = msg.value or b""
            if value[:1] == b"[":
                seen["events"] += len(many[msg.topic].validate_json(value))
            else:
                models[msg.topic].model_validate_json(value)
                seen["events"] += 1
            if state is not None and msg.key is not None:
                state[msg.key] = value
            if seen["events"] >= expected and not out.exists():
                took = time.monotonic() - seen["first"]
                out.write_text(json.dumps({"events": seen["events"], "seconds": took}))

    app.agent(source, name="faust-peer", concurrency=1)(decode)
    return app


def main() -> None:
    settings = Settings.model_validate_json(sys.argv[1])
    out = Path(sys.argv[3])
    table = sys.argv[5:] == ["table"]
    app = build(settings, int(sys.argv[2]), out, int(sys.argv[4]), table)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.spinner = None  # as in the worker: the spinner turns on DEBUG logging
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
