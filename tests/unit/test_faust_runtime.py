"""The worker's consumer fetches in batches (`stream.faust_runtime`)."""

from __future__ import annotations

import asyncio
import re
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
    from stream.faust_runtime import METADATA_BACKOFF_MAX, backoff_metadata

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


# -- one test per workaround of stream/faust_runtime.py, and the rule that they
#    live there only -------------------------------------------------------------


def test_the_installed_faust_and_aiokafka_are_versions_the_workarounds_were_tested_with(
    monkeypatch: Any,
) -> None:
    from stream import faust_runtime

    assert faust_runtime.check_versions(env={}) == []
    monkeypatch.setattr(faust_runtime, "version", lambda package: "9.9.9")
    problems = faust_runtime.check_versions(env={})
    assert [p.split(" is not")[0] for p in problems] == ["faust-streaming 9.9.9", "aiokafka 9.9.9"]
    assert faust_runtime.check_versions(env={"FOREWARN_UNTESTED_RUNTIME": "1"}) == []


def test_a_record_read_directly_becomes_a_faust_event_of_the_same_partition_and_generation(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from faust.types import TP

    from stream.faust_runtime import redelivered

    app = worker_app(Settings(_env_file=None, state_dir=tmp_path))
    record = SimpleNamespace(
        topic="usage-events", partition=2, offset=41, timestamp=1_700_000_000_000,
        timestamp_type=0, headers=[], key=b"k", value=b"v", checksum=None,
    )  # fmt: skip
    like = SimpleNamespace(tp=TP("usage-events", 2), generation_id=7)

    async def build() -> Any:
        return redelivered(app, record, like)

    event = asyncio.run(build())
    m = event.message
    assert (m.topic, m.partition, m.offset, m.key, m.value) == ("usage-events", 2, 41, b"k", b"v")
    assert m.generation_id == 7 and m.tp == like.tp


def test_the_worker_runs_without_fausts_spinner(tmp_path: Path) -> None:
    import faust

    from stream.faust_runtime import without_spinner

    worker = faust.Worker(worker_app(Settings(_env_file=None, state_dir=tmp_path)), quiet=True)
    without_spinner(worker)
    assert worker.spinner is None


PRIVATE_NAMES = re.compile(
    r"_current_event|_fetch_min_bytes|_fetch_max_wait_ms|_create_worker_consumer"
    r"|_new_consumer_thread|_new_producer|\._dbs\b|_dbs\"|send_changelog|buffer\.max_messages"
    r"|tables\.recovery|\.spinner\b|consumer\._client|\._thread\b|faust\.types import .*Message"
    r"|from (faust|aiokafka)[\w.]* import _"
)


def test_no_faust_or_aiokafka_private_name_is_used_outside_the_adapter() -> None:
    stream_dir = Path(__file__).resolve().parents[2] / "stream"
    adapter = (stream_dir / "faust_runtime.py").read_text(encoding="utf-8")
    assert len(PRIVATE_NAMES.findall(adapter)) >= 6  # the pattern sees them where they are
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(stream_dir.rglob("*.py"))
        if path.name != "faust_runtime.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if PRIVATE_NAMES.search(line)
    ]
    assert found == []


class _Service:
    """What `inline_first` reads of mode's Service."""

    should_stop = False
    crashed = False


def test_a_record_delivered_at_once_makes_no_task_and_starts_no_other_wait() -> None:
    """Faust's fetch loop races each record's delivery against the
    consumer's flow suspension with `Service.wait_first` (four tasks per
    record); a delivery that needs no wait now runs inline."""
    from mode.services import WaitResults

    from stream.faust_runtime import inline_first

    async def main() -> tuple[Any, int, bool]:
        tasks = len(asyncio.all_tasks())
        seen: list[int] = []

        async def deliver(n: int) -> int:
            seen.append(n)
            return n * 2

        suspend = asyncio.Event()
        other = suspend.wait()

        async def never(*coros: Any, timeout: Any = None) -> WaitResults:
            raise AssertionError("the slow path is not taken")

        result = await inline_first(_Service(), never, (deliver(21), other), None)
        assert seen == [21]
        return result, len(asyncio.all_tasks()) - tasks, other.cr_frame is None

    result, new_tasks, closed = asyncio.run(main())
    assert result.results == [42] and not result.stopped
    assert new_tasks == 0 and closed  # the suspension wait never started


def test_a_delivery_that_must_wait_is_raced_against_flow_suspension_as_in_faust() -> None:
    """A full queue (here: a future nobody completes) makes the delivery
    wait; when the consumer's flow is suspended (a rebalance) the fetch
    loop is freed and the delivery is cancelled, running its clean-up."""
    from mode import Service

    from stream.faust_runtime import inline_first

    class Fetcher(Service):
        pass

    async def main() -> tuple[Any, list[str], Any]:
        fetcher = Fetcher()
        steps: list[str] = []
        blocked = asyncio.get_running_loop().create_future()

        async def deliver() -> str:
            steps.append("put")
            try:
                await blocked
            except asyncio.CancelledError:
                steps.append("cancelled")
                raise
            return "delivered"

        suspend = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, suspend.set)
        raced = await inline_first(fetcher, fetcher.wait_first, (deliver(), suspend.wait()), None)
        await asyncio.sleep(0.01)  # the cancelled delivery's clean-up runs

        # and a delivery that waits and then completes gives its result
        ready = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, ready.set_result, "room")

        async def later() -> str:
            got = await ready
            await asyncio.sleep(0)
            return f"delivered after {got}"

        done = await inline_first(
            fetcher, fetcher.wait_first, (later(), asyncio.Event().wait()), None
        )
        return raced, steps, done

    raced, steps, done = asyncio.run(main())
    assert steps == ["put", "cancelled"]
    assert not raced.stopped and raced.results == [True]  # the suspension won
    assert done.results == ["delivered after room"]


def test_a_delivery_that_fails_at_once_raises_as_in_faust() -> None:
    from stream.faust_runtime import inline_first

    async def main() -> None:
        async def deliver() -> None:
            raise ValueError("bad record")

        other = asyncio.Event().wait()

        async def never(*coros: Any, timeout: Any = None) -> Any:
            raise AssertionError("the slow path is not taken")

        try:
            await inline_first(_Service(), never, (deliver(), other), None)
        except ValueError as exc:
            assert str(exc) == "bad record" and other.cr_frame is None
        else:
            raise AssertionError("the failure was swallowed")

    asyncio.run(main())


def test_the_worker_consumer_delivers_inline(tmp_path: Path) -> None:
    from mode import Service

    app = worker_app(Settings(_env_file=None, state_dir=tmp_path))
    wait_first = app.transport.Consumer.wait_first
    assert wait_first is not Service.wait_first
    assert "inline_first" in wait_first.__code__.co_names


def test_the_fetch_loop_checks_the_empty_producer_buffer_without_fausts_settings(
    tmp_path: Path,
) -> None:
    """Before each record Faust awaits `producer.buffer.wait_until_ebb()`;
    the worker's buffer is checked by its queue length, and Faust's own
    wait (which flushes) runs only when the buffer is over its limit."""
    app = worker_app(Settings(_env_file=None, state_dir=tmp_path))

    async def main() -> list[str]:
        buffer = app.producer.buffer
        flushed: list[str] = []

        async def flush_atmost(n: int | None) -> int:
            flushed.append(f"flush {n}")
            while not buffer.pending.empty():
                buffer.pending.get_nowait()
            return 0

        buffer.flush_atmost = flush_atmost
        app_of_buffer, buffer.app = buffer.app, None  # Faust's check reads app.conf
        await buffer.wait_until_ebb()  # empty: nothing to wait for
        assert flushed == []
        for i in range(buffer.max_messages):
            buffer.pending.put_nowait(i)
        await buffer.wait_until_ebb()  # at the limit, not over it
        assert flushed == []
        buffer.pending.put_nowait("one more")
        buffer.app = app_of_buffer
        await buffer.wait_until_ebb()  # over it: Faust's wait flushes
        return flushed

    assert asyncio.run(main()) == ["flush 100"]


def test_the_worker_monitor_keeps_only_the_stream_inbound_time(tmp_path: Path) -> None:
    """Faust reads back one thing its monitor keeps per record: when each
    partition's stream last took one (its stalled-stream warnings). The
    worker's monitor keeps that and none of the per-record counters."""
    from faust.types import TP

    app = worker_app(Settings(_env_file=None, state_dir=tmp_path))
    monitor = app.monitor
    tp = TP("usage-events", 3)
    stream = object()
    state = monitor.on_stream_event_in(tp, 10, stream, object())
    monitor.on_stream_event_out(tp, 10, stream, object(), state)
    assert tp in monitor.stream_inbound_time
    assert monitor.events_total == 0 and monitor.events_active == 0
    assert list(monitor.events_runtime) == []
