"""The `forewarn` command line: one entry point for ops (worker, topics),
rule authors (rules check/test, replay) and development (produce, tail)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

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


def _rule_paths(settings: Settings, paths: list[str] | None) -> list[Path]:
    return [Path(p) for p in paths] if paths else list(settings.rule_paths)


def cmd_rules_check(settings: Settings, args: argparse.Namespace) -> int:
    from rules.loader import load_rule_set

    result = load_rule_set(_rule_paths(settings, args.paths))
    for diagnostic in result.diagnostics:
        print(diagnostic)
    if result.diagnostics:
        print(
            f"{len(result.diagnostics)} problem(s) in {len(result.files)} file(s)", file=sys.stderr
        )
        return 1
    assert result.rule_set is not None
    print(
        f"ok: {len(result.rule_set.rules)} rule(s) in {len(result.files)} file(s), "
        f"version {result.rule_set.version}",
        file=sys.stderr,
    )
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from rules.loader import load_rule_set
    from sinks import JsonlDestination
    from stream.replay import replay, stderr_if_tty

    result = load_rule_set(_rule_paths(settings, args.rules))
    if result.rule_set is None:
        for diagnostic in result.diagnostics:
            print(diagnostic, file=sys.stderr)
        return 1
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        with open(args.events, encoding="utf-8", errors="surrogateescape") as lines:
            replay(
                lines,
                result.rule_set,
                JsonlDestination(out),
                event_time_created=args.created_at == "event-time",
                progress=stderr_if_tty(),
            )
    finally:
        if out is not sys.stdout:
            out.close()
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

    rules = sub.add_parser("rules", help="tools for rule authors")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="check rule files; print located diagnostics")
    check.add_argument("paths", nargs="*", help="files or directories (default: configured)")
    check.set_defaults(func=cmd_rules_check)

    rp = sub.add_parser("replay", help="run the engine over a JSONL file of input records")
    rp.add_argument("events")
    rp.add_argument("--rules", nargs="+", default=None)
    rp.add_argument("--out", default=None)
    rp.add_argument("--created-at", choices=["wall-clock", "event-time"], default="wall-clock")
    rp.set_defaults(func=cmd_replay)

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
