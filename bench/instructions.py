"""The processor's work per event counted in CPU instructions, not seconds:
the same traffic as `bench.processor`, run under valgrind's callgrind,
counting only what runs inside the processor's entry point (`Processor.
_guarded`, the compiled engine's `CPyDef_processor___Processor____guarded`)
while the events are processed (profiles are loaded first, uncounted).

Timings on a shared machine move by a third between runs of the same code;
instruction counts move by about 1%, so a change of a few percent in the
processor is seen in one A/B pair (`bench.processor` needs several). An
instruction is not a unit of time (cache misses and branches are not
counted): the figure compares two versions of the code, it does not
replace the timed benchmarks. Needs valgrind and the compiled engine
(`dev/compile.py`: the interpreted processor has no C function to count in).

    python -m bench.instructions --subscribers 1000 --events 5000 --batch 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ENTRY = "CPyDef_processor___Processor____guarded"


def child(subscribers: int, events: int, batch: int, ready: Path, go: Path) -> None:
    """Load the profiles, say so, wait for the counting to start, then
    process the events; print what was processed."""
    from bench.processor import Bench, traffic
    from stream.settings import Settings
    from stream.tools.feed import encode_value, physical_topic
    from stream.worker import settle_heap

    settings = Settings(_env_file=None)
    bench = Bench(settings)
    todo = []
    for topic, key, value in traffic(subscribers, events, batch):
        physical = physical_topic(settings, topic)
        raw_key = key.encode() if key else None
        if topic == "customer-profiles":
            bench.feed(physical, raw_key, encode_value(value), 0)
        else:
            todo.append(
                (
                    physical,
                    raw_key,
                    encode_value(value),
                    len(value) if isinstance(value, list) else 1,
                )
            )
    settle_heap()  # as the worker does once started
    ready.touch()
    while not go.exists():
        time.sleep(0.05)
    for physical, raw_key, value, count in todo:
        bench.feed(physical, raw_key, value, count)
    print(json.dumps({"events": bench.events, "records": len(todo)}))


def count(subscribers: int, events: int, batch: int, keep: Path | None = None) -> dict[str, Any]:
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"bench.instructions: {tool} not found (Debian: apt install valgrind)")
    from stream.worker import engine_build

    if engine_build() != "compiled":
        sys.exit(
            "bench.instructions: counts the compiled engine only; run dev/compile.py and"
            " put var/compiled first on PYTHONPATH (dev/bench does)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ready, go, out = folder / "ready", folder / "go", folder / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts every run
        proc = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--instr-atstart=no",
                "--collect-atstart=no",
                f"--toggle-collect={ENTRY}",
                sys.executable,
                "-m",
                "bench.instructions",
                "--child",
                str(ready),
                str(go),
                "--subscribers",
                str(subscribers),
                "--events",
                str(events),
                "--batch",
                str(batch),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while not ready.exists():
            if proc.poll() is not None:
                sys.exit(f"bench.instructions: the child failed:\n{proc.communicate()[1][-2000:]}")
            time.sleep(0.2)
        subprocess.run(
            ["callgrind_control", "--instr=on", str(proc.pid)], check=True, capture_output=True
        )
        go.touch()
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"bench.instructions: the child failed:\n{stderr[-2000:]}")
        done = json.loads(stdout.strip().splitlines()[-1])
        total = next(
            int(line.split()[1])
            for line in out.read_text().splitlines()
            if line.startswith(("summary:", "totals:"))
        )
        if keep is not None:  # for callgrind_annotate --inclusive=yes
            shutil.copyfile(out, keep)
    return {
        "batch": batch,
        "events": done["events"],
        "records": done["records"],
        "instructions": total,
        "per_event": round(total / max(done["events"], 1)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--out", default="var/bench/instructions.json")
    ap.add_argument(
        "--profile",
        type=Path,
        help="keep callgrind's output here (read it with callgrind_annotate)",
    )
    ap.add_argument("--child", nargs=2, metavar=("READY", "GO"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.subscribers, args.events, args.batch, Path(args.child[0]), Path(args.child[1]))
        return
    result = {
        "subscribers": args.subscribers,
        "entry": ENTRY,
        "run": count(args.subscribers, args.events, args.batch, args.profile),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    run = result["run"]
    print(
        f"processor instructions: {run['per_event']:,} per event"
        f" ({run['instructions']:,} for {run['events']:,} events in {run['records']:,} records,"
        f" {args.subscribers:,} subscribers)"
    )


if __name__ == "__main__":
    main()
