"""Q, the Quix Streams peer: what a Python user would pick for per-key state
on Kafka. One Quix Streams application (same broker and data) that decodes
each message's JSON and keeps a per-key count in its RocksDB state store
with changelog topics (Quix writes RocksDB in batches and produces
changelogs per checkpoint). Runs in its own virtual environment
(`var/bench/quix-venv`, made by dev/bench with quixstreams 3.28.1): it
imports nothing of Forewarn's.

    var/bench/quix-venv/bin/python bench/quix_peer.py BOOTSTRAP GROUP TOPICS EXPECTED OUT STATE_DIR

TOPICS is comma-separated. Writes {"events": n, "seconds": first message to
last} to OUT when it has seen EXPECTED events.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    from quixstreams import Application  # type: ignore[import-not-found]

    bootstrap, group, topics, expected, out, state_dir = sys.argv[1:7]
    want, done = int(expected), Path(out)
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        use_changelog_topics=True,
        processing_guarantee="at-least-once",
    )
    seen = {"events": 0, "first": 0.0}

    def count(value: Any, state: Any) -> Any:
        if not seen["first"]:
            seen["first"] = time.monotonic()
        n = len(value) if isinstance(value, list) else 1
        state.set("events", state.get("events", 0) + n)
        seen["events"] += n
        if seen["events"] >= want and not done.exists():
            took = time.monotonic() - seen["first"]
            done.write_text(json.dumps({"events": seen["events"], "seconds": took}))
            app.stop()
        return value

    for name in topics.split(","):
        sdf = app.dataframe(app.topic(name, value_deserializer="json"))
        sdf.update(count, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
