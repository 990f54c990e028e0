"""The worker's supervision acting on a consumer (`stream.supervisor`)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

import stream.supervisor as supervision
from stream.metrics import Metrics
from stream.settings import Settings
from stream.supervisor import STALL_SECONDS, Supervisor


class Consumer:
    """Faust's consumer as the supervisor sees it: one input partition with
    records up to offset 9, of which offset 4 was the last processed."""

    def __init__(self, tp: TP) -> None:
        self.tp = tp
        self.sought: list[dict[TP, int]] = []

    def assignment(self) -> set[TP]:
        return {self.tp}

    def highwater(self, tp: TP) -> int:
        return 10

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.sought.append(dict(partitions))

    async def seek(self, tp: TP, offset: int) -> None:
        raise AssertionError("seek from the event loop's thread races the consumer thread")


def test_a_stalled_partition_is_sought_back_on_the_consumer_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(_env_file=None)
    topic = settings.topic("usage_events")
    consumer = Consumer(TP(topic, 3))
    app: Any = SimpleNamespace(rebalancing=False, consumer=consumer)
    processor: Any = SimpleNamespace(sources={topic: "usage"})
    metrics = Metrics()
    sup = Supervisor(app, settings, processor, metrics, None, {}, {}, None, {})  # type: ignore[arg-type]
    monkeypatch.setattr(supervision, "committed_offsets", lambda settings, tps: {})
    sup.positions[(topic, 3)] = 4
    sup.watching[(topic, 3)] = (4, time.monotonic() - STALL_SECONDS - 1)  # quiet for long
    asyncio.run(sup.unstall())
    assert consumer.sought == [{TP(topic, 3): 5}]  # from the first record not processed
    stalls = metrics.registry.get_sample_value("forewarn_input_stalls_total", {"source": "usage"})
    assert stalls == 1


class Revoking(Consumer):
    """A consumer whose thread revoked one partition after `assignment()`
    listed it: aiokafka's `highwater` then raises."""

    def __init__(self, tp: TP, gone: TP) -> None:
        super().__init__(tp)
        self.gone = gone

    def assignment(self) -> set[TP]:
        return {self.tp, self.gone}

    def highwater(self, tp: TP) -> int:
        if tp == self.gone:
            raise RuntimeError(f"IllegalStateError: No current assignment for partition {tp}")
        return 10


def test_a_partition_revoked_while_the_stall_check_runs_is_skipped_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(_env_file=None)
    topic = settings.topic("usage_events")
    consumer = Revoking(TP(topic, 3), TP(topic, 4))
    app: Any = SimpleNamespace(rebalancing=False, consumer=consumer)
    processor: Any = SimpleNamespace(sources={topic: "usage"})
    sup = Supervisor(app, settings, processor, Metrics(), None, {}, {}, None, {})  # type: ignore[arg-type]
    monkeypatch.setattr(supervision, "committed_offsets", lambda settings, tps: {})
    quiet = time.monotonic() - STALL_SECONDS - 1
    for p in (3, 4):
        sup.positions[(topic, p)] = 4
        sup.watching[(topic, p)] = (4, quiet)
    asyncio.run(sup.unstall())  # raised before, out of the observe timer
    assert consumer.sought == [{TP(topic, 3): 5}]
