"""Two workers in one consumer group, against the real broker: they split the
partitions between them, and when one is killed the other takes its
partitions over, restores their state from the changelogs and goes on, so no
expected output is lost and state-dependent rules still add up."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from rules.loader import load_rule_set
from sinks import ListDestination
from stream.settings import DEFAULT_RULES_DIR, Settings
from stream.tools.replay import replay
from tests.integration.conftest import WorkerProcess, free_port, metric, scrape, wait_for
from tests.integration.kafka import KafkaProbe

pytestmark = pytest.mark.integration

SUBSCRIBERS = [f"86135{i:08d}" for i in range(300)]
WATCHED = {  # what the survivor's metrics say when a notice is missing
    "forewarn_suppressions_total",
    "forewarn_events_consumed_total",
    "forewarn_input_gaps_total",
    "forewarn_input_stalls_total",
    "forewarn_inflight_records",
}


def charge(n: int, sid: str, minute: int) -> dict[str, Any]:
    return {
        "topic": "billing-events",
        "key": sid,
        "value": {
            "event_id": f"b{n}",
            "subscriber_id": sid,
            "event_time": f"2026-11-20T10:{minute:02d}:00+08:00",
            "charge_type": "international_call",
            "amount": 60,
        },
    }


def ready(worker: WorkerProcess) -> bool:
    import urllib.request

    url = f"http://127.0.0.1:{worker.settings.web_port}/ready"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def assignment(settings: Settings) -> dict[str, set[int]]:
    """{member id: partitions of the usage topic} for the app's consumer group."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        group = admin.describe_groups([settings.app_id])[settings.app_id]
    finally:
        admin.close()
    topic = settings.topic("billing_events")
    return {
        m["member_id"]: {
            p
            for t in m["member_assignment"]["assigned_partitions"]
            if t["topic"] == topic
            for p in t["partitions"]
        }
        for m in group["members"]
    }


def notices_from_supervised(
    worker: WorkerProcess, kafka: KafkaProbe, expected: set[str], tmp_path: Path
) -> tuple[list[dict[str, Any]], WorkerProcess]:
    """Read notices until all `expected` are there, running the worker as a
    supervisor would: faust-streaming 0.15.3 can leave a changelog partition
    that moved away and back unfetched; the worker then stops after a minute
    without recovery progress (`Supervisor.recovery_stuck`), and a restarted
    worker recovers. Returns the notices and the worker now running."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 200
    restarts = 0
    while time.monotonic() < deadline:
        got = kafka.read("customer_notices", len(expected), timeout=10)
        if {n["notice_id"] for n in got} >= expected:
            break
        assert worker.proc is not None
        if worker.proc.poll() is not None:
            log = worker.log_path.read_text(errors="replace")
            assert "changelog recovery made no progress" in log, worker.log_tail()
            restarts += 1
            worker = WorkerProcess(worker.settings, tmp_path / f"worker-restart-{restarts}.log")
            worker.start()
    return got, worker


def test_two_workers_split_partitions_and_one_takes_over_when_the_other_dies(
    kafka: KafkaProbe, settings: Settings, tmp_path: Path
) -> None:
    # Each charge alone (60 CNY) is below the 100 CNY hourly alarm; the two
    # together, ten minutes apart, are above it. A worker that took over a
    # partition without its state would miss the alarm.
    first_half = [charge(i, sid, 0) for i, sid in enumerate(SUBSCRIBERS)]
    second_half = [charge(1000 + i, sid, 10) for i, sid in enumerate(SUBSCRIBERS)]
    rules = load_rule_set([DEFAULT_RULES_DIR]).rule_set
    assert rules is not None
    expected = ListDestination()
    replay(
        (json.dumps(r) for r in first_half + second_half),
        rules,
        expected,
        event_time_created=True,
    )
    expected_ids = {
        json.loads(r.value)["notice_id"] for r in expected.records if r.topic == "customer-notices"
    }
    assert len(expected_ids) == len(SUBSCRIBERS)

    a = WorkerProcess(settings, tmp_path / "worker-a.log")
    b_settings = settings.model_copy(
        update={
            "web_port": free_port(),
            "metrics_port": free_port(),
            "state_dir": tmp_path / "state-b",
        }
    )
    b = WorkerProcess(b_settings, tmp_path / "worker-b.log")
    a.start()
    b.start()
    try:
        wait_for(
            lambda: ready(a) and ready(b), "both workers ready after the rebalance", workers=(a, b)
        )
        members = assignment(settings)
        assert len(members) == 2, members
        left, right = members.values()
        assert left and right and not left & right, members
        assert left | right == set(range(settings.partitions)), members

        for r in first_half:
            kafka.send_record(r)
        kafka.flush()

        def consumed(s: Settings) -> float:
            return metric(scrape(s), "forewarn_events_consumed_total", source="billing")

        wait_for(
            lambda: consumed(settings) + consumed(b_settings) >= len(first_half),
            "the first half, between the two workers",
            workers=(a, b),
        )
        assert consumed(settings) > 0 and consumed(b_settings) > 0  # both did work

        assert b.proc is not None
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait()
        for r in second_half:
            kafka.send_record(r)
        kafka.flush()

        got, a = notices_from_supervised(a, kafka, expected_ids, tmp_path)
        missing = expected_ids - {n["notice_id"] for n in got}
        counters = {k: v for k, v in scrape(settings).items() if v and k[0] in WATCHED}
        assert not missing, (len(missing), counters, a.log_tail(30))
        assert {n["notice_id"] for n in got} == expected_ids
        assert {n["tier"] for n in got} == {"unusual"}
        members = assignment(settings)
        assert list(members.values()) == [set(range(settings.partitions))], members
    finally:
        b.stop()
        a.stop()
    log = a.log_path.read_text(errors="replace")
    assert "Traceback" not in log
