"""`forewarn replay`: run the engine over a JSONL file of input records
(`{"topic", "key", "value"}`, profiles included, in order) and write the
outputs as JSONL in the same shape. Invalid lines become dead letters; the run
never aborts on bad input. Deterministic: with `--created-at event-time` two
runs over the same input are byte-identical.

Memory is bounded by the number of keys (their state), not by the number of
events: input is streamed line by line and outputs are written as they come.

Time is the worker's: per key space and partition (`partitions`, the
worker's count by default), the latest event time; promises and held
notices fall due as it passes them (`rules.session`). Records on
`task-updates` are work systems' reports; `--simulate-work` adds those of
simulated work systems answering the tasks this replay opens
(`stream.tools.worksim`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import TextIO

from pydantic import BaseModel, ValidationError

from rules.agenda import DEFAULT_BOUNDS, TimeBounds
from rules.records import Effects
from rules.ruleset import RuleSet
from rules.session import Session
from rules.tasks import FeedbackReason
from schemas import (
    BillingEvent,
    CustomerNotice,
    CustomerProfile,
    DeadLetter,
    DeadLetterReason,
    InterventionTask,
    MaintenanceWindow,
    NetworkQualityEvent,
    TaskUpdate,
    UsageEvent,
)
from sinks import Destination, encode
from sinks.codec import Output
from sinks.routing import partition_of
from stream.decoding import (
    RawRecord,
    dead_letter,
    decode,
    describe_validation_error,
    events_of,
)
from stream.processor import event_key
from stream.tools.feed import encode_value
from stream.tools.impact import Summary, write_suppressions
from stream.tools.worksim import WorkSimulator

INPUT_MODELS: dict[str, type[BaseModel]] = {
    "usage-events": UsageEvent,
    "billing-events": BillingEvent,
    "network-quality-events": NetworkQualityEvent,
}
PROFILES = "customer-profiles"
TASK_UPDATES = "task-updates"
WINDOWS = "maintenance-windows"


class ReplayStats:
    def __init__(self) -> None:
        self.lines = 0
        self.outputs = 0
        self.dead = 0
        self.started = time.monotonic()


def wall() -> datetime:
    return datetime.now(UTC)


def replay(
    lines: Iterable[str],
    rules: RuleSet,
    out: Destination,
    *,
    event_time_created: bool,
    progress: TextIO | None = None,
    partitions: int = 1,
    work: WorkSimulator | None = None,
    bounds: TimeBounds = DEFAULT_BOUNDS,
    summary: Summary | None = None,
    suppressions: TextIO | None = None,
) -> ReplayStats:
    """Replay `lines`; `summary` counts outputs and suppressions per rule
    and tier (`stream.tools.impact`), `suppressions` gets one JSON line per
    detection or notice not sent, with why, whom and when."""
    session = Session(
        rules,
        created_at=(lambda e: e.event_time) if event_time_created else (lambda e: wall()),
        # murmur2 in Python costs ~3 µs: once per key, not on every step
        partition_of=lru_cache(maxsize=1 << 20)(lambda key: partition_of(key.encode(), partitions)),
        bounds=bounds,  # from the stream's own time: the wall clock plays no part
        partitions=partitions,
    )
    run = _Run(session, event_time_created, work, summary, suppressions)
    stats = ReplayStats()
    # In event-time mode even dead letters must be reproducible: they are
    # "received" at the latest event time seen so far.
    latest = datetime(1970, 1, 1, tzinfo=UTC)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        stats.lines += 1
        received = latest if event_time_created else wall()
        for output in run.line(number, line, received):
            if event_time_created and isinstance(output, CustomerNotice | InterventionTask):
                latest = max(latest, output.event_time)
            out.write(encode(output))
            stats.outputs += 1
            if isinstance(output, DeadLetter):
                stats.dead += 1
                if summary is not None:
                    summary.dead_letter(output)
        if progress is not None and stats.lines % 50000 == 0:
            rate = stats.lines / max(time.monotonic() - stats.started, 1e-9)
            progress.write(
                f"\r{stats.lines:,} events, {stats.outputs:,} outputs, {rate:,.0f} events/s"
            )
            progress.flush()
    if progress is not None:
        progress.write(
            f"\r{stats.lines:,} events, {stats.outputs:,} outputs, "
            f"{stats.dead:,} dead letters in "
            f"{time.monotonic() - stats.started:.1f}s\n"
        )
    return stats


class _Run:
    """One replay: the session, and the simulated work systems if any."""

    def __init__(
        self,
        session: Session,
        event_time_created: bool,
        work: WorkSimulator | None,
        summary: Summary | None = None,
        suppressions: TextIO | None = None,
    ):
        self.session = session
        self.event_time_created = event_time_created
        self.work = work
        self.summary = summary
        self.suppressions = suppressions

    def line(self, number: int, line: str, received: datetime) -> list[Output]:
        where = RawRecord("replay", None, number, None, line.encode("utf-8"))
        try:
            item = json.loads(line)
            topic, key, value = item["topic"], item.get("key"), item.get("value")
        except (ValueError, KeyError, TypeError) as exc:
            return [
                _dead(
                    where,
                    DeadLetterReason.INVALID_LINE,
                    f"not a {{topic, key, value}} object: {exc}",
                    received,
                )
            ]
        raw = RawRecord(
            topic,
            None,
            number,
            key.encode() if isinstance(key, str) else None,
            encode_value(value),  # as `forewarn produce` sends it: a string is raw bytes
        )
        if topic == PROFILES:
            return _profile(self.session, raw, key, value, received)
        if topic == TASK_UPDATES:
            return self.task_update(raw, received)
        if topic == WINDOWS:
            return self.window(raw, received)
        model = INPUT_MODELS.get(topic)
        if model is None:
            return [
                _dead(
                    raw, DeadLetterReason.UNKNOWN_TOPIC, f"unknown input topic {topic!r}", received
                )
            ]
        outputs: list[Output] = []
        # the worker's intake: decoding, validation and the key check
        good, problems = events_of(raw, model, event_key)
        total = len(good) + len(problems.items)
        for at, event in good:
            assert isinstance(event, UsageEvent | BillingEvent | NetworkQualityEvent)
            if self.work is not None:
                for update in self.work.due(event.event_time):
                    outputs.extend(self.apply_update(update, raw, received))
            step = self.session.process(event)
            if step.implausible is not None:
                problems.add(at.index or 0, DeadLetterReason.IMPLAUSIBLE_TIME, step.implausible)
                continue
            outputs.extend(self.step(step, raw, received))
        letter = problems.dead_letter(received, total)
        if letter is not None:
            outputs.append(letter)
        return outputs

    def task_update(self, raw: RawRecord, received: datetime) -> list[Output]:
        update = decode(raw, TaskUpdate, received)
        if isinstance(update, DeadLetter):
            return [update]
        assert isinstance(update, TaskUpdate)
        if raw.key is None or raw.key.decode() != update.target.id:
            return [
                _dead(
                    raw,
                    DeadLetterReason.KEY_MISMATCH,
                    "task updates are keyed by the task's target id; state is partitioned by it",
                    received,
                )
            ]
        return self.apply_update(update, raw, received)

    def window(self, raw: RawRecord, received: datetime) -> list[Output]:
        """Planned work, as the worker takes it: keyed by its target id; a
        null value withdraws the target's window."""
        if raw.key is None:
            return [
                _dead(
                    raw,
                    DeadLetterReason.MISSING_KEY,
                    "maintenance windows are keyed by target id",
                    received,
                )
            ]
        window = None
        if raw.value is not None:
            decoded = decode(raw, MaintenanceWindow, received)
            if isinstance(decoded, DeadLetter):
                return [decoded]
            assert isinstance(decoded, MaintenanceWindow)
            if decoded.target.id != raw.key.decode():
                return [
                    _dead(
                        raw,
                        DeadLetterReason.KEY_MISMATCH,
                        "a maintenance window is keyed by its target id",
                        received,
                    )
                ]
            window = decoded
        return self.step(self.session.window(raw.key.decode(), window), raw, received)

    def apply_update(self, update: TaskUpdate, raw: RawRecord, received: datetime) -> list[Output]:
        self.session.at = update.at if self.event_time_created else wall()
        step = self.session.task_update(update)
        if step.rejected is FeedbackReason.UNKNOWN_TASK:
            return [
                _dead(
                    raw,
                    DeadLetterReason.UNKNOWN_TASK,
                    f"no task {update.task_id} is known for {update.target.type.value} "
                    f"{update.target.id}",
                    received,
                )
            ]
        return self.step(step, raw, received)

    def step(self, step: Effects, raw: RawRecord, received: datetime) -> list[Output]:
        if self.work is not None:
            self.work.observe(step.outputs)
        if self.summary is not None:
            self.summary.add(step)
        if self.suppressions is not None:
            write_suppressions(self.suppressions, step)
        outputs: list[Output] = list(step.outputs)
        outputs.extend(
            _dead(raw, DeadLetterReason.RULE_ERROR, message, received, rule_id)
            for rule_id, message in step.failures
        )
        return outputs


def _profile(
    session: Session, raw: RawRecord, key: object, value: object, received: datetime
) -> list[Output]:
    if not isinstance(key, str):
        return [
            _dead(
                raw,
                DeadLetterReason.MISSING_KEY,
                "profile records need the subscriber id as key",
                received,
            )
        ]
    if value is None:
        session.put_profile(key, None)
        return []
    try:
        profile = CustomerProfile.model_validate_json(json.dumps(value))
    except ValidationError as exc:
        return [
            _dead(raw, DeadLetterReason.VALIDATION_ERROR, describe_validation_error(exc), received)
        ]
    session.put_profile(key, profile)
    return []


def _dead(
    raw: RawRecord,
    kind: DeadLetterReason,
    message: str,
    received: datetime,
    rule_id: str | None = None,
) -> DeadLetter:
    return dead_letter(raw, kind, message, received, rule_id)


def stderr_if_tty() -> TextIO | None:
    return sys.stderr if sys.stderr.isatty() else None
