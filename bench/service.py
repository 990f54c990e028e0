"""One `forewarn worker` as ops teams run it, measured on the real broker with
the default ruleset and simulated traffic:

1. **profiles**: the worker loads S subscriber profiles (its state);
2. **warm restart + throughput**: it is stopped, a backlog of N events is
   produced, and it is started again on its local state; we time process
   start → first event processed, and the rate at which it drains the
   backlog (events/s), with its peak RSS;
3. **latency**: events are produced at 50%, 70%, 80% and 90% of that rate; for every
   notice and task, latency = broker timestamp of the output minus the time its
   latest source event was sent;
4. **cold restart**: the local state is deleted, so the worker restores all
   S subscribers from the changelog before processing; timed the same way.

    python -m bench.service --subscribers 100000 --events 200000 --out var/bench/service.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    Producer,
    Record,
    Sent,
    Worker,
    fresh_settings,
    output_times,
    percentile,
    wait_until,
)
from stream.admin import delete_topics
from stream.settings import Settings
from stream.tools.simulate import Population, simulate


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def restart_to_processing(worker: Worker, already: float) -> float:
    """Start the worker; seconds from process start to its first event."""
    worker.start()

    def moving() -> bool:
        worker.check_alive()
        return worker.consumed() > already

    done = wait_until(
        moving,
        "the first event after the restart",
        timeout=600,
        poll=0.05,
    )
    return done - worker.started


def drain(worker: Worker, total: float, timeout: float) -> tuple[float, float]:
    """Wait until `total` input records are consumed and nothing (fan-out
    included) is left uncommitted: (time first seen moving, time done)."""
    first: float | None = None
    base = worker.consumed()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.check_alive()
        now = worker.consumed()
        if first is None and now > base:
            first = time.monotonic()
        if now >= total and worker.behind() == 0:
            return first or time.monotonic(), time.monotonic()
        time.sleep(0.5)
    raise SystemExit(f"worker consumed {worker.consumed():.0f} of {total:.0f} in {timeout}s")


@dataclass
class Run:
    settings: Settings
    population: Population
    worker: Worker
    producer: Producer
    stream: Iterator[Record]
    result: dict[str, Any]


def backlog_run(
    settings: Settings, subscribers: int, events: int, workdir: Path, result: dict[str, Any]
) -> Run:
    """A worker, a producer and `events` simulated events over two days for
    `subscribers`: what the profile-load-then-drain benchmarks share."""
    population = Population(subscribers)
    return Run(
        settings,
        population,
        Worker(settings, workdir / f"{settings.app_id}.log"),
        Producer(settings),
        simulate(population, events, span=timedelta(days=2), profiles=False),
        result,
    )


def run(
    subscribers: int, events: int, seconds: float, workdir: Path, profile: Path | None = None
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    settings = fresh_settings(workdir)
    population = Population(subscribers)
    extra = int(seconds * 2 * 20_000)  # more than the paced phases can use
    r = Run(
        settings,
        population,
        Worker(settings, workdir / f"{settings.app_id}.log"),
        Producer(settings),
        simulate(
            population,
            events + extra,
            span=timedelta(days=2) * (events + extra) / max(events, 1),
            profiles=False,
        ),
        {"subscribers": subscribers, "events": events},
    )
    try:
        load_profiles(r)
        rate = warm_restart_and_drain(r, events, profile)
        paced_latency(r, rate, seconds)
        cold_restart(r)
    finally:
        r.producer.close()
        r.worker.stop()
        delete_topics(settings)
    return r.result


def load_profiles(r: Run) -> None:
    n = r.population.subscribers
    say(f"profiles: producing {n}")
    r.producer.all(
        ("customer-profiles", r.population.subscriber_id(i), r.population.profile(i))
        for i in range(n)
    )
    r.worker.start()
    start, end = drain(r.worker, n, timeout=1800)
    r.result["profiles_per_second"] = round(n / max(end - start, 1e-9))
    r.result["profiles_peak_rss_mb"] = round(r.worker.peak_rss_mb(), 1)
    r.result["sigterm_seconds"] = round(r.worker.stop(), 2)


def warm_restart_and_drain(r: Run, events: int, profile: Path | None) -> float:
    say(f"backlog: producing {events} events")
    r.producer.all(itertools.islice(r.stream, events))
    r.result["restart_warm_seconds"] = round(restart_to_processing(r.worker, 0), 2)
    spy = r.worker.profile(profile, seconds=20) if profile else None
    cpu = r.worker.cpu_seconds()
    start, end = drain(r.worker, events, timeout=3600)
    r.result["worker_cpu_share"] = round((r.worker.cpu_seconds() - cpu) / (end - start), 2)
    rate = events / max(end - start, 1e-9)
    r.result["events_per_second"] = round(rate)
    if spy is not None:
        spy.wait()
    say(f"throughput: {rate:.0f} events/s")
    return rate


LOAD_SHARES = (0.5, 0.7, 0.8, 0.9)  # of the backlog rate; 0.9 shows how close the knee is


def paced_latency(r: Run, rate: float, seconds: float) -> None:
    consumed = r.worker.consumed()
    for share in LOAD_SHARES:
        say(f"latency: {share:.0%} of the maximum, {seconds:.0f}s")
        mark = time.time()
        phase = r.producer.paced(r.stream, rate * share, seconds)
        consumed += len(phase)
        drain(r.worker, consumed, timeout=600)
        r.result[f"latency_{int(share * 100)}"] = {
            "events_per_second": round(rate * share),
            **latencies(r.settings, phase, mark),
        }
    r.result["peak_rss_mb"] = round(r.worker.peak_rss_mb(), 1)
    samples = r.worker.metrics()
    per_agent = {}
    for agent in ("forewarn-subscribers", "forewarn-network", "engine"):
        got = {
            name: value
            for name, labels, value in samples
            if name.startswith("forewarn_event_processing_seconds_")
            and labels.get("agent") == agent
        }
        count = got.get("forewarn_event_processing_seconds_count", 0)
        total = got.get("forewarn_event_processing_seconds_sum", 0)
        per_agent[agent] = round(1000 * total / count, 3) if count else None
    r.result["processing_ms_per_record"] = per_agent
    r.result["records_by_source"] = {
        labels["source"]: round(value)
        for name, labels, value in samples
        if name == "forewarn_events_consumed_total"
    }
    r.worker.stop()


def cold_restart(r: Run) -> None:
    say("cold restart: local state deleted, restoring from the changelog")
    r.worker.wipe_state()
    r.producer.all(itertools.islice(r.stream, 1000))
    r.result["restart_cold_seconds"] = round(restart_to_processing(r.worker, 0), 2)
    r.worker.stop()


# Task changes sent because of the event in their `source_event_ids`; the
# others (escalated, cleared, returned, closed by clearing, released, linked,
# widened, feedback) follow a later event, a clock or an operator, so the
# time since their source event is not how long detection took.
DETECTING_CHANGES = frozenset({"opened", "held"})


def is_detection(value: dict[str, Any]) -> bool:
    """An output whose source event is what triggered it: a notice sent at
    once (not one released after quiet hours: `deliver_after`), or a task
    opened (or held by its guard) by its source event."""
    if "notice_id" in value:
        return value.get("deliver_after") is None
    return value.get("change") in DETECTING_CHANGES


def latencies(settings: Any, sent: Sent, since: float) -> dict[str, Any]:
    """Detection latency percentiles (ms): for each output that is a
    detection (`is_detection`), from the send of the event whose processing
    produced it (for a tumbling window, the first event after the window's
    end, not the window's own events) to the output's broker timestamp.
    `all_outputs` gives the same figures over every output, policy delays
    (quiet hours) and later changes of a task included, measured from their
    source events the same way."""
    samples: list[float] = []
    every: list[float] = []
    per_rule: dict[str, list[float]] = {}
    for value, ts in output_times(settings, ("customer_notices", "intervention_tasks"), 3.0):
        times = [sent.times[e] for e in value.get("source_event_ids", ()) if e in sent.times]
        facts = value.get("facts", {})
        # a resolution's facts are the detection's; its trigger is its source
        if times and "window_end" in facts and "resolved_at" not in facts:
            closed = sent.trigger(facts["key"], facts["window_end"])
            times = [closed] if closed is not None else []
        if times and ts >= since:
            ms = (ts - max(times)) * 1000
            every.append(ms)
            if is_detection(value):
                samples.append(ms)
                per_rule.setdefault(value["rule_id"], []).append(ms)
    return {
        **summary(samples),
        "by_rule": {rule: summary(got) for rule, got in sorted(per_rule.items())},
        "all_outputs": summary(every),
    }


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "outputs": len(samples),
        "p50_ms": round(percentile(samples, 0.50), 1),
        "p95_ms": round(percentile(samples, 0.95), 1),
        "p99_ms": round(percentile(samples, 0.99), 1),
        "max_ms": round(max(samples, default=float("nan")), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each paced phase")
    ap.add_argument("--workdir", type=Path, default=Path("var/bench"))
    ap.add_argument("--out", type=Path, help="write the JSON result here")
    ap.add_argument("--profile", type=Path, help="py-spy profile of the backlog drain (collapsed)")
    args = ap.parse_args()
    result = run(args.subscribers, args.events, args.seconds, args.workdir, args.profile)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
