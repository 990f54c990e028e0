"""A worker timed from inside, as the peers time themselves (from the
first message they process to the last), for `bench.compare`.

`drain` (`bench.service`) sees a worker finish only through its metrics,
polled every 0.5 s, and its group's committed offsets, committed every
second: a run of 100,000 events at 15,000 events/s is 6.7 s, and that
much polling and commit lag is 10-25% of it, charged to the worker alone.
Wrapping the worker's `Processor` (as `bench.noop_worker` replaces its work), this
notes when the first input event was taken (usage, billing, network
quality) and when the last record of any kind but the live clock's ticks
was done (fan-out records to other keys are work the events made), and
writes `{"first": t, "last": t}` (monotonic seconds, one clock for every
process of the machine) to `$BENCH_TIMES_FILE` when the worker exits.
Benchmark-only: nothing in the product imports it.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import Worker
from stream import app as app_module
from stream.decoding import RawRecord
from stream.processor import Outcome, Processor
from stream.settings import Settings

FILE_VARIABLE = "BENCH_TIMES_FILE"
INPUT_TOPICS = ("usage_events", "billing_events", "network_quality_events")


Work = Callable[[], Outcome]


class Around:
    """A worker's `Processor` seen through `around(raw, work)`, which runs
    (or replaces) each record's work: the processor is compiled (dev/compile),
    and compiled classes can be neither patched nor subclassed, so the
    benchmarks wrap the instance the worker builds."""

    def __init__(self, inner: Processor, around: Callable[[Processor, RawRecord, Work], Outcome]):
        self._inner = inner
        self._around = around

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def subscriber(self, raw: RawRecord, *args: Any) -> Outcome:
        return self._around(self._inner, raw, lambda: self._inner.subscriber(raw, *args))

    def network(self, raw: RawRecord, *args: Any) -> Outcome:
        return self._around(self._inner, raw, lambda: self._inner.network(raw, *args))


def wrap_processors(around: Callable[[Processor, RawRecord, Work], Outcome]) -> None:
    """Every `Processor` the worker of this process builds is an `Around`."""
    build = getattr(app_module, "Processor")  # noqa: B009 - the name stream.app builds with

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return Around(build(*args, **kwargs), around)

    setattr(app_module, "Processor", wrapped)  # noqa: B010


def install(settings: Settings | None = None) -> None:
    """Time every `Processor` of this process (`settings`: the worker's,
    read from the environment as the worker reads them); written at exit."""
    path = os.environ.get(FILE_VARIABLE)
    if not path:
        return
    settings = settings or Settings()
    inputs = {settings.topic(name) for name in INPUT_TOPICS}
    ticks = {settings.internal_topic(f"clock-{space}") for space in ("subscribers", "network")}
    times: dict[str, float] = {}

    def timed(processor: Processor, raw: RawRecord, work: Work) -> Outcome:
        if raw.topic in inputs and "first" not in times:
            times["first"] = time.monotonic()
        outcome = work()
        if raw.topic not in ticks:
            times["last"] = time.monotonic()
        return outcome

    wrap_processors(timed)
    atexit.register(lambda: Path(path).write_text(json.dumps(times)))


def read(path: Path) -> dict[str, float] | None:
    """The times a worker wrote, or None when it wrote none."""
    try:
        times: dict[str, float] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return times if "first" in times and "last" in times else None


def timed_worker(settings: Settings, log: Path, module: str = "bench.timed_worker") -> Worker:
    """A benchmark's worker (`module`: `bench.timed_worker`, or W0's
    `bench.noop_worker`) that writes its times next to its log; read them
    with `read(times_of(worker))` once it has stopped."""
    times = log.with_name(f"{log.stem}-times.json")
    times.unlink(missing_ok=True)
    return Worker(settings, log, module=module, env={FILE_VARIABLE: str(times)})


def times_of(worker: Worker) -> Path:
    return Path(worker.extra_env[FILE_VARIABLE])
