"""How the worker scales out: the same profiles and backlog of events drained
by one worker, then by two workers of one consumer group (six partitions,
split three and three), on the same broker.

Both workers load the profiles (their partitions' state) first and are
stopped while the backlog is produced, so the producer does not share the
cores with them; they are then started together, with their state on
their disks, and timed until they have drained the backlog. Timed from inside, as `bench.compare` times W: from the
first event a worker took to the last record a worker finished
(`bench.timing`); the rate seen from outside (metrics polled, offsets
committed) is kept as `events_per_second_polled`. On a 2-core machine the two workers share the cores with
the broker and the producer, so this shows the design scaling rather than
the speed of a bigger machine.

    python -m bench.scale_out --subscribers 20000 --events 60000
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import timing
from bench.harness import Producer, Worker, free_port, fresh_settings
from bench.service import say
from stream.admin import delete_topics
from stream.settings import Settings
from stream.tools.simulate import Population, simulate


def group(settings: Settings, n: int, workdir: Path) -> list[Worker]:
    """`n` workers of one group, each with its own ports and state."""
    workers = []
    for i in range(n):
        own = settings.model_copy(
            update={
                "web_port": free_port(),
                "metrics_port": free_port(),
                "state_dir": settings.state_dir.with_name(f"{settings.state_dir.name}-{i}"),
            }
        )
        workers.append(timing.timed_worker(own, workdir / f"{settings.app_id}-{i}.log"))
    return workers


def inside(workers: list[Worker]) -> float | None:
    """Seconds from the first event any worker took to the last record any
    finished (`bench.timing`, written when they stopped)."""
    found = [timing.read(timing.times_of(w)) for w in workers]
    if any(t is None for t in found):
        return None
    return max(t["last"] for t in found if t) - min(t["first"] for t in found if t)


def consumed(workers: list[Worker]) -> float:
    return sum(w.consumed() for w in workers)


def settle(workers: list[Worker], total: float, timeout: float) -> tuple[float, float]:
    """(first movement, done): all `total` inputs consumed and committed."""
    first: float | None = None
    base = consumed(workers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in workers:
            w.check_alive()
        now = consumed(workers)
        if first is None and now > base:
            first = time.monotonic()
        if now >= total and workers[0].behind() == 0:
            return first or time.monotonic(), time.monotonic()
        time.sleep(0.25)
    raise SystemExit(f"consumed {consumed(workers):.0f} of {total:.0f} in {timeout}s")


def measure(n: int, subscribers: int, events: int, workdir: Path) -> dict[str, Any]:
    settings = fresh_settings(workdir)
    population = Population(subscribers)
    producer = Producer(settings)
    workers = group(settings, n, workdir)
    try:
        for w in workers:
            w.start()
        producer.all(
            ("customer-profiles", population.subscriber_id(i), population.profile(i))
            for i in range(subscribers)
        )
        settle(workers, subscribers, timeout=1800)
        for w in workers:  # the backlog is produced with the workers stopped:
            w.stop()  # the producer does not share the cores with them
        say(f"{n} worker(s): profiles loaded; producing {events} events")
        stream = simulate(population, events, span=timedelta(days=2), profiles=False)
        producer.all(itertools.islice(stream, events))
        for w in workers:  # together; their state is on their disks
            w.start()
        start, end = settle(workers, events, timeout=3600)  # counted afresh since the restart
        polled = events / max(end - start, 1e-9)
        rss = [round(w.peak_rss_mb(), 1) for w in workers]
        for w in workers:
            w.stop()
        seconds = inside(workers)
        if seconds is None:
            raise SystemExit("a worker wrote no times (bench.timing)")
        rate = events / max(seconds, 1e-9)
        say(f"{n} worker(s): {rate:.0f} events/s ({polled:.0f} polled)")
        return {
            "workers": n,
            "events_per_second": round(rate),
            "events_per_second_polled": round(polled),
            "peak_rss_mb": rss,
        }
    finally:
        producer.close()
        for w in workers:
            w.stop()
        delete_topics(settings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--workdir", type=Path, default=Path("var/bench"))
    args = ap.parse_args()
    runs = [measure(n, args.subscribers, args.events, args.workdir) for n in (1, 2)]
    report = {
        "subscribers": args.subscribers,
        "events": args.events,
        "partitions": 6,
        "runs": runs,
        "speedup": round(runs[1]["events_per_second"] / runs[0]["events_per_second"], 2),
    }
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "scale-out.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
