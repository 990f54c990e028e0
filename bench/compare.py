"""L, F and W on the same broker and the same generated events, one event
per Kafka message and then batched (a JSON array of up to `--batch` events of
one key per message):

- **L** (`bench.limit`): aiokafka + pydantic decoding, one output per 100 events;
- **F** (`bench.faust_peer`): a trivial Faust agent that decodes each event;
- **T** (`bench.faust_peer table`): F plus one write per message to a RocksDB table
  with a changelog, the floor for per-key state in Faust tables;
- **Q** (`bench.quix_peer`): Quix Streams with a per-key count in its RocksDB
  state store and changelog topics, in its own virtual environment
  (`var/bench/quix-venv`; left out when that does not exist);
- **W**: `forewarn worker`, default ruleset, realistic profiles loaded first;
- **W0** (`bench.noop_worker`): the same worker with a no-op processor, in
  its own consumer group on the same topics: what the worker's plumbing
  (Faust, the store, checkpoints) allows; W0's per-event time subtracted
  from W's is what the processor costs inside the worker.

Each is timed from its first message to its last (events/s), from inside:
the peers note their own times, W and W0 run with `bench.timing`, which
notes when the worker took its first event and finished its last record
(fan-out records to other keys included). W and W0 are also reported as
seen from outside (`W polled`: consumed-events metric polled every 0.5 s,
done once the group's offsets are committed, every second), which charges
them up to 1.5 s the peers are not. Writes
`var/bench/compare.json` and a markdown table `var/bench/compare.md`.

    python -m bench.compare --subscribers 20000 --events 100000 --batch 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench import timing
from bench.harness import (
    ROOT,
    Producer,
    Record,
    Worker,
    free_port,
    fresh_settings,
)
from bench.service import drain, say
from stream.admin import create_topics, delete_topics
from stream.settings import Settings
from stream.tools.simulate import Population, simulate


def batched(records: Iterable[Record], size: int) -> Iterator[Record]:
    """Events grouped per (topic, key), in order, up to `size` per record.
    A key's batch is sent when full or at the end: per-key order is kept,
    which is all the worker's results depend on."""
    open_batches: dict[tuple[str, str | None], list[Any]] = {}
    for topic, key, value in records:
        batch = open_batches.setdefault((topic, key), [])
        batch.append(value)
        if len(batch) >= size:
            yield topic, key, batch  # type: ignore[misc]
            del open_batches[(topic, key)]
    for (topic, key), batch in open_batches.items():
        yield topic, key, batch  # type: ignore[misc]


def run_limit(settings: Settings, events: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.limit", settings.model_dump_json(), str(events)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def peer_result(proc: subprocess.Popen[bytes], done: Path, name: str) -> dict[str, float]:
    """Wait for a peer's result file (it writes one when it has read
    everything), then stop the peer."""
    try:
        deadline = time.monotonic() + 1800
        while not done.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} stopped before it read everything")
            time.sleep(0.2)
        time.sleep(0.2)
        result: dict[str, float] = json.loads(done.read_text())
        return result
    finally:
        proc.terminate()
        proc.wait(60)


def run_faust(settings: Settings, events: int, workdir: Path, table: bool) -> dict[str, float]:
    name = f"{settings.app_id}-faust-peer{'-table' if table else ''}"
    done = workdir / f"{name}.json"
    done.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.faust_peer",
            settings.model_dump_json(),
            str(events),
            str(done),
            str(free_port()),
            *(["table"] if table else []),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"{name}.log").open("wb"),
    )
    return peer_result(proc, done, "the Faust peer")


QUIX_PYTHON = ROOT / "var" / "bench" / "quix-venv" / "bin" / "python"


def run_quix(settings: Settings, events: int, workdir: Path) -> dict[str, float] | None:
    """Q, when the Quix Streams environment exists."""
    if not QUIX_PYTHON.exists():
        return None
    group = f"{settings.app_id}-quix-peer"
    done = workdir / f"{group}.json"
    done.unlink(missing_ok=True)
    topics = ",".join(
        settings.topic(t) for t in ("usage_events", "billing_events", "network_quality_events")
    )
    proc = subprocess.Popen(
        [
            str(QUIX_PYTHON),
            str(ROOT / "bench" / "quix_peer.py"),
            ",".join(settings.kafka.bootstrap_servers),
            group,
            topics,
            str(events),
            str(done),
            str(workdir / group),
        ],
        cwd=ROOT,
        # its own environment only: not the repository's packages on PYTHONPATH
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")},
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"{group}.log").open("wb"),
    )
    return peer_result(proc, done, "the Quix peer")


def run_noop_worker(settings: Settings, events: int, workdir: Path) -> dict[str, float]:
    """W0: the worker with a no-op processor (`bench.noop_worker`), in a
    consumer group and state of its own, on the same input topics."""
    noop = settings.model_copy(
        update={
            "app_id": f"{settings.app_id}-noop",
            "state_dir": workdir / f"state-{settings.app_id}-noop",
            "web_port": free_port(),
            "metrics_port": free_port(),
        }
    )
    problems = [line for line in create_topics(noop) if line.startswith("error")]
    if problems:
        raise SystemExit("\n".join(problems))
    worker = timing.timed_worker(noop, workdir / f"{noop.app_id}.log", "bench.noop_worker")
    try:
        return timed_drain(worker, events)
    finally:
        worker.stop()


def timed_drain(worker: Worker, events: int) -> dict[str, float]:
    """Start `worker`, wait until it has drained `events` (`drain`), stop
    it, and time it as the peers are timed: from the first event it took to
    the last record it finished (`bench.timing`). `seconds_polled` is the
    outside view (metrics polled, offsets committed), kept for comparison."""
    times = timing.times_of(worker)
    times.unlink(missing_ok=True)
    worker.start()
    start, end = drain(worker, events, timeout=3600)
    rss = worker.peak_rss_mb()
    worker.stop()
    inside = timing.read(times)
    if inside is None:
        raise SystemExit(f"{worker.module} wrote no times to {times}")
    return {
        "events": events,
        "seconds": inside["last"] - inside["first"],
        "seconds_polled": end - start,
        "peak_rss_mb": rss,
    }


def run_mode(population: Population, events: int, batch: int, workdir: Path) -> dict[str, Any]:
    settings = fresh_settings(workdir)
    producer = Producer(settings)
    worker = timing.timed_worker(settings, workdir / f"{settings.app_id}.log")
    result: dict[str, Any] = {"batch": batch}
    try:
        say(f"[batch {batch}] profiles for W: {population.subscribers}")
        producer.all(
            ("customer-profiles", population.subscriber_id(i), population.profile(i))
            for i in range(population.subscribers)
        )
        worker.start()
        drain(worker, population.subscribers, timeout=1800)
        worker.stop()
        stream = simulate(population, events, profiles=False)
        messages = producer.all(batched(stream, batch) if batch > 1 else stream)
        result["messages"] = messages
        say(f"[batch {batch}] {events} events in {messages} messages; L")
        limit = run_limit(settings, events)
        say(f"[batch {batch}] F")
        faust_peer = run_faust(settings, events, workdir, table=False)
        say(f"[batch {batch}] T")
        table_peer = run_faust(settings, events, workdir, table=True)
        say(f"[batch {batch}] Q")
        quix = run_quix(settings, events, workdir)
        say(f"[batch {batch}] W")
        w = timed_drain(worker, events)
        result["peak_rss_mb_W"] = round(w["peak_rss_mb"], 1)
        say(f"[batch {batch}] W0")
        w0 = run_noop_worker(settings, events, workdir)
        for name, r in (("L", limit), ("F", faust_peer), ("T", table_peer), ("W", w), ("W0", w0)):
            result[name] = round(r["events"] / max(r["seconds"], 1e-9))
        for name, r in (("W", w), ("W0", w0)):  # as measured from outside before
            result[f"{name} polled"] = round(r["events"] / max(r["seconds_polled"], 1e-9))
        result["W/F"] = round(result["W"] / result["F"], 2)
        result["W0/F"] = round(result["W0"] / result["F"], 2)
        # what the processor adds per event inside the worker
        result["processor_in_worker_us"] = round((1 / result["W"] - 1 / result["W0"]) * 1e6, 1)
        result["W/T"] = round(result["W"] / result["T"], 2)
        result["W/L"] = round(result["W"] / result["L"], 3)
        if quix is not None:
            result["Q"] = round(quix["events"] / max(quix["seconds"], 1e-9))
            result["W/Q"] = round(result["W"] / result["Q"], 2)
    finally:
        producer.close()
        worker.stop()
        delete_topics(settings)
    return result


def table(results: list[dict[str, Any]], subscribers: int, events: int) -> str:
    lines = [
        f"{events:,} events, {subscribers:,} subscribers, one worker / consumer each",
        "",
        "| events per message | messages | L events/s | F events/s | T events/s | Q events/s"
        " | W events/s | W0 events/s | W/F | W0/F | W/T | W/Q | W/L | processor in W, µs/event"
        " | W / W0 polled |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['batch']} | {r['messages']:,} | {r['L']:,} | {r['F']:,} | {r['T']:,}"
        f" | {format(r['Q'], ',') if 'Q' in r else '-'} | {r['W']:,} | {r['W0']:,}"
        f" | {r['W/F']} | {r['W0/F']} | {r['W/T']} | {r.get('W/Q', '-')} | {r['W/L']}"
        f" | {r['processor_in_worker_us']} | {r.get('W polled', '-')} / {r.get('W0 polled', '-')} |"
        for r in results
    ]
    lines += [
        "",
        "W0: the same worker with a no-op processor (`bench.noop_worker`): the ceiling"
        " its plumbing sets; processor in W is 1/W - 1/W0. Every consumer is timed from"
        " inside, from the first event it took to the last record it finished"
        ' (`bench.timing` for W and W0); "polled" is W and W0 seen from outside (metrics'
        " polled every 0.5 s, offsets committed every second), as reported before.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=20, help="events per message when batching")
    ap.add_argument("--workdir", type=Path, default=Path("var/bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    population = Population(args.subscribers)
    results = [
        run_mode(population, args.events, size, args.workdir)
        for size in itertools.chain((1,), (args.batch,) if args.batch > 1 else ())
    ]
    report = {"subscribers": args.subscribers, "events": args.events, "runs": results}
    (args.workdir / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    md = table(results, args.subscribers, args.events)
    (args.workdir / "compare.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
