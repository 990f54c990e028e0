"""How the worker's throughput changes with the number of rules: the default
ruleset plus copies under new ids up to 10, 100 and 1,000 rules, same
profiles and events each time. A copy keeps its windows, measures and
baselines (all evaluated on every matching event) but its tiers can never
fire, so the outputs stay those of the default rules and only the
evaluation work grows, as with a large ruleset where few rules fire.

    python -m bench.rules_scale --subscribers 10000 --events 20000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

from bench.harness import delete_topics, fresh_settings
from bench.service import backlog_run, load_profiles, say, warm_restart_and_drain
from stream.settings import DEFAULT_RULES_DIR


def ruleset(count: int, into: Path) -> Path:
    """`count` rules: the default files repeated with `-copyN` ids."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    files = sorted(DEFAULT_RULES_DIR.glob("*.yaml"))
    for n in range(count):
        source = files[n % len(files)]
        copy = n // len(files)
        text = source.read_text()
        if copy:
            text = re.sub(r"(?m)^(  - id: )([\w-]+)$", rf"\g<1>\g<2>-copy{copy}", text)
            text = re.sub(r'(?m)^(\s+when: )"(.*)"$', r'\1"(\2) and 1 > 2"', text)
        (into / f"{source.stem}-{copy}.yaml").write_text(text)
    return into


def measure(rules: int, subscribers: int, events: int, workdir: Path) -> dict[str, Any]:
    rules_dir = ruleset(rules, workdir / f"rules-{rules}")
    settings = fresh_settings(workdir, rule_paths=(rules_dir,))
    r = backlog_run(settings, subscribers, events, workdir, {"rules": rules})
    try:
        load_profiles(r)
        warm_restart_and_drain(r, events, None)
        r.result["peak_rss_mb"] = round(r.worker.peak_rss_mb(), 1)
        r.worker.stop()
    finally:
        r.producer.close()
        r.worker.stop()
        delete_topics(settings)
    return {k: r.result[k] for k in ("rules", "events_per_second", "peak_rss_mb")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--workdir", type=Path, default=Path("var/bench"))
    args = ap.parse_args()
    results = []
    for count in args.counts:
        say(f"{count} rules")
        results.append(measure(count, args.subscribers, args.events, args.workdir))
        say(json.dumps(results[-1]))
    base = results[0]["events_per_second"]
    for res in results:
        res["relative"] = round(res["events_per_second"] / base, 2)
    report = {"subscribers": args.subscribers, "events": args.events, "runs": results}
    (args.workdir / "rules-scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
