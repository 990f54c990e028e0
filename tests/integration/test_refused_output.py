"""An output the broker refuses for good (here: a notices topic that takes
at most 300 bytes a record) never lets the input it came from be committed:
the worker stops with an error, no offset moves past the input, and a
worker started after the topic is fixed sends the notice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from stream.settings import Settings
from tests.integration.conftest import WorkerProcess, wait_for
from tests.integration.kafka import KafkaProbe

pytestmark = pytest.mark.integration


def set_max_bytes(settings: Settings, value: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC,
            settings.topic("customer_notices"),
            configs={"max.message.bytes": value},
        )
        admin.alter_configs([resource])
    finally:
        admin.close()


def committed(settings: Settings) -> int:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
    finally:
        admin.close()
    topic = settings.topic("usage_events")
    return sum(
        o.offset
        for tp, o in offsets.items()
        if isinstance(tp, TopicPartition) and tp.topic == topic
    )


def test_a_refused_output_stops_the_worker_without_committing_its_input(
    settings: Settings, kafka: KafkaProbe, tmp_path: Path
) -> None:
    set_max_bytes(settings, "300")
    first = WorkerProcess(settings, tmp_path / "first.log")
    first.start()
    sid = "8613900000099"
    for n, used in enumerate((100, 1000)):  # the second one's (100%, at once) is refused
        kafka.send(
            "usage_events",
            sid,
            {
                "event_id": f"r{n}",
                "subscriber_id": sid,
                "event_time": "2026-11-20T10:00:00+08:00",
                "service": "data",
                "volume": 1,
                "cycle_id": "2026-11",
                "cycle_used": used,
                "cycle_quota": 1000,
            },
        )
    kafka.flush()
    assert first.proc is not None
    wait_for(lambda: first.proc.poll() is not None, "the worker to stop", 90, (first,))
    assert first.proc.returncode != 0
    assert kafka.read("customer_notices", 0, timeout=2) == []
    time.sleep(2)
    assert committed(settings) <= 1, "committed past the input whose notice was refused"
    set_max_bytes(settings, "1048588")
    second = WorkerProcess(settings, tmp_path / "second.log")
    second.start()
    try:
        notices = kafka.read("customer_notices", 1, timeout=60)
        assert [n["tier"] for n in notices] == ["100pct"]
    finally:
        second.stop()
