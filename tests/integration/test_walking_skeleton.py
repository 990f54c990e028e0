"""A valid and a malformed usage event through the real broker and a real
worker process: one notice and one dead letter come out, and the worker
keeps running."""

from __future__ import annotations

import pytest

from tests.integration.conftest import WorkerProcess
from tests.integration.kafka import KafkaProbe

pytestmark = pytest.mark.integration


def test_valid_event_gives_notice_and_malformed_one_a_dead_letter(
    worker: WorkerProcess, kafka: KafkaProbe
) -> None:
    kafka.send(
        "usage_events",
        "8613800000001",
        {
            "event_id": "u-1",
            "subscriber_id": "8613800000001",
            "event_time": "2026-11-20T10:00:00+08:00",
            "service": "data",
            "volume": 50,
            "cycle_id": "2026-11",
            "cycle_used": 1000,  # 100%: critical, sent at once (80% waits 10 min)
            "cycle_quota": 1000,
        },
    )
    kafka.send("usage_events", "8613800000002", b'{"event_id": "u-2", broken')
    kafka.flush()

    notices = kafka.read("customer_notices", 1)
    dead = kafka.read("dead_letters", 1)

    assert [n["subscriber_id"] for n in notices] == ["8613800000001"]
    assert notices[0]["source_event_ids"] == ["u-1"]
    assert len(dead) == 1
    assert dead[0]["error_type"] == "invalid_json"
    assert dead[0]["key"] == "8613800000002"
    assert dead[0]["payload"] == '{"event_id": "u-2", broken'
    assert dead[0]["source_topic"] == kafka.settings.topic("usage_events")
    assert dead[0]["offset"] is not None and dead[0]["partition"] is not None
    assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
