"""How the worker changes with the state it holds: 10,000, 100,000 and
1,000,000 subscribers of profiles loaded (each a record in RocksDB with its
changelog), then the same number of events drained from a backlog by a
restarted worker, on the same broker and the default ruleset. Reports
profiles/s and the loading worker's peak RSS, events/s and the draining
worker's peak RSS, and the local state's size.

    python -m bench.state_scale --counts 10000 100000 1000000 --events 50000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.harness import Worker, fresh_settings
from bench.service import backlog_run, load_profiles, say, warm_restart_and_drain
from stream.admin import delete_topics


def state_bytes(worker: Worker, timeout: float = 20.0) -> float:
    """The subscribers table's live bytes. The supervisor sets the gauge
    every 5 s: a restarted worker that drained its events sooner has not
    set it yet (a million subscribers read 0.0 MB), so wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        size = sum(
            value
            for name, labels, value in worker.metrics()
            if name == "forewarn_state_bytes" and labels.get("table") == "forewarn-subscribers"
        )
        if size > 0 or time.monotonic() > deadline:
            return size
        time.sleep(0.5)


def measure(subscribers: int, events: int, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    settings = fresh_settings(workdir)
    r = backlog_run(settings, subscribers, events, workdir, {"subscribers": subscribers})
    try:
        load_profiles(r)
        warm_restart_and_drain(r, events, None)
        r.result["peak_rss_mb"] = round(r.worker.peak_rss_mb(), 1)
        r.result["state_mb"] = round(state_bytes(r.worker) / 1e6, 1)
        r.worker.stop()
    finally:
        r.producer.close()
        r.worker.stop()
        delete_topics(settings)
    keep = (
        "subscribers",
        "profiles_per_second",
        "profiles_peak_rss_mb",
        "events_per_second",
        "peak_rss_mb",
        "state_mb",
    )
    return {k: r.result.get(k) for k in keep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--workdir", type=Path, default=Path("var/bench"))
    args = ap.parse_args()
    runs = []
    for count in args.counts:
        say(f"{count} subscribers")
        runs.append(measure(count, args.events, args.workdir))
        say(json.dumps(runs[-1]))
    report = {"events": args.events, "runs": runs}
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "state-scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
