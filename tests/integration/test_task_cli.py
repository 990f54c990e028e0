"""`forewarn task update` (a report by hand) and `forewarn work simulate`
(simulated work systems for `make run`) against the real broker."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stream.settings import Settings
from stream.tools.feed import simulate_work
from tests.integration.conftest import WorkerProcess, settings_env
from tests.integration.kafka import KafkaProbe

pytestmark = pytest.mark.integration


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_report_by_hand_closes_the_task_and_a_bad_one_is_refused_in_one_line(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    now = datetime.now(UTC).isoformat()
    sid = "8613900000077"
    kafka.send(
        "billing_events",
        sid,
        {
            "event_id": "f1",
            "subscriber_id": sid,
            "event_time": now,
            "charge_type": "other",
            "amount": 1500,
        },
    )
    kafka.flush()
    opened = kafka.read("intervention_tasks", 1)[0]
    bad = cli(
        settings, "task", "update", opened["task_id"], "--target", "planet:x", "--status", "done"
    )
    assert bad.returncode == 2 and "target.type" in bad.stderr and "Traceback" not in bad.stderr
    ok = cli(
        settings,
        "task",
        "update",
        opened["task_id"],
        "--target",
        f"subscriber:{sid}",
        "--status",
        "done",
        "--outcome",
        "suspended",
        "--by",
        "fraud-desk",
    )
    assert ok.returncode == 0, ok.stderr
    tasks = kafka.read("intervention_tasks", 2)
    done = [t for t in tasks if t["status"] == "done"]
    assert len(done) == 1 and done[0]["task_id"] == opened["task_id"]
    notices = kafka.read("customer_notices", 2)
    assert any(n["tier"] == "extreme:done" for n in notices)


def test_simulated_work_systems_answer_opened_tasks(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings, tmp_path: Path
) -> None:
    sent: list[int] = []
    thread = threading.Thread(
        target=lambda: sent.append(
            simulate_work(settings, seed=1, max_seconds=25, from_start=True)
        ),
        daemon=True,
    )
    thread.start()
    sid = "8613900000078"
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    for i, minutes in enumerate((0, 30, 60)):  # 30 min later the fraud desk has reported
        at = t0.replace(minute=0).timestamp() + minutes * 60
        kafka.send(
            "billing_events",
            sid,
            {
                "event_id": f"w{i}",
                "subscriber_id": sid,
                "event_time": datetime.fromtimestamp(at, UTC).isoformat(),
                "charge_type": "other",
                "amount": 1500 if i == 0 else 1,
            },
        )
        kafka.flush()
        kafka.read("intervention_tasks", 1, timeout=10)
    thread.join(40)
    assert sent and sent[0] >= 1
    updates = kafka.read("task_updates", sent[0])
    assert {u["reported_by"] for u in updates} == {"sim-fraud"}
