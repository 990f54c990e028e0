"""`forewarn held` and `forewarn maintenance` against the real broker and a
real worker: an operator lists held work and releases or drops it; plans a
window, lists it, and ends it early, and the customers hear of both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stream.settings import Settings
from tests.integration.conftest import WorkerProcess, wait_for
from tests.integration.kafka import KafkaProbe
from tests.integration.test_task_cli import cli

pytestmark = pytest.mark.integration


def test_an_operator_lists_held_work_and_releases_one_task_and_drops_another(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    now = datetime.now(UTC)
    storm = 80
    for n in range(storm):
        sid = f"g{n:03d}"
        kafka.send(
            "billing_events",
            sid,
            {
                "event_id": f"g{n}",
                "subscriber_id": sid,
                "event_time": (now + timedelta(milliseconds=n)).isoformat(),
                "charge_type": "premium_sms",
                "amount": 2000,
            },
        )
    kafka.flush()
    tasks = kafka.read("intervention_tasks", storm)
    held = sorted(t["task_id"] for t in tasks if t["status"] == "held")
    assert len(held) >= storm - settings.partitions * -(-50 // settings.partitions)

    listed = cli(settings, "held", "list")
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == held
    assert f"{len(held)} held task(s)" in listed.stderr

    keep, drop = held[0], held[1]
    assert cli(settings, "held", "release", keep, "--by", "lead").returncode == 0
    dropped = cli(settings, "held", "drop", drop, "--note", "feed error")
    assert dropped.returncode == 0 and f"dropped {drop}" in dropped.stdout
    unknown = cli(settings, "held", "release", "no-such-task")
    assert unknown.returncode == 1 and "no-such-task is not held" in unknown.stderr

    def decided() -> dict[str, list[str]]:
        changes: dict[str, list[str]] = {}
        for t in kafka.read("intervention_tasks", 0, timeout=1):
            changes.setdefault(t["task_id"], []).append(t["change"])
        return changes

    wait_for(
        lambda: "released" in decided().get(keep, []) and "feedback" in decided().get(drop, []),
        "the release and the drop",
        workers=(worker,),
    )
    again = cli(settings, "held", "list")
    remaining = sorted(line.split()[0] for line in again.stdout.splitlines())
    assert remaining == [t for t in held if t not in (keep, drop)]


def test_an_operator_plans_lists_and_ends_a_window_and_customers_hear_of_both(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    cell, home = "CCLI1", "8613900000888"
    kafka.send(
        "customer_profiles",
        home,
        {
            "subscriber_id": home,
            "home_cell_id": cell,
            "language": "en",
            "quiet_hours": {"start": "00:00", "end": "00:00"},
        },
    )
    kafka.flush()
    now = datetime.now(UTC).replace(microsecond=0)
    bad = cli(
        settings, "maintenance", "add", "--target", f"cell:{cell}", "--reason", "x",
        "--start", now.isoformat(), "--end", (now - timedelta(hours=1)).isoformat(),
    )  # fmt: skip
    assert bad.returncode == 2 and "'end' must be after 'start'" in bad.stderr
    added = cli(
        settings, "maintenance", "add", "--target", f"cell:{cell}", "--reason", "antenna work",
        "--start", (now + timedelta(seconds=5)).isoformat(),
        "--end", (now + timedelta(hours=2)).isoformat(),
        "--message-en", "We are replacing the antenna.", "--message-zh", "更换天线。",
        "--announce", "1m", "--id", "mw-cli",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = cli(settings, "maintenance", "list")
    assert "mw-cli  cell:CCLI1" in listed.stdout and "antenna work" in listed.stdout

    def planned() -> list[dict[str, str]]:
        return [
            n
            for n in kafka.read("customer_notices", 0, timeout=1)
            if n["rule_id"] == "planned-work"
        ]

    wait_for(lambda: len(planned()) == 1, "the announcement", 90, (worker,))
    wait_for(
        lambda: "in force" in cli(settings, "maintenance", "list").stdout,
        "the window to be in force",
        30,
    )
    ended = cli(settings, "maintenance", "end", cell, "--by", "field-lead")
    assert ended.returncode == 0, ended.stderr
    wait_for(lambda: len(planned()) == 2, "the 'work finished' notice", 90, (worker,))
    told, done = sorted(planned(), key=lambda n: n["event_time"])
    assert "replacing the antenna" in told["message"] and done["tier"] == "announce:resolved"
    assert "over" in cli(settings, "maintenance", "list").stdout
    assert cli(settings, "maintenance", "end", cell).returncode == 1  # nothing in force now
    assert done["subscriber_id"] == home
