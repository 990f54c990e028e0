"""The `forewarn` command line: one entry point for ops (worker, topics),
rule authors (rules check/test, replay) and development (produce, tail)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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
    from stream.tools.feed import produce

    if args.file == "-":
        sent = produce(settings, sys.stdin, rate=args.rate)
    else:
        with open(args.file, encoding="utf-8") as fh:
            sent = produce(settings, fh, rate=args.rate)
    print(f"produced {sent} records", file=sys.stderr)
    return 0


def cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    from stream.tools.feed import watch

    url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    with contextlib.suppress(KeyboardInterrupt):
        watch(settings, max_seconds=args.seconds, metrics_url=url)
    return 0


def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    from stream.tools.feed import tail

    with contextlib.suppress(KeyboardInterrupt):
        tail(settings, max_seconds=args.seconds)
    return 0


def cmd_task_update(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from schemas import TaskUpdate
    from stream.tools.feed import send_task_update

    kind, _, target = args.target.partition(":")
    try:
        update = TaskUpdate.model_validate(
            {
                "task_id": args.task_id,
                "status": args.status,
                "at": args.at or datetime.now(UTC).isoformat(),
                "target": {"type": kind, "id": target},
                "outcome": args.outcome,
                "note": args.note,
                "reported_by": args.by,
            },
            strict=False,
        )
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err["loc"])
            print(f"forewarn task update: {where}: {err['msg']}", file=sys.stderr)
        return 2
    send_task_update(settings, update)
    print(f"sent {update.status.value} for task {update.task_id} ({args.target})")
    return 0


def cmd_held_list(settings: Settings, args: argparse.Namespace) -> int:
    from stream.tools.controls import held_tasks

    held = held_tasks(settings)
    for t in held:
        print(
            f"{t.task_id}  {t.event_time.isoformat()}  {t.rule_id}/{t.tier}  {t.action.value}"
            f"  {t.target.type.value}:{t.target.id}  {t.summary[:80]}"
        )
    print(f"{len(held)} held task(s)", file=sys.stderr)
    return 0


def cmd_held_decide(settings: Settings, args: argparse.Namespace) -> int:
    from stream.tools.controls import decide

    approve = args.held_command == "release"
    sent, missing = decide(settings, args.task_ids, approve, args.by, args.note)
    for tid in sent:
        print(f"{'released' if approve else 'dropped'} {tid}")
    for tid in missing:
        print(f"forewarn held {args.held_command}: {tid} is not held", file=sys.stderr)
    return 1 if missing else 0


def cmd_maintenance_add(settings: Settings, args: argparse.Namespace) -> int:
    import uuid
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from rules.durations import parse_duration
    from schemas import MaintenanceWindow
    from stream.tools.controls import send_window

    kind, _, target = args.target.partition(":")
    message = None
    if args.message_en or args.message_zh:
        message = {"en": args.message_en or "", "zh-CN": args.message_zh or ""}
    try:
        window = MaintenanceWindow.model_validate(
            {
                "window_id": args.id or f"mw-{uuid.uuid4().hex[:12]}",
                "target": {"type": kind, "id": target},
                "start": args.start,
                "end": args.end,
                "reason": args.reason,
                "message": message,
                "announce_minutes": int(parse_duration(args.announce) // 60),
                "planned_at": datetime.now(UTC).isoformat(),
                "planned_by": args.by,
            },
            strict=False,
        )
    except (ValidationError, ValueError) as exc:
        errors = exc.errors(include_url=False) if isinstance(exc, ValidationError) else []
        for err in errors:
            where = ".".join(str(p) for p in err["loc"])
            print(f"forewarn maintenance add: {where}: {err['msg']}", file=sys.stderr)
        if not errors:
            print(f"forewarn maintenance add: {exc}", file=sys.stderr)
        return 2
    send_window(settings, target, window)
    print(f"planned {window.window_id} on {args.target}: {window.start} to {window.end}")
    return 0


def cmd_maintenance_list(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from stream.tools.controls import windows

    now = datetime.now(UTC)
    found = windows(settings)
    for w in found:
        state = "over" if w.end <= now else "in force" if w.start <= now else "planned"
        print(
            f"{w.window_id}  {w.target.type.value}:{w.target.id}  {w.start.isoformat()}"
            f" .. {w.end.isoformat()}  {state}  {w.reason}"
        )
    print(f"{len(found)} window(s)", file=sys.stderr)
    return 0


def cmd_maintenance_end(settings: Settings, args: argparse.Namespace) -> int:
    from stream.tools.controls import end_window

    ended = end_window(settings, args.target_id, args.by)
    if ended is None:
        print(f"forewarn maintenance end: {args.target_id} has no window in force", file=sys.stderr)
        return 1
    print(f"ended {ended.window_id} on {args.target_id} at {ended.end.isoformat()}")
    return 0


def cmd_work_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from stream.tools.feed import simulate_work

    with contextlib.suppress(KeyboardInterrupt):
        sent = simulate_work(settings, seed=args.seed, max_seconds=args.seconds)
        print(f"sent {sent} task updates", file=sys.stderr)
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
    rules = result.rule_set
    print(
        f"ok: {len(rules.rules)} rule(s) in {len(result.files)} file(s), "
        f"{len(rules.series_ids)} series, version {rules.version}",
        file=sys.stderr,
    )
    return 0


def cmd_rules_test(settings: Settings, args: argparse.Namespace) -> int:
    from rules.loader import rule_files
    from rules.ruletest import run_test_files

    # Given files or directories, or each configured rule path's `tests/`.
    roots = (
        [Path(p) for p in args.paths] if args.paths else [p / "tests" for p in settings.rule_paths]
    )
    files, missing = rule_files(roots)
    run = run_test_files(files)
    run.diagnostics[:0] = missing
    for diagnostic in run.diagnostics:
        print(diagnostic)
    for case in run.cases:
        if case.ok:
            if args.verbose:
                print(f"ok   {case.file}:{case.line}: {case.name}")
            continue
        print(f"FAIL {case.file}:{case.line}: {case.name}")
        for problem in case.problems:
            print(f"  {problem}")
    failed = sum(not c.ok for c in run.cases)
    covered = len(run.tiers) - len(run.uncovered)
    lifecycle = len(run.transitions) - len(run.uncovered_transitions)
    print(
        f"{len(run.cases) - failed} passed, {failed} failed in {len(files)} file(s); "
        f"tier coverage {covered}/{len(run.tiers)}; "
        f"task lifecycle coverage {lifecycle}/{len(run.transitions)}"
    )
    for rule_id, tier in run.uncovered:
        print(f"  not exercised by any test: {rule_id}/{tier}")
    for rule_id, transition in run.uncovered_transitions:
        print(f"  task transition not exercised by any test: {rule_id} {transition}")
    if not run.ok or (args.require_coverage and (run.uncovered or run.uncovered_transitions)):
        return 1
    return 0


def contract_models() -> dict[str, tuple[type[Any], str]]:
    """The Kafka contract plus the rule-file format (for editors' YAML
    validation)."""
    from rules.model import RuleFile
    from schemas.jsonschema import CONTRACT

    return {**CONTRACT, "rule-file": (RuleFile, "validation")}


def cmd_schemas_export(settings: Settings, args: argparse.Namespace) -> int:
    from schemas.jsonschema import JSON_DIR, render, stale_files, write

    directory = Path(args.dir) if args.dir else JSON_DIR
    rendered = render(contract_models())
    stale = stale_files(rendered, directory)
    if args.check:
        for name in stale:
            print(f"{directory / name}: out of date; run `forewarn schemas export`")
        return 1 if stale else 0
    write(rendered, directory)
    print(f"wrote {len(rendered)} schema(s) to {directory} ({len(stale)} changed)", file=sys.stderr)
    return 0


def with_id_prefix(records: Any, prefix: str) -> Any:
    """The records with `prefix` before every event id."""
    for topic, key, value in records:
        if isinstance(value, dict) and "event_id" in value:
            yield topic, key, {**value, "event_id": prefix + value["event_id"]}
        else:
            yield topic, key, value


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from rules.durations import parse_duration
    from stream.tools.simulate import Population, jsonl, simulate

    population = Population(args.subscribers, seed=args.seed)
    span = timedelta(seconds=parse_duration(args.span))
    extra: dict[str, Any] = {}
    if args.start == "now":  # a live run: new times, and event ids no earlier run used
        from datetime import UTC, datetime

        started = datetime.now(UTC).replace(microsecond=0)
        extra["start"] = started
        prefix = started.strftime("r%Y%m%dT%H%M%S-")
    elif args.start:
        from datetime import datetime

        extra["start"] = datetime.fromisoformat(args.start)
        prefix = ""
    else:
        prefix = ""
    records = simulate(
        population,
        args.events,
        span=span,
        profiles=not args.no_profiles,
        incidents_every=args.incidents_every,
        **extra,
    )
    if prefix:
        records = with_id_prefix(records, prefix)
    if args.produce:
        from stream.tools.feed import produce

        try:
            sent = produce(settings, (jsonl(r) for r in records), rate=args.rate)
        except KeyboardInterrupt:
            return 130
        print(f"produced {sent} records", file=sys.stderr)
        return 0
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        for record in records:
            out.write(jsonl(record) + "\n")
    except (KeyboardInterrupt, BrokenPipeError):  # the consumer of our output went away
        return 0
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _load_rules(settings: Settings, paths: list[str] | None) -> Any:
    """The rule set at `paths` (default: configured), or None after printing why."""
    from rules.loader import load_rule_set

    result = load_rule_set(_rule_paths(settings, paths))
    if result.rule_set is None:
        for diagnostic in result.diagnostics:
            print(diagnostic, file=sys.stderr)
    return result.rule_set


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from sinks import JsonlDestination
    from stream.tools.impact import Summary, table
    from stream.tools.replay import replay, stderr_if_tty
    from stream.tools.worksim import WorkSimulator

    rules = _load_rules(settings, args.rules)
    if rules is None:
        return 1
    summary = Summary()
    with contextlib.ExitStack() as stack:
        lines = stack.enter_context(open(args.events, encoding="utf-8", errors="surrogateescape"))
        out = stack.enter_context(open(args.out, "w", encoding="utf-8")) if args.out else sys.stdout
        suppressions = (
            stack.enter_context(open(args.suppressions, "w", encoding="utf-8"))
            if args.suppressions
            else None
        )
        replay(
            lines,
            rules,
            JsonlDestination(out),
            event_time_created=args.created_at == "event-time",
            progress=stderr_if_tty(),
            partitions=args.partitions or settings.partitions,
            bounds=settings.time_bounds,
            work=WorkSimulator(args.work_seed) if args.simulate_work else None,
            summary=summary,
            suppressions=suppressions,
        )
    print(table(summary), file=sys.stderr)
    return 0


def cmd_rules_diff(settings: Settings, args: argparse.Namespace) -> int:
    """The same recorded events through two rule sets, compared."""
    import json

    from sinks import ListDestination
    from stream.logs import mask
    from stream.tools.impact import Summary, changes, diff_json, diff_table
    from stream.tools.replay import replay

    before_rules = _load_rules(settings, args.before)
    after_rules = _load_rules(settings, args.after)
    if before_rules is None or after_rules is None:
        return 1
    runs = []
    for rules in (before_rules, after_rules):
        summary = Summary()
        with open(args.events, encoding="utf-8", errors="surrogateescape") as lines:
            replay(
                lines,
                rules,
                ListDestination(),
                event_time_created=True,
                partitions=args.partitions or settings.partitions,
                bounds=settings.time_bounds,
                summary=summary,
            )
        runs.append(summary)
    before, after = runs
    changed = changes(before, after, after_rules, before_rules)
    sample = changed[: args.sample]
    if args.json:
        print(json.dumps({**diff_json(before, after, sample), "changed_total": len(changed)}))
        return 0
    print(diff_table(before, after))
    print(f"\n{len(changed)} subscriber notice(s) changed; a sample:")
    for c in sample:
        what = "now gets" if c.after else "no longer gets"
        print(f"  {mask(c.subscriber)} {what} {c.rule}/{c.tier}: {c.why}")
    return 0


def _replay_parser(sub: Any) -> None:
    rp = sub.add_parser("replay", help="run the engine over a JSONL file of input records")
    rp.add_argument("events", help="JSONL file of {topic, key, value} input records")
    rp.add_argument(
        "--rules", nargs="+", default=None, help="rule files or directories (default: configured)"
    )
    rp.add_argument("--out", default=None, help="write outputs here (default: stdout)")
    rp.add_argument(
        "--created-at",
        choices=["wall-clock", "event-time"],
        default="wall-clock",
        help="created_at of outputs; event-time makes two runs byte-identical",
    )
    rp.add_argument(
        "--suppressions",
        default=None,
        help="write every detection or notice not sent, with why, whom and when (JSONL)",
    )
    rp.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="partitions whose stream times drive due work (default: the worker's setting)",
    )
    rp.add_argument(
        "--simulate-work",
        action="store_true",
        help="answer opened tasks with simulated work-system feedback (task-updates)",
    )
    rp.add_argument("--work-seed", type=int, default=7, help="seed of the simulated work")
    rp.set_defaults(func=cmd_replay)


def _task_parsers(sub: Any) -> None:
    task = sub.add_parser("task", help="report on intervention tasks, as a work system does")
    task_sub = task.add_subparsers(dest="task_command", required=True)
    up = task_sub.add_parser("update", help="send one report on a task to task-updates")
    up.add_argument("task_id", help="the task's task_id")
    up.add_argument(
        "--target", required=True, help="the task's target as TYPE:ID, e.g. broadband_line:L1"
    )
    up.add_argument(
        "--status",
        required=True,
        choices=["acknowledged", "in_progress", "done", "failed", "cancelled", "approved"],
        help="what happened to the work",
    )
    up.add_argument("--outcome", default=None, help="a short outcome code, e.g. repaired")
    up.add_argument("--note", default=None, help="free text for the record (500 chars max)")
    up.add_argument("--by", default="cli", help="who reports it (default: cli)")
    up.add_argument("--at", default=None, help="when (RFC 3339 with offset; default: now)")
    up.set_defaults(func=cmd_task_update)
    _maintenance_parsers(sub)
    held = sub.add_parser("held", help="work a guard held past its budget: list, release, drop")
    held_sub = held.add_subparsers(dest="held_command", required=True)
    held_sub.add_parser("list", help="tasks waiting for approval").set_defaults(func=cmd_held_list)
    for name, what in (
        ("release", "approve: open the work and send its notices"),
        ("drop", "cancel: close the work; its customer is never told"),
    ):
        cmd = held_sub.add_parser(name, help=what)
        cmd.add_argument("task_ids", nargs="+", help="task ids from `forewarn held list`")
        cmd.add_argument("--by", default="cli", help="who decides (default: cli)")
        cmd.add_argument("--note", default=None, help="why, for the record")
        cmd.set_defaults(func=cmd_held_decide)
    work = sub.add_parser("work", help="simulated work systems, for demos")
    work_sub = work.add_subparsers(dest="work_command", required=True)
    simw = work_sub.add_parser("simulate", help="answer opened tasks with simulated reports")
    simw.add_argument("--seed", type=int, default=7, help="which tasks go late or fail")
    simw.add_argument("--seconds", type=float, default=None, help="stop after this long")
    simw.set_defaults(func=cmd_work_simulate)


def _maintenance_parsers(sub: Any) -> None:
    m = sub.add_parser("maintenance", help="planned work on cells, lines and areas")
    m_sub = m.add_subparsers(dest="maintenance_command", required=True)
    add = m_sub.add_parser("add", help="plan a window; its subscribers are told ahead")
    add.add_argument("--target", required=True, help="TYPE:ID, type cell, broadband_line or area")
    add.add_argument("--start", required=True, help="RFC 3339 with offset")
    add.add_argument("--end", required=True, help="RFC 3339 with offset")
    add.add_argument("--reason", required=True, help="for the record, e.g. 'antenna replacement'")
    add.add_argument("--message-en", default=None, help="what customers are told (English)")
    add.add_argument("--message-zh", default=None, help="what customers are told (Chinese)")
    add.add_argument("--announce", default="24h", help="lead time of the notice (default 24h)")
    add.add_argument("--id", default=None, help="window id (default: generated)")
    add.add_argument("--by", default="cli", help="who plans it")
    add.set_defaults(func=cmd_maintenance_add)
    m_sub.add_parser("list", help="windows planned, in force and over").set_defaults(
        func=cmd_maintenance_list
    )
    end = m_sub.add_parser("end", help="the work is done early: end the target's window now")
    end.add_argument("target_id", help="the cell, line or area id")
    end.add_argument("--by", default="cli", help="who ends it")
    end.set_defaults(func=cmd_maintenance_end)


def _diff_parser(rules_sub: Any) -> None:
    diff = rules_sub.add_parser(
        "diff", help="what a rule change does to customers: two rule sets on the same events"
    )
    diff.add_argument("events", help="JSONL file of recorded {topic, key, value} input records")
    diff.add_argument("--before", nargs="+", required=True, help="the deployed rule files/dirs")
    diff.add_argument("--after", nargs="+", required=True, help="the edited rule files/dirs")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.add_argument("--sample", type=int, default=20, help="changed subscribers to list")
    diff.add_argument(
        "--partitions", type=int, default=None, help="as in replay (default: the worker's)"
    )
    diff.set_defaults(func=cmd_rules_diff)


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
    produce.add_argument("file", help="JSONL file, or - for stdin")
    produce.add_argument("--rate", type=float, default=None, help="records per second")
    produce.set_defaults(func=cmd_produce)

    rules = sub.add_parser("rules", help="tools for rule authors")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="check rule files; print located diagnostics")
    check.add_argument("paths", nargs="*", help="files or directories (default: configured)")
    check.set_defaults(func=cmd_rules_check)

    test = rules_sub.add_parser("test", help="run declarative rule tests (promtool style)")
    test.add_argument("paths", nargs="*", help="test files or directories (default: <rules>/tests)")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")
    test.add_argument(
        "--require-coverage",
        action="store_true",
        help="fail when a rule tier or a task transition is not exercised",
    )
    test.set_defaults(func=cmd_rules_test)

    _diff_parser(rules_sub)

    schemas = sub.add_parser("schemas", help="JSON Schema of the Kafka contract")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    export = schemas_sub.add_parser("export", help="write schemas/json/*.json from the models")
    export.add_argument("--check", action="store_true", help="only check they are current")
    export.add_argument("--dir", default=None, help="write here (default: schemas/json)")
    export.set_defaults(func=cmd_schemas_export)

    sim = sub.add_parser("simulate", help="write synthetic {topic,key,value} JSONL traffic")
    sim.add_argument("--subscribers", type=int, default=10_000, help="population size")
    sim.add_argument("--events", type=int, default=100_000, help="input events to generate")
    sim.add_argument("--span", default="2d", help="event time covered, e.g. 2d")
    sim.add_argument("--seed", type=int, default=7, help="the same seed gives the same records")
    sim.add_argument(
        "--start",
        default=None,
        help="first event time: RFC 3339, or 'now' (then event ids are unique to this run,"
        " so a second live run is not taken for the first one's duplicates)",
    )
    sim.add_argument("--no-profiles", action="store_true", help="events only")
    sim.add_argument(
        "--incidents-every",
        type=int,
        default=0,
        metavar="N",
        help="inject an incident every N events (fraud burst, cell outage, slow line,"
        " data plan exhausted, access node outage, planned cell work, in turn)",
    )
    sim.add_argument("--produce", action="store_true", help="send to Kafka instead of JSONL")
    sim.add_argument(
        "--rate", type=float, default=None, help="with --produce: records/s (default: full speed)"
    )
    sim.add_argument("--out", default=None, help="write JSONL here (default: stdout)")
    sim.set_defaults(func=cmd_simulate)

    _replay_parser(sub)
    _task_parsers(sub)

    tail = sub.add_parser("tail", help="print notices, tasks and dead letters as they arrive")
    tail.add_argument("--seconds", type=float, default=None, help="stop after this long")
    tail.set_defaults(func=cmd_tail)
    watch = sub.add_parser(
        "watch", help="live view: counts per rule and tier, latest notices and tasks"
    )
    watch.add_argument("--seconds", type=float, default=None, help="stop after this long")
    watch.set_defaults(func=cmd_watch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Bad arguments, a missing or unreadable file and invalid settings are
    one line on stderr and exit code 2, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            where = "FOREWARN_" + "__".join(str(p).upper() for p in err["loc"])
            print(f"forewarn: error: {where}: {err['msg']}", file=sys.stderr)
        return 2
    try:
        code: int = args.func(settings, args)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.filename is None:
            print(f"forewarn: error: {exc}", file=sys.stderr)
            return 1
        print(f"forewarn: error: cannot open {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
