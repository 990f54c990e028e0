"""Operations controls from the command line, all through contract topics so
that the worker, replay and an audit see the same records:

- `forewarn held list|release|drop`: work a guard held (`rules.guard`).
  The list is the latest revision of every task on `intervention-tasks`
  whose status is `held`; release and drop send an `approved` or
  `cancelled` report on `task-updates`, keyed by the task's target.
- `forewarn maintenance add|list|end`: planned work on a cell, a line or an
  area, on the compacted `maintenance-windows` topic keyed by the target id
  (`schemas.maintenance`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas import (
    FeedbackStatus,
    InterventionTask,
    MaintenanceWindow,
    TaskStatus,
    TaskUpdate,
)
from stream.connection import kafka_python_config
from stream.settings import Settings
from stream.tools.feed import send_task_update


def read_topic(
    settings: Settings, topic: str, timeout_ms: int = 2000
) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Every record of `topic` from its beginning to its end now (key, value)."""
    consumer = KafkaConsumer(
        **kafka_python_config(settings),
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=timeout_ms,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = consumer.poll(timeout_ms=timeout_ms)
            if not batch:
                break
            for tp, records in batch.items():
                for r in records:
                    if r.offset < ends[tp]:
                        yield r.key, r.value
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()


def held_tasks(settings: Settings) -> list[InterventionTask]:
    """Tasks whose latest revision on `intervention-tasks` is `held`."""
    latest: dict[str, InterventionTask] = {}
    for _, value in read_topic(settings, settings.topic("intervention_tasks")):
        if not value:
            continue
        try:
            task = InterventionTask.model_validate_json(value)
        except ValueError:
            continue
        known = latest.get(task.task_id)
        if known is None or task.revision > known.revision:
            latest[task.task_id] = task
    held = [t for t in latest.values() if t.status is TaskStatus.HELD]
    return sorted(held, key=lambda t: (t.event_time, t.task_id))


def decide(
    settings: Settings,
    task_ids: list[str],
    approve: bool,
    by: str,
    note: str | None,
) -> tuple[list[str], list[str]]:
    """Release (approve) or drop held tasks; returns (sent, not held)."""
    held = {t.task_id: t for t in held_tasks(settings)}
    sent, missing = [], []
    for tid in task_ids:
        task = held.get(tid)
        if task is None:
            missing.append(tid)
            continue
        send_task_update(
            settings,
            TaskUpdate(
                task_id=tid,
                status=FeedbackStatus.APPROVED if approve else FeedbackStatus.CANCELLED,
                at=datetime.now(UTC),
                target=task.target,
                note=note,
                reported_by=by,
            ),
        )
        sent.append(tid)
    return sent, missing


def windows(settings: Settings) -> list[MaintenanceWindow]:
    """The windows on `maintenance-windows` now: the latest per target,
    without withdrawn ones, by start time."""
    latest: dict[bytes, MaintenanceWindow | None] = {}
    for key, value in read_topic(settings, settings.topic("maintenance_windows")):
        if key is None:
            continue
        if value is None:
            latest[key] = None
            continue
        try:
            latest[key] = MaintenanceWindow.model_validate_json(value)
        except ValueError:
            continue
    found = [w for w in latest.values() if w is not None]
    return sorted(found, key=lambda w: (w.start, w.target.id))


def send_window(settings: Settings, key: str, window: MaintenanceWindow | None) -> None:
    """One window (None: a tombstone, withdrawing the target's window)."""
    producer = KafkaProducer(**kafka_python_config(settings), acks="all")
    try:
        value = (
            window.model_dump_json(by_alias=True, exclude_none=True).encode() if window else None
        )
        producer.send(settings.topic("maintenance_windows"), key=key.encode(), value=value).get(
            timeout=30
        )
    finally:
        producer.close()


def end_window(settings: Settings, target_id: str, by: str) -> MaintenanceWindow | None:
    """End the target's window in force now: its "work finished" notices
    follow. None when no window of the target is in force."""
    now = datetime.now(UTC)
    current = next((w for w in windows(settings) if w.target.id == target_id), None)
    if current is None or not current.start <= now < current.end:
        return None
    ended = current.model_copy(update={"end": now, "planned_by": by})
    send_window(settings, target_id, ended)
    return ended
