"""The processor alone: the per-event cost of Forewarn's own work, without
Kafka or Faust (issue #17's target: at most 20 µs per event with the
default rules).

Simulated traffic (profiles first, then events) goes through the worker's
`Processor` exactly as the agents call it, with the tables as dicts of
encoded records and internal records (notice intents, cell memberships,
area samples, marks) fed back to the processor as the internal topics
would. Measured once with one event per record and once with `--batch`
events of one key per record; the time is the processor's only (the
feedback loop's bookkeeping is outside the timer), per input event.
Each run also splits the time by input (usage, notice intents, ...) and by
whether the record led to anything (`quiet`: no output and no internal
record), so a report shows where the time goes. With `--profile FILE`, a
cProfile of the batched run's top functions.

    python -m bench.processor --subscribers 20000 --events 100000 --batch 20
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.compare import batched
from rules.loader import load_rule_set
from sinks.routing import partition_of
from stream.decoding import RawRecord
from stream.metrics import Metrics
from stream.processor import Outcome, Processor
from stream.settings import DEFAULT_RULES_DIR, Settings
from stream.tools.feed import encode_value, physical_topic
from stream.tools.simulate import Population, simulate
from stream.worker import engine_build, settle_heap


class Bench:
    def __init__(self, settings: Settings) -> None:
        rules = load_rule_set([DEFAULT_RULES_DIR]).rule_set
        assert rules is not None
        self.settings = settings
        self.processor = Processor(settings, rules, Metrics(), clock=lambda: NOW)
        self.tables: dict[str, dict[tuple[int, bytes], bytes]] = {
            "subscribers": {},
            "network": {},
            "members": {},
        }
        self.offsets: dict[str, int] = {}
        p = self.processor
        self.subscriber_topics = {
            p.usage, p.billing, p.profiles, p.task_updates, p.intents, p.clocks["subscribers"],
            p.subscriber_marks,
        }  # fmt: skip
        self.seconds = 0.0
        self.events = 0
        # (input, quiet) -> [records, seconds]: where the time goes
        self.split: dict[tuple[str, bool], list[float]] = {}

    def record(self, topic: str, key: bytes | None, value: bytes | None) -> RawRecord:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        p = partition_of(key, self.settings.partitions) if key else 0
        return RawRecord(topic, p, offset, key, value)

    def feed(self, topic: str, key: bytes | None, value: bytes | None, events: int) -> None:
        queue: deque[RawRecord] = deque([self.record(topic, key, value)])
        while queue:
            raw = queue.popleft()
            started = time.perf_counter()
            outcome = self.one(raw)
            took = time.perf_counter() - started
            self.seconds += took
            quiet = not (outcome.outputs or outcome.internal)
            kind = (str(self.processor.sources.get(raw.topic, "other")), quiet)
            spent = self.split.setdefault(kind, [0, 0.0])
            spent[0] += 1
            spent[1] += took
            for internal_topic, k, v in outcome.internal:
                queue.append(self.record(internal_topic, k, v))
        self.events += events

    def one(self, raw: RawRecord) -> Outcome:
        p = self.processor
        part = raw.partition or 0
        if raw.topic in self.subscriber_topics:
            table = self.tables["subscribers"]
            out = p.subscriber(
                raw, table.get((part, raw.key or b"")), lambda k: table.get((part, k))
            )
        elif raw.topic == p.membership:
            table = self.tables["members"]
            out = p.network(raw, table.get((part, raw.key or b"")))
        else:
            table = self.tables["network"]
            members = self.tables["members"]
            out = p.network(
                raw,
                table.get((part, raw.key or b"")),
                lambda k: table.get((part, k)),
                lambda k: members.get((part, k)),
            )
        if raw.key is not None:
            if out.record is not None:
                table[(part, raw.key)] = out.record
            if out.members is not None:
                self.tables["members"][(part, raw.key)] = out.members
        for k, v in out.others.items():
            table[(part, k)] = v
        return out


NOW = datetime(2026, 12, 1, tzinfo=UTC)


def traffic(subscribers: int, events: int, batch: int) -> Iterator[tuple[str, str | None, Any]]:
    """Profiles one per record (as `bench.compare` sends them), then the
    events, batched when asked."""
    population = Population(subscribers)
    yield from (
        ("customer-profiles", population.subscriber_id(i), population.profile(i))
        for i in range(subscribers)
    )
    records = simulate(population, events, profiles=False, incidents_every=5000)
    yield from batched(records, batch) if batch > 1 else records


def run(settings: Settings, subscribers: int, events: int, batch: int) -> dict[str, Any]:
    bench = Bench(settings)
    settle_heap()  # as the worker does once started
    profiles = 0
    loading = 0.0
    for topic, key, value in traffic(subscribers, events, batch):
        physical = physical_topic(settings, topic)
        count = len(value) if isinstance(value, list) else 1
        if topic == "customer-profiles":  # all first: their time is not the events'
            bench.feed(physical, key.encode() if key else None, encode_value(value), 0)
            profiles += 1
            loading = bench.seconds
            continue
        if bench.events == 0:  # the profiles' time (and their memberships') is not split
            bench.split.clear()
        bench.feed(physical, key.encode() if key else None, encode_value(value), count)
    bench.seconds -= loading
    per_event = bench.seconds / max(bench.events, 1)
    split = [
        {
            "input": kind,
            "quiet": quiet,
            "records": int(records),
            "us_per_record": round(seconds / records * 1e6, 1),
            "us_per_event": round(seconds / max(bench.events, 1) * 1e6, 1),
        }
        for (kind, quiet), (records, seconds) in sorted(
            bench.split.items(), key=lambda kv: -kv[1][1]
        )
    ]
    return {
        "batch": batch,
        "events": bench.events,
        "profiles": profiles,
        "profile_us": round(loading / max(profiles, 1) * 1e6, 1),
        "seconds": round(bench.seconds, 2),
        "us_per_event": round(per_event * 1e6, 1),
        "split": split,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=20000)
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--out", default="var/bench/processor.json")
    ap.add_argument("--profile", default=None, help="write the batched run's top functions here")
    args = ap.parse_args()
    settings = Settings(_env_file=None)
    runs = [
        run(settings, args.subscribers, args.events, 1),
        run(settings, args.subscribers, args.events, args.batch),
    ]
    if args.profile:  # a third run: the profiler's own cost stays out of the figures
        profiler = cProfile.Profile()
        profiler.enable()
        run(settings, args.subscribers, args.events, args.batch)
        profiler.disable()
        with open(args.profile, "w") as out:
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    result = {
        "subscribers": args.subscribers,
        "engine": engine_build(),
        "target_us": 20.0,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for r in runs:
        print(
            f"processor ({result['engine']}), {r['batch']} event(s) per record:"
            f" {r['us_per_event']} µs/event"
            f" ({r['events']:,} events in {r['seconds']} s)"
        )
        for x in r["split"][:8]:
            print(
                f"  {x['input']:>22} {'quiet' if x['quiet'] else 'sends':>5}:"
                f" {x['records']:>7,} records, {x['us_per_record']:>7} µs each,"
                f" {x['us_per_event']:>5} µs per event"
            )


if __name__ == "__main__":
    main()
