"""Feeding and watching topics from the command line: `forewarn produce`
sends replay-format JSONL (`{"topic", "key", "value"}`) to the broker,
`forewarn tail` prints what arrives on the output topics, and `forewarn
watch` is the live terminal view of `make run`: counts per rule and tier
and the latest notices and tasks, redrawn every second. `forewarn task
update` sends one work-system report by hand and `forewarn work simulate`
plays simulated work systems answering the tasks."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TextIO

from kafka import KafkaConsumer, KafkaProducer

from schemas import InterventionTask, TaskUpdate
from stream.connection import kafka_python_config
from stream.logs import mask
from stream.settings import Settings, TopicNames
from stream.tools.worksim import WorkSimulator


def physical_topic(settings: Settings, logical: str) -> str:
    """Map a contract topic name (`usage-events`) to its configured name."""
    for field, default in TopicNames().model_dump().items():
        if logical in (default, field):
            return settings.topic(field)
    raise ValueError(
        f"unknown topic {logical!r}; expected one of {sorted(TopicNames().model_dump().values())}"
    )


def encode_value(value: Any) -> bytes | None:
    """Values are JSON objects; a string is sent as-is (to feed malformed
    input on purpose), null is a tombstone."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def read_lines(lines: Iterable[str]) -> Iterator[tuple[str, bytes | None, bytes | None]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key = item.get("key")
            yield (
                item["topic"],
                key.encode("utf-8") if key is not None else None,
                encode_value(item.get("value")),
            )
        except (ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"line {number}: not a {{topic, key, value}} object: {exc}") from exc


def produce(settings: Settings, lines: Iterable[str], rate: float | None = None) -> int:
    producer = KafkaProducer(**kafka_python_config(settings), linger_ms=5, acks="all")
    sent = 0
    started = time.monotonic()
    try:
        for logical, key, value in read_lines(lines):
            producer.send(physical_topic(settings, logical), key=key, value=value)
            sent += 1
            if rate:  # paced against the clock, not by sleeping a fixed time per record
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
    finally:
        producer.close()
    return sent


def send_task_update(settings: Settings, update: TaskUpdate) -> None:
    """One work-system report on `task-updates`, keyed by the task's target id."""
    producer = KafkaProducer(**kafka_python_config(settings), acks="all")
    try:
        producer.send(
            settings.topic("task_updates"),
            key=update.target.id.encode(),
            value=update.model_dump_json(exclude_none=True).encode(),
        ).get(timeout=30)
    finally:
        producer.close()


def simulate_work(
    settings: Settings,
    seed: int = 7,
    max_seconds: float | None = None,
    from_start: bool = False,
) -> int:
    """Simulated work systems on the live topics (`make run`): answer the
    tasks Forewarn opens with `stream.tools.worksim`'s scripts, each report sent
    once the stream's time (the latest event time of an output seen) has
    reached it. Returns the number of reports sent."""
    work = WorkSimulator(seed)
    consumer = KafkaConsumer(
        settings.topic("intervention_tasks"),
        settings.topic("customer_notices"),
        **kafka_python_config(settings),
        auto_offset_reset="earliest" if from_start else "latest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=500,
    )
    producer = KafkaProducer(**kafka_python_config(settings), linger_ms=5, acks="all")
    sent = 0
    now: datetime | None = None
    deadline = time.monotonic() + max_seconds if max_seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            for msg in consumer:
                doc = json.loads(msg.value or b"null")
                if not isinstance(doc, dict) or "event_time" not in doc:
                    continue
                if "task_id" in doc:
                    work.observe([InterventionTask.model_validate(doc)])
                at = datetime.fromisoformat(doc["event_time"])
                now = at if now is None or at > now else now
                for update in work.due(now):
                    producer.send(
                        settings.topic("task_updates"),
                        key=update.target.id.encode(),
                        value=update.model_dump_json(exclude_none=True).encode(),
                    )
                    sent += 1
    finally:
        producer.flush()
        producer.close()
        consumer.close()
    return sent


def output_consumer(settings: Settings, timeout_ms: int) -> KafkaConsumer:
    """A groupless consumer of the output topics, from now on."""
    topics = [settings.topic(t) for t in ("customer_notices", "intervention_tasks", "dead_letters")]
    return KafkaConsumer(
        *topics,
        **kafka_python_config(settings),
        auto_offset_reset="latest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=timeout_ms,
    )


def tail(settings: Settings, out: TextIO = sys.stdout, max_seconds: float | None = None) -> int:
    consumer = output_consumer(settings, timeout_ms=500)
    seen = 0
    deadline = time.monotonic() + max_seconds if max_seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            for msg in consumer:
                out.write(format_output(msg.topic, msg.value))
                out.flush()
                seen += 1
    finally:
        consumer.close()
    return seen


def format_output(topic: str, value: bytes | None) -> str:
    try:
        doc = json.loads(value or b"null")
    except ValueError:
        return f"{topic}: (undecodable)\n"
    if "notice_id" in doc:
        after = f" after {doc['deliver_after']}" if doc.get("deliver_after") else ""
        return (
            f"NOTICE {doc['rule_id']}/{doc['tier']} [{doc['severity']}] -> "
            f"{mask(doc['subscriber_id'])} via {doc['channel']}{after}: {doc['message']}\n"
        )
    if "task_id" in doc:
        return (
            f"TASK   {doc['rule_id']}/{doc['tier']} {doc.get('change', '')} {doc['status']} "
            f"{doc['queue']}/"
            f"{doc['action']} {doc['priority']} {doc['target']['type']}="
            f"{doc['target']['id']}: {doc['summary']}\n"
        )
    return f"DEAD   {doc.get('error_type')}: {doc.get('error_message', '')[:160]}\n"


def watch(
    settings: Settings,
    out: TextIO = sys.stdout,
    max_seconds: float | None = None,
    metrics_url: str = "",
) -> Counter[tuple[str, str, str]]:
    """Redraw a summary of the outputs every second until interrupted."""
    consumer = output_consumer(settings, timeout_ms=200)
    counts: Counter[tuple[str, str, str]] = Counter()  # (kind, rule, tier)
    latest: deque[str] = deque(maxlen=12)
    started = time.monotonic()
    drawn = 0.0
    try:
        while max_seconds is None or time.monotonic() - started < max_seconds:
            for msg in consumer:
                latest.append(format_output(msg.topic, msg.value).rstrip("\n"))
                counts[summary_key(msg.value)] += 1
                if time.monotonic() - drawn >= 1.0:
                    break
            out.write(render(counts, latest, time.monotonic() - started, metrics_url))
            out.flush()
            drawn = time.monotonic()
    finally:
        consumer.close()
    return counts


def summary_key(value: bytes | None) -> tuple[str, str, str]:
    try:
        doc = json.loads(value or b"null")
    except ValueError:
        return ("dead letter", "-", "undecodable")
    if isinstance(doc, dict) and "notice_id" in doc:
        return ("notice", doc["rule_id"], doc["tier"])
    if isinstance(doc, dict) and "task_id" in doc:
        return ("task", doc["rule_id"], doc["tier"])
    reason = doc.get("error_type", "?") if isinstance(doc, dict) else "?"
    return ("dead letter", "-", str(reason))


def render(
    counts: Counter[tuple[str, str, str]], latest: Iterable[str], elapsed: float, metrics_url: str
) -> str:
    lines = [
        "\x1b[H\x1b[2J"  # home, clear
        f"Forewarn live view: {sum(counts.values())} outputs in {elapsed:.0f}s"
        + (f"   metrics: {metrics_url}" if metrics_url else "")
        + "   (Ctrl-C stops everything)",
        "",
        f"{'kind':<12} {'rule':<26} {'tier':<22} {'count':>7}",
    ]
    for (kind, rule, tier), n in sorted(counts.items()):
        lines.append(f"{kind:<12} {rule:<26} {tier:<22} {n:>7}")
    lines += ["", "latest:"]
    lines += [f"  {line[:150]}" for line in latest]
    return "\n".join(lines) + "\n"
