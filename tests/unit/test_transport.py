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


def test_the_fetch_loop_never_stops_for_a_commit(tmp_path: Path) -> None:
    """Faust commits inline in its fetch loop every `broker_commit_every`
    acked messages and stops fetching until that commit is done (seconds
    under load); the worker leaves commits to the 1 s timer."""
    app = worker_app(Settings(_env_file=None, state_dir=tmp_path))
    assert app.conf.broker_commit_interval == 1.0
    assert app.conf.broker_commit_every >= 2**60
