"""Every use of a Faust or aiokafka private name, in one place, each a
small named workaround with a test (tests/unit/test_faust_runtime.py), and
`check_versions()`, which the worker runs at start: the workarounds were
written against the versions in `TESTED` and the worker refuses to start
on others (a private name may have moved; set
FOREWARN_UNTESTED_RUNTIME=1 to start anyway, after running the tests).

The workarounds:

- `fetch_tuned_transport`: the consumer's fetch batching and both clients'
  metadata back-off. faust-streaming 0.15.3 builds its aiokafka consumer
  with a fixed argument list: `fetch.min.bytes` stays at 1 and
  `fetch.max.wait.ms` at 1,500 ms, so under steady traffic the broker
  answers every fetch at once with two or three records, and Faust's and
  aiokafka's per-fetch work is paid for a handful of records: measured,
  477 µs of worker CPU per event at 2,000 events/s against 267 µs when
  draining a backlog; with the broker gathering 32 KB or 30 ms per fetch it
  is 333 µs, for at most 30 ms of added latency. And aiokafka's sender loop
  asks for a metadata update whenever a partition's leader is unknown; with
  the broker down the update fails at once, so the loop spun (about 650
  connects/s and a whole core). `backoff_metadata` makes a failed update
  answer only after a delay that doubles from 0.1 s to 5 s, with jitter:
  1-3% of a core and about 12 connects/s with the broker gone for 30 s.
  `metadata_backoff` does the same for the changelog producer.
- `inline_first`: Faust's fetch loop hands every record to the agents'
  channels through `Service.wait_first(deliver(record), suspend_flow.wait())`,
  which makes four tasks and an `asyncio.wait` per record and cancels three
  of them: 21 µs a record here, a third of a trivial Faust agent's cost.
  The worker's consumer first runs the delivery inline; almost always it
  completes at once (the agent's queue has room) and no task is made. Only
  when it has to wait (a full queue, flow control, the producer's buffer)
  does the rest of it run as a task raced against the other waits, as in
  Faust, so a rebalance still frees the fetch loop.
- `redelivered`: a Faust event for a record read directly (one Faust failed
  to deliver), with the message's partition and generation.
- `ebb_checked_cheaply`: Faust's fetch loop awaits
  `producer.buffer.wait_until_ebb()` before every record it delivers, and
  the buffer's `size` reads `app.conf.producer_threaded` through Faust's
  settings registry each time. The worker produces through its own producer
  (`stream.checkpoint`), so Faust's buffer stays empty; the check now
  looks at the buffer's queue length and calls Faust's own wait only when
  it is over the limit.
- `LeanMonitor`: Faust's default sensor (`faust.Sensors.Monitor`) keeps
  per-stream, per-task and per-topic counters and event run times for
  every record (four calls and a dict a record), for Faust's own web
  statistics pages, which the worker turns off: its metrics are its own
  (`stream.metrics`). The lean one keeps only what Faust itself reads
  back, the time each partition's stream last took a record (its "stream
  is not processing" warnings). With both, the worker with a no-op
  processor (`bench.noop_worker`, 100,000 events one per record) went
  from 15,056 to 16,527 events/s on average over three A/B pairs.
- `without_spinner`: Faust's terminal spinner sets the root logger to DEBUG
  so it can spin per log record: every produced message would build a debug
  record for our JSON handler to drop.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from time import monotonic
from typing import Any

import faust
from faust.sensors.monitor import Monitor
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message
from mode.services import WaitResults

from stream.settings import KafkaSettings

TESTED: dict[str, tuple[str, ...]] = {
    "faust-streaming": ("0.15.3",),
    "aiokafka": ("0.12.0", "0.13.0", "0.14.0"),
}


def check_versions(env: dict[str, str] | None = None) -> list[str]:
    """Why the installed Faust or aiokafka is not one the workarounds were
    tested with; empty when it is, or when FOREWARN_UNTESTED_RUNTIME=1."""
    if (env if env is not None else os.environ).get("FOREWARN_UNTESTED_RUNTIME") == "1":
        return []
    problems = []
    for package, tested in TESTED.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = "none"
        if installed not in tested:
            problems.append(
                f"{package} {installed} is not a tested version ({', '.join(tested)}):"
                " stream/faust_runtime.py reaches its private names"
            )
    return problems


def fetch_tuned_transport(app: faust.App, kafka: KafkaSettings) -> Any:
    """A transport like Faust's own `kafka://` one, with fetch batching."""

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # AIOKafkaConsumer keeps its arguments until start() builds the
            # fetcher, so setting them here is the same as passing them.
            consumer._fetch_min_bytes = kafka.fetch_min_bytes
            consumer._fetch_max_wait_ms = kafka.fetch_max_wait_ms
            client = consumer._client
            client.force_metadata_update = backoff_metadata(client.force_metadata_update)
            return consumer

    class Consumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
            return await inline_first(self, super().wait_first, coros, timeout)

    class Producer(driver.Producer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            ebb_checked_cheaply(self.buffer, threaded=app.conf.producer_threaded)

        def _new_producer(self, transactional_id: str | None = None) -> Any:
            producer = super()._new_producer(transactional_id)
            metadata_backoff(producer)
            return producer

    class Transport(driver.Transport):
        pass

    Transport.Consumer = Consumer
    Transport.Producer = Producer
    return Transport(app.conf.broker_consumer, app)


def metadata_backoff(producer: Any) -> None:
    """`backoff_metadata` on an aiokafka producer's client: Faust's, and the
    worker's own changelog producer (`stream.checkpoint`)."""
    client = producer.client
    client.force_metadata_update = backoff_metadata(client.force_metadata_update)


METADATA_BACKOFF_MIN = 0.1
METADATA_BACKOFF_MAX = 5.0


def backoff_metadata(
    update: Callable[[], Awaitable[bool]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Callable[[], Awaitable[bool]]:
    """`client.force_metadata_update` whose failures answer after a
    bounded, jittered, doubling delay (see the module docstring). Callers
    during that delay share the one pending answer instead of starting new
    updates (each would open a connection)."""
    delay = [0.0]
    pending: list[asyncio.Future[bool] | None] = [None]

    async def updated() -> bool:
        ok = await update()
        if ok:
            delay[0] = 0.0
            return True
        delay[0] = min(max(delay[0] * 2, METADATA_BACKOFF_MIN), METADATA_BACKOFF_MAX)
        await sleep(delay[0] * random.uniform(0.5, 1.0))
        return False

    def force() -> Awaitable[bool]:
        current = pending[0]
        if current is None or current.done():
            current = pending[0] = asyncio.ensure_future(updated())
        return asyncio.shield(current)

    return force


async def inline_first(
    service: Any,
    wait_first: Callable[..., Awaitable[WaitResults]],
    coros: tuple[Any, ...],
    timeout: Any,
) -> WaitResults:
    """`service.wait_first(*coros)` (mode's `Service.wait_first`), with the
    first coroutine run inline up to its first wait. When it finishes there
    (the usual case) its result is the first, as `wait_first` would say,
    and the other waits are never started; when it waits, the rest of it
    becomes the task `wait_first` races against the others."""
    first = coros[0] if coros else None
    if timeout is not None or not asyncio.iscoroutine(first):
        return await wait_first(*coros, timeout=timeout)
    others = coros[1:]
    try:
        waiting = first.send(None)
    except StopIteration as done:
        _close(others)
        if service.should_stop or service.crashed:
            return WaitResults([], [], True)
        return WaitResults([first], [done.value], False)
    except BaseException:
        _close(others)
        raise
    rest = asyncio.ensure_future(_resume(first, waiting))
    return await wait_first(rest, *others, timeout=timeout)


async def _resume(coro: Any, waiting: Any) -> Any:
    """Drive `coro` on from its first wait, as a task would: `waiting` is
    what it yielded to the event loop (a future it awaits, or None for one
    turn of the loop). A cancellation is thrown into it, so its own
    clean-up runs."""
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait((waiting,))  # done, whatever its outcome
        except BaseException as exc:
            try:
                waiting = coro.throw(exc)
            except StopIteration as done:
                return done.value
            continue
        try:
            waiting = coro.send(None)
        except StopIteration as done:
            return done.value


def _close(coros: tuple[Any, ...]) -> None:
    for coro in coros:
        if asyncio.iscoroutine(coro):
            coro.close()  # never started: no "never awaited" warning


def ebb_checked_cheaply(buffer: Any, threaded: bool) -> None:
    """`buffer.wait_until_ebb` that returns at once while the buffer's queue
    is within `max_messages`, without Faust's settings lookup (see the
    module docstring); over it, Faust's own wait. A threaded producer keeps
    its messages elsewhere: its buffer is left as it is."""
    if threaded:
        return
    pending = buffer.pending  # the asyncio queue of messages not yet produced
    wait = buffer.wait_until_ebb

    async def wait_until_ebb() -> None:
        if pending.qsize() > buffer.max_messages:
            await wait()

    buffer.wait_until_ebb = wait_until_ebb


class LeanMonitor(Monitor):
    """Faust's monitor without its per-record bookkeeping (see the module
    docstring): a partition's stream inbound time is all it keeps per record."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        pass

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: Any, event: Any
    ) -> dict[str, Any] | None:
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: dict[str, Any] | None = None
    ) -> None:
        pass

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        pass


def redelivered(app: faust.App, record: Any, like: Any) -> Any:
    """A Faust event for an aiokafka `record` read directly, in the
    partition and generation of the message `like`."""
    return app.create_event(
        record.key,
        record.value,
        record.headers,
        Message(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp / 1000.0,
            record.timestamp_type,
            record.headers,
            record.key,
            record.value,
            record.checksum,
            tp=like.tp,
            generation_id=like.generation_id,
        ),
    )


def without_spinner(worker: faust.Worker) -> None:
    worker.spinner = None
