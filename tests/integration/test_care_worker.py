"""The task lifecycle through the real broker and a real worker: outputs
(ids, statuses, revisions) equal `forewarn replay` for a run with task
updates and escalations; an overdue task escalates within 60 s of its due
time with no further traffic; a kill -9 between a task's due time and its
escalation loses no escalation and never sends one under two ids."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stream.settings import Settings
from tests.integration.conftest import WorkerProcess, metric, scrape, wait_for
from tests.integration.kafka import KafkaProbe
from tests.integration.scenario import events, profiles
from tests.integration.test_round_trip import comparable, replayed, send_profiles_and_wait

pytestmark = pytest.mark.integration

QUICK_RULE = """
rules:
  - id: quick-call
    description: A call promised within {due}; escalates when missed.
    source: billing
    category: charges
    measures: {{charged: "amount"}}
    tiers:
      - name: big
        when: "charged >= 100"
        severity: warning
        dedup: {{scope: episode}}
        task:
          queue: billing-risk
          action: call_customer
          priority: P3
          due_in: {due}
          summary: "Call {{{{ key }}}} about {{{{ charged | num }}}} CNY."
          escalate: {{priority: P1}}
"""


def update(task: dict[str, Any], status: str, at: str, **kw: Any) -> dict[str, Any]:
    target = task["target"]
    value = {"task_id": task["task_id"], "status": status, "at": at, "target": target}
    return {
        "topic": "task-updates",
        "key": target["id"],
        "value": {**value, "reported_by": "t", **kw},
    }


def opened(outputs: list[dict[str, Any]], action: str, follow_up: bool = False) -> dict[str, Any]:
    return next(
        o
        for o in outputs
        if o["topic"] == "intervention-tasks"
        and o["change"] == "opened"
        and o["action"] == action
        and (o["parent_task_id"] is not None) == follow_up
    )


def test_worker_equals_replay_with_task_updates_and_escalations(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    first = replayed(profiles() + events(), settings)
    fraud, repair = opened(first, "suspend_service"), opened(first, "dispatch_repair")
    compensation = opened(first, "compensate", follow_up=True)
    assert any(o.get("change") == "escalated" for o in first)  # the scenario misses promises
    updates = [
        update(fraud, "acknowledged", "2026-11-20T10:05:00+08:00"),
        update(fraud, "done", "2026-11-20T10:09:00+08:00", outcome="suspended"),
        update(repair, "in_progress", "2026-11-21T12:00:00+08:00"),
        update(repair, "done", "2026-11-21T13:00:00+08:00", outcome="repaired"),
        update(compensation, "done", "2026-11-21T14:00:00+08:00", outcome="credited"),
        update(repair, "done", "2026-11-21T13:00:00+08:00"),  # redelivered: nothing
        {**update(fraud, "done", "2026-11-20T10:09:00+08:00"), "key": "someone-else"},
        update({**fraud, "task_id": "no-such-task"}, "done", "2026-11-20T10:09:00+08:00"),
    ]
    expected = replayed(profiles() + events() + updates, settings)
    notices = [o for o in expected if o["topic"] == "customer-notices"]
    tasks = [o for o in expected if o["topic"] == "intervention-tasks"]
    dead = sorted(o["error_type"] for o in expected if o["topic"] == "dead-letters")
    assert dead == ["key_mismatch", "unknown_task"]
    assert any(n["tier"] == "extreme:done" for n in notices)

    send_profiles_and_wait(kafka, settings, profiles())
    for r in events():
        kafka.send_record(r)
    kafka.flush()
    phase1 = [o for o in first if o["topic"] == "intervention-tasks"]
    assert len(kafka.read("intervention_tasks", len(phase1))) == len(phase1)
    for r in updates:  # after the detections they answer, as work systems would
        kafka.send_record(r)
    kafka.flush()

    got_tasks = kafka.read("intervention_tasks", len(tasks))
    got_notices = kafka.read("customer_notices", len(notices))
    strip = lambda o: comparable({k: v for k, v in o.items() if k not in ("topic", "key")})  # noqa: E731
    assert sorted(comparable(t) for t in got_tasks) == sorted(strip(t) for t in tasks)
    assert sorted(comparable(n) for n in got_notices) == sorted(strip(n) for n in notices)
    got_dead = kafka.read("dead_letters", 2)
    assert sorted(d["error_type"] for d in got_dead) == dead
    m = scrape(settings)
    assert metric(m, "forewarn_task_feedback_total", result="applied") == 5
    assert metric(m, "forewarn_task_feedback_total", result="task_closed") == 1
    assert metric(m, "forewarn_task_feedback_total", result="unknown_task") == 1
    assert metric(m, "forewarn_task_transitions_total", transition="escalated") == sum(
        t["change"] == "escalated" for t in tasks
    )
    assert metric(m, "forewarn_task_transitions_total", transition="closed_by_feedback") == 3


def quick_settings(settings: Settings, tmp_path: Path, due: str, **kw: Any) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "quick.yaml").write_text(QUICK_RULE.format(due=due), encoding="utf-8")
    return settings.model_copy(update={"rule_paths": (rules,), **kw})


def charge(n: int, sid: str = "8613900000001") -> dict[str, Any]:
    value = {
        "event_id": f"q{n}",
        "subscriber_id": sid,
        "event_time": datetime.now(UTC).isoformat(),
        "charge_type": "other",
        "amount": 150,
    }
    return {"topic": "billing-events", "key": sid, "value": value}


def escalations(kafka: KafkaProbe, count: int, timeout: float) -> list[dict[str, Any]]:
    tasks = kafka.read("intervention_tasks", count, timeout=timeout)
    return [t for t in tasks if t["change"] == "escalated"]


def test_an_overdue_task_escalates_within_60s_with_no_further_traffic(
    settings: Settings, kafka: KafkaProbe, tmp_path: Path
) -> None:
    s = quick_settings(settings, tmp_path, "20s")
    worker = WorkerProcess(s, tmp_path / "worker.log")
    worker.start()
    try:
        kafka.send_record(charge(1))
        kafka.flush()
        first = kafka.read("intervention_tasks", 1)
        assert [t["change"] for t in first] == ["opened"]
        due = datetime.fromisoformat(first[0]["due_by"])
        wait_for(lambda: bool(escalations(kafka, 2, timeout=2)), "the escalation", 90, (worker,))
        seen = time.time()
        (escalated,) = escalations(kafka, 2, timeout=2)
        late = datetime.fromisoformat(escalated["created_at"]) - due
        assert escalated["priority"] == "P1" and escalated["task_id"] == first[0]["task_id"]
        assert escalated["event_time"] == first[0]["due_by"]  # dated at the missed promise
        assert 0 <= late.total_seconds() <= 60, late
        assert seen - due.timestamp() <= 65
        m = scrape(s)
        assert metric(m, "forewarn_task_escalation_delay_seconds_count") == 1
        assert metric(m, "forewarn_task_escalation_delay_seconds_bucket", le="60.0") == 1
        wait_for(
            lambda: metric(scrape(s), "forewarn_tasks_overdue", queue="billing-risk") == 1,
            "the overdue gauge",
            workers=(worker,),
        )
        print(f"escalated {late.total_seconds():.1f}s after the due time")
    finally:
        worker.stop()


def test_kill_9_between_due_time_and_escalation_loses_none_and_sends_one_id(
    settings: Settings, kafka: KafkaProbe, tmp_path: Path
) -> None:
    # The first worker has no live clock: the promise falls due while it
    # runs, and it is killed before anything could escalate it.
    quiet = quick_settings(settings, tmp_path, "8s", clock_tick_seconds=0)
    first = WorkerProcess(quiet, tmp_path / "first.log")
    first.start()
    kafka.send_record(charge(1))
    kafka.flush()
    opened_task = kafka.read("intervention_tasks", 1)[0]
    due = datetime.fromisoformat(opened_task["due_by"])
    time.sleep(max(due.timestamp() - time.time(), 0) + 3)
    assert escalations(kafka, 1, timeout=1) == []
    assert first.proc is not None
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    # A new worker with its local state lost recovers it from the changelog.
    live = quick_settings(
        settings, tmp_path, "8s", clock_tick_seconds=2, state_dir=tmp_path / "state-2"
    )
    second = WorkerProcess(live, tmp_path / "second.log")
    second.start()
    try:
        wait_for(lambda: bool(escalations(kafka, 2, timeout=2)), "the escalation", 120, (second,))
        time.sleep(8)  # any second escalation would be out by now
        found = escalations(kafka, 2, timeout=3)
        assert {e["update_id"] for e in found} == {found[0]["update_id"]}
        assert {e["revision"] for e in found} == {2}
        assert found[0]["task_id"] == opened_task["task_id"]
    finally:
        second.stop()
