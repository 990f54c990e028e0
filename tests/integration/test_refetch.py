"""`refetch` reads exactly the records of a hole from the real broker: what
the worker processes when Faust failed to deliver them."""

from __future__ import annotations

import asyncio

import pytest

from stream.continuity import refetch
from stream.settings import Settings
from tests.integration.kafka import KafkaProbe

pytestmark = pytest.mark.integration


def test_refetch_returns_the_records_of_the_hole_in_order(
    kafka: KafkaProbe, settings: Settings
) -> None:
    topic = settings.topic("usage_events")
    for i in range(10):
        kafka.producer.send(topic, key=b"k", value=b"%d" % i, partition=1)
    kafka.flush()
    got = asyncio.run(refetch(settings, topic, 1, 3, 7))
    assert [(r.offset, r.value) for r in got] == [(o, b"%d" % o) for o in range(3, 7)]
    past_the_end = asyncio.run(refetch(settings, topic, 1, 8, 20))
    assert [r.offset for r in past_the_end] == [8, 9]
