"""The `forewarn` command line: one entry point for ops (worker, topics),
rule authors (rules check/test, replay) and development (produce, tail)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from stream.settings import Settings


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from stream.worker import run_worker

    run_worker(settings)


def cmd_topics_create(settings: Settings, args: argparse.Namespace) -> int:
    from stream.admin import create_topics

    report = create_topics(settings)
    for line in report:
        print(line)
    return 1 if any(line.startswith("error") for line in report) else 0


def cmd_produce(settings: Settings, args: argparse.Namespace) -> int:
    from stream.feed import produce

    with open(args.file, encoding="utf-8") as fh:
        sent = produce(settings, fh, rate=args.rate)
    print(f"produced {sent} records", file=sys.stderr)
    return 0


def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    from stream.feed import tail

    with contextlib.suppress(KeyboardInterrupt):
        tail(settings, max_seconds=args.seconds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forewarn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run the stream-processing worker").set_defaults(func=cmd_worker)

    topics = sub.add_parser("topics", help="manage Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True)
    topics_sub.add_parser("create", help="create missing topics").set_defaults(
        func=cmd_topics_create
    )

    produce = sub.add_parser("produce", help="send {topic,key,value} JSONL to the broker")
    produce.add_argument("file")
    produce.add_argument("--rate", type=float, default=None, help="records per second")
    produce.set_defaults(func=cmd_produce)

    tail = sub.add_parser("tail", help="print notices, tasks and dead letters as they arrive")
    tail.add_argument("--seconds", type=float, default=None)
    tail.set_defaults(func=cmd_tail)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    code: int = args.func(settings, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
