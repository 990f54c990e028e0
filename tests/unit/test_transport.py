"""The worker's consumer fetches in batches (`stream.transport`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rules.loader import load_rule_set
from stream.app import create_app
from stream.metrics import Metrics
from stream.reload import RuleReloader
from stream.settings import DEFAULT_RULES_DIR, KafkaSettings, Settings


def worker_app(settings: Settings) -> Any:
    rules = load_rule_set([DEFAULT_RULES_DIR]).rule_set
    assert rules is not None
    metrics = Metrics()
    return create_app(settings, rules, metrics, RuleReloader(settings.rule_paths, metrics))


def worker_consumer(settings: Settings) -> object:
    """The aiokafka consumer the worker's Faust app would start (not started)."""
    app = worker_app(settings)

    async def build() -> object:
        thread = app.consumer._thread
        return thread._create_worker_consumer(app.transport)

    return asyncio.run(build())


def test_fetch_batching_reaches_the_aiokafka_consumer(tmp_path: Path) -> None:
    kafka = KafkaSettings(fetch_min_bytes=65536, fetch_max_wait_ms=25)
    consumer = worker_consumer(Settings(_env_file=None, kafka=kafka, state_dir=tmp_path))
    assert consumer._fetch_min_bytes == 65536  # type: ignore[attr-defined]
    assert consumer._fetch_max_wait_ms == 25  # type: ignore[attr-defined]
    # and the rest is Faust's: the group, no auto-commit
    assert consumer._group_id == "forewarn"  # type: ignore[attr-defined]
    assert consumer._enable_auto_commit is False  # type: ignore[attr-defined]
    # and metadata updates back off while the broker is gone
    update = consumer._client.force_metadata_update  # type: ignore[attr-defined]
    assert update.__qualname__.startswith("backoff_metadata")


def test_the_fetch_loop_never_stops_for_a_commit(tmp_path: Path) -> None:
    """Faust commits inline in its fetch loop every `broker_commit_every`
    acked messages and stops fetching until that commit is done (seconds
    under load); the worker leaves commits to the 1 s timer."""
    app = worker_app(Settings(_env_file=None, state_dir=tmp_path))
    assert app.conf.broker_commit_interval == 1.0
    assert app.conf.broker_commit_every >= 2**60


def test_failed_metadata_updates_back_off_and_are_shared() -> None:
    """With the broker gone aiokafka's sender asks for metadata in a loop;
    each failed answer now comes after a doubling delay (0.1 s .. 5 s), and
    callers meanwhile share it instead of opening new connections."""
    from stream.transport import METADATA_BACKOFF_MAX, backoff_metadata

    async def main() -> tuple[int, list[float]]:
        calls, slept = [0], []

        async def update() -> bool:
            calls[0] += 1
            return calls[0] > 8  # the broker comes back at the 9th try

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        force = backoff_metadata(update, sleep)
        first, second = force(), force()  # the sender and another caller
        assert await first is False and await second is False
        for _ in range(8):
            await force()
        return calls[0], slept

    calls, slept = asyncio.run(main())
    assert calls == 9  # the two first callers shared one update
    assert len(slept) == 8  # one wait per failed update
    assert 0.05 <= slept[0] <= 0.1 and max(slept) <= METADATA_BACKOFF_MAX
    assert slept[-1] >= METADATA_BACKOFF_MAX / 2


def test_the_worker_producer_backs_off_metadata_updates() -> None:
    app = worker_app(Settings(_env_file=None))  # type: ignore[call-arg]

    async def build() -> Any:
        return app.producer._new_producer()

    producer = asyncio.run(build())
    assert producer.client.force_metadata_update.__qualname__.startswith("backoff_metadata")
