"""How the worker's throughput changes with the number of rules: the default
ruleset plus copies under new ids up to 10, 100 and 1,000 rules, same
profiles and events each time. A copy keeps its windows, measures and
baselines (all evaluated on every matching event) but its tiers can never
fire, so the outputs stay those of the default rules and only the
evaluation work grows, as with a large ruleset where few rules fire.

A copy computes the same measures over the same window as its original, so
the engine shares that series between them (as it would between rules that
differ only in thresholds). The `--distinct` runs give every copy a filter
of its own, so nothing is shared: 1,000 windows and baselines per key, the
worst case.

    python -m bench.rules_scale --subscribers 10000 --events 20000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

from bench.harness import fresh_settings
from bench.service import backlog_run, load_profiles, say, warm_restart_and_drain
from stream.admin import delete_topics
from stream.settings import DEFAULT_RULES_DIR


def ruleset(count: int, into: Path, distinct: bool = False) -> Path:
    """`count` rules: the default files repeated with `-copyN` ids. With
    `distinct`, every copy also gets a filter of its own (true for every
    event), so no two rules share a series: each copy keeps its own window
    and baseline per key, the worst case for a large rule set."""
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
            # such a tier is no simple threshold any more: its texts cannot quote one
            text = text.replace("{{ threshold", "{{ 0")
            if distinct:
                always = f"event_id != 'copy{copy}'"
                if re.search(r"(?m)^    filter: ", text):
                    text = re.sub(r'(?m)^(    filter: )"(.*)"$', rf'\1"(\2) and {always}"', text)
                else:
                    text = re.sub(r"(?m)^(    source: .*)$", rf'\1\n    filter: "{always}"', text)
        (into / f"{source.stem}-{copy}.yaml").write_text(text)
    return into


def measure(
    rules: int, subscribers: int, events: int, workdir: Path, distinct: bool = False
) -> dict[str, Any]:
    name = f"rules-{rules}{'-distinct' if distinct else ''}"
    rules_dir = ruleset(rules, workdir / name, distinct)
    settings = fresh_settings(workdir, rule_paths=(rules_dir,))
    r = backlog_run(
        settings, subscribers, events, workdir, {"rules": rules, "shared": not distinct}
    )
    try:
        load_profiles(r)
        warm_restart_and_drain(r, events, None)
        r.result["peak_rss_mb"] = round(r.worker.peak_rss_mb(), 1)
        r.worker.stop()
    finally:
        r.producer.close()
        r.worker.stop()
        delete_topics(settings)
    return {k: r.result[k] for k in ("rules", "shared", "events_per_second", "peak_rss_mb")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument(
        "--distinct",
        type=int,
        nargs="*",
        default=[1000],
        help="also measure these counts with no series shared between copies",
    )
    ap.add_argument("--workdir", type=Path, default=Path("var/bench"))
    args = ap.parse_args()
    results = []
    runs = [(c, False) for c in args.counts] + [(c, True) for c in args.distinct]
    for count, distinct in runs:
        say(f"{count} rules{', no shared series' if distinct else ''}")
        results.append(measure(count, args.subscribers, args.events, args.workdir, distinct))
        say(json.dumps(results[-1]))
    base = results[0]["events_per_second"]
    for res in results:
        res["relative"] = round(res["events_per_second"] / base, 2)
    report = {"subscribers": args.subscribers, "events": args.events, "runs": results}
    (args.workdir / "rules-scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
