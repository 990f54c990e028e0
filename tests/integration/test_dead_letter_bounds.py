"""Dead letters stay proportionate on the real broker: one ~1 MB record of
7,500 wrongly keyed events is one dead letter of bounded size (not 7,500
copies of the record), good records around it are processed once, and the
stall check takes no slow moment for lost records."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.settings import Settings
from tests.integration.conftest import WorkerProcess, metric, scrape, wait_for
from tests.integration.kafka import KafkaProbe

pytestmark = pytest.mark.integration


def usage(n: int, sid: str, used: float = 100) -> dict[str, object]:
    return {
        "event_id": f"d{n}",
        "subscriber_id": sid,
        "event_time": "2026-11-20T10:00:00+08:00",
        "service": "data",
        "volume": 1,
        "cycle_id": "2026-11",
        "cycle_used": used,
        "cycle_quota": 1000,
    }


def dead_letter_bytes(settings: Settings) -> list[int]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, consumer_timeout_ms=2000
    )
    parts = [TopicPartition(settings.topic("dead_letters"), p) for p in range(settings.partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    sizes = [len(m.value) for m in consumer]
    consumer.close()
    return sizes


def test_a_megabyte_of_wrongly_keyed_events_is_one_bounded_dead_letter(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    batch = [
        {k: v for k, v in usage(i, f"x{i:05d}").items() if k not in ("cycle_used", "cycle_quota")}
        for i in range(7500)
    ]
    value = json.dumps(batch, separators=(",", ":")).encode()
    assert len(value) > 900_000  # just under the broker's 1 MiB record limit
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    producer.send(settings.topic("usage_events"), key=b"s1", value=value).get(timeout=30)
    producer.close()
    kafka.send("usage_events", "s2", usage(9001, "s2", 1000))  # a good record after it
    kafka.flush()
    notices = kafka.read("customer_notices", 1)
    assert [n["subscriber_id"] for n in notices] == ["s2"]
    wait_for(
        lambda: metric(scrape(settings), "forewarn_dead_letters_total") >= 1,
        "the dead letter",
        workers=(worker,),
    )
    sizes = dead_letter_bytes(settings)
    assert len(sizes) == 1 and sizes[0] < 80_000, sizes
    letter = kafka.read("dead_letters", 1)[0]
    assert "7500 of 7500 events refused; key_mismatch at #0-#7499" in letter["error_message"]
    m = scrape(settings)
    assert metric(m, "forewarn_invalid_events_total", reason="key_mismatch") == 7500
    assert metric(m, "forewarn_input_stalls_total") == 0
