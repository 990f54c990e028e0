"""The worker under bad input, a crash, and a rule change, against the real
broker: nothing valid is lost, everything bad is explained, repeated outputs
keep their ids, and rule changes take effect (or are refused) live."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from rules.loader import load_rule_set
from sinks import ListDestination
from stream.settings import DEFAULT_RULES_DIR, Settings
from stream.tools.replay import replay
from tests.integration.conftest import WorkerProcess, metric, scrape, wait_for, wait_for_metric
from tests.integration.kafka import KafkaProbe

pytestmark = pytest.mark.integration


def usage(n: int, sid: str, used: float, minute: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"u{n}",
        "subscriber_id": sid,
        "event_time": f"2026-11-20T10:{minute:02d}:00+08:00",
        "service": "data",
        "volume": 10,
        "cycle_id": "2026-11",
        "cycle_used": used,
        "cycle_quota": 1000,
    }


def test_poison_input_goes_to_dead_letters_and_valid_events_are_all_processed(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    bad: list[tuple[str | None, bytes | None]] = []
    for i in range(600):
        sid = f"86139{i:08d}"
        bad.append((sid, b'{"event_id": "x", broken'))  # not JSON
        bad.append((sid, json.dumps({**usage(i, sid, 850), "volume": "lots"}).encode()))
        bad.append((sid, b"\xff\xfe\x00garbage"))  # not UTF-8
        bad.append((sid, json.dumps({"event_id": "only"}).encode()))  # missing fields
        bad.append((None, json.dumps(usage(i, sid, 850)).encode()))  # no key
    huge = json.dumps({**usage(9, "8613900000009", 1000), "pad": "x" * 900_000}).encode()
    bad.append(("8613900000009", huge))  # valid but huge: unknown fields are ignored
    valid = [(f"86138{i:08d}", usage(i, f"86138{i:08d}", 1000)) for i in range(200)]
    for i in range(max(len(bad), len(valid))):
        if i < len(bad):
            kafka.send("usage_events", *bad[i])
        if i < len(valid):
            kafka.send("usage_events", valid[i][0], valid[i][1])
    kafka.flush()

    notices = kafka.read("customer_notices", len(valid) + 1)
    dead = kafka.read("dead_letters", len(bad) - 1)
    assert sorted(n["subscriber_id"] for n in notices) == sorted(
        [sid for sid, _ in valid] + ["8613900000009"]
    )
    assert len(dead) == len(bad) - 1
    kinds: dict[str, int] = {}
    for d in dead:
        kinds[d["error_type"]] = kinds.get(d["error_type"], 0) + 1
        assert d["source_topic"] == settings.topic("usage_events")
        assert d["offset"] is not None and d["error_message"]
    assert kinds == {
        "invalid_json": 1200,  # broken JSON and invalid UTF-8
        "validation_error": 1200,
        "key_mismatch": 600,
    }, kinds
    m = scrape(settings)
    assert metric(m, "forewarn_dead_letters_total") == len(bad) - 1
    assert metric(m, "forewarn_invalid_events_total", source="usage") == len(bad) - 1
    assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
    assert "Traceback" not in worker.log_path.read_text(errors="replace")


def test_kill_9_mid_stream_loses_nothing_and_repeats_keep_their_ids(
    kafka: KafkaProbe, settings: Settings, tmp_path: Path
) -> None:
    subscribers = [f"86137{i:08d}" for i in range(1500)]
    # 80%, 90% and 100% once each per subscriber, a quarter of an hour apart: the
    # 80% and 90% notices wait 10 min (group_wait) and go when the next step's
    # events move their partition's clock past that
    steps = (500, 810, 905, 1001)
    records = [
        {"topic": "usage-events", "key": sid, "value": usage(n * 10 + k, sid, used, minute=15 * k)}
        for k, used in enumerate(steps)
        for n, sid in enumerate(subscribers)
    ]
    rules = load_rule_set([DEFAULT_RULES_DIR]).rule_set
    assert rules is not None
    expected = ListDestination()
    replay((json.dumps(r) for r in records), rules, expected, event_time_created=True)
    expected_ids = {json.loads(r.value)["notice_id"] for r in expected.records}
    assert len(expected_ids) == 3 * len(subscribers)

    first = WorkerProcess(settings, tmp_path / "worker-1.log")
    first.start()
    for r in records:
        kafka.send_record(r)
    kafka.flush()
    wait_for(
        lambda: metric(scrape(settings), "forewarn_notices_total") >= 1000,
        "the first thousand notices",
        workers=(first,),
    )
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()

    second = WorkerProcess(settings, tmp_path / "worker-2.log")
    second.start()
    try:
        got = kafka.read("customer_notices", len(expected_ids), timeout=120, distinct=output_id)
    finally:
        second.stop()
    by_id: dict[str, list[dict[str, Any]]] = {}
    for n in got:
        by_id.setdefault(n["notice_id"], []).append(n)
    assert set(by_id) == expected_ids
    for copies in by_id.values():  # a repeat is the same notice, not a new one
        assert len({(c["tier"], c["subscriber_id"], c["message"]) for c in copies}) == 1


def test_rule_changes_apply_live_and_a_bad_change_is_refused(
    kafka: KafkaProbe, settings: Settings, tmp_path: Path
) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules_dir, ignore=shutil.ignore_patterns("tests"))
    data_usage = rules_dir / "data-usage.yaml"  # its notices go at once, not after a wait
    data_usage.write_text(data_usage.read_text().replace("          group_wait: 10m\n", ""))
    live = settings.model_copy(update={"rule_paths": (rules_dir,), "rules_poll_seconds": 0.5})
    proc = WorkerProcess(live, tmp_path / "worker.log")
    proc.start()
    try:
        kafka.send("usage_events", "8613600000001", usage(1, "8613600000001", 750))
        kafka.flush()
        wait_for_metric(
            proc, "forewarn_events_consumed_total", 1, "the first event", source="usage"
        )
        data_usage.write_text(data_usage.read_text().replace('"ratio >= 0.8"', '"ratio >= 0.7"'))
        wait_for_metric(
            proc,
            "forewarn_rules_reloads_total",
            2,
            "the reload of the changed threshold",
            result="success",
        )
        kafka.send("usage_events", "8613600000002", usage(2, "8613600000002", 750))
        kafka.flush()
        first = kafka.read("customer_notices", 1)
        assert [(n["subscriber_id"], n["tier"]) for n in first] == [("8613600000002", "80pct")]

        data_usage.write_text(data_usage.read_text().replace('"ratio >= 0.7"', '"ratio >>= 0.1"'))
        wait_for_metric(
            proc, "forewarn_rules_reloads_total", 1, "the rejected reload", result="failure"
        )
        assert metric(scrape(live), "forewarn_rules_last_reload_success") == 0
        kafka.send("usage_events", "8613600000003", usage(3, "8613600000003", 750))
        kafka.send("usage_events", "8613600000004", usage(4, "8613600000004", 500))
        kafka.flush()
        after = kafka.read("customer_notices", 2)
        assert sorted(n["subscriber_id"] for n in after) == ["8613600000002", "8613600000003"]
        assert after[0]["rule_version"] == after[1]["rule_version"]
        log = proc.log_path.read_text(errors="replace")
        assert "data-usage.yaml:" in log and "the previous rules keep running" in log
    finally:
        proc.stop()


def test_sigterm_commits_what_was_processed_and_exits_within_seconds(
    kafka: KafkaProbe, settings: Settings, tmp_path: Path
) -> None:
    proc = WorkerProcess(settings, tmp_path / "worker.log")
    proc.start()
    sids = [f"86134{i:08d}" for i in range(500)]
    for i, sid in enumerate(sids):
        kafka.send("usage_events", sid, usage(i, sid, 1000))  # 100%: sent at once
    kafka.flush()
    assert len(kafka.read("customer_notices", len(sids))) == len(sids)
    assert proc.proc is not None
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    code = proc.proc.wait(timeout=30)
    took = time.monotonic() - started
    assert code == 0, proc.log_tail()
    assert took < 10, f"SIGTERM took {took:.1f}s"
    # Everything processed was committed: a restart resumes at the end.
    topic = settings.topic("usage_events")
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        committed = admin.list_group_offsets(settings.app_id)[settings.app_id]
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = consumer.end_offsets(parts)
    finally:
        admin.close()
        consumer.close()
    assert {tp: committed[tp].offset for tp in parts} == ends


def test_state_dependent_rules_fire_across_a_kill_9_and_a_lost_disk(
    kafka: KafkaProbe, settings: Settings, tmp_path: Path
) -> None:
    """Every key's events are cut in two: the first part goes in, the worker
    is killed (-9) and its local state deleted, a new worker restores state
    from the changelogs, and the second part goes in. Cycle tiers, the 1 h
    charge sum, consecutive cell windows and the slow-line streak need what
    the first part left behind; every output of `forewarn replay` on the
    whole stream must appear, repeats with identical content."""
    from tests.integration.scenario import events, profiles
    from tests.integration.test_round_trip import comparable, replayed, send_profiles_and_wait

    expected = {output_id(o): o for o in replayed(profiles() + events(), settings)}
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in events():
        by_key.setdefault((r["topic"], r["key"]), []).append(r)
    first_part = [r for rs in by_key.values() for r in rs[: (len(rs) + 1) // 2]]
    second_part = [r for rs in by_key.values() for r in rs[(len(rs) + 1) // 2 :]]
    assert sum(len(rs) > 1 for rs in by_key.values()) >= 5  # sequences really are cut

    first = WorkerProcess(settings, tmp_path / "worker-1.log")
    first.start()
    send_profiles_and_wait(kafka, settings, profiles())
    for r in first_part:
        kafka.send_record(r)
    kafka.flush()
    inputs = ("usage", "billing", "network_quality")
    wait_for(
        lambda: (
            sum(
                metric(scrape(settings), "forewarn_events_consumed_total", source=s) for s in inputs
            )
            >= len(first_part)
        ),
        "the first part of every key's events",
        workers=(first,),
    )
    time.sleep(1.5)  # let state writes follow their outputs' acks (and maybe a commit)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    shutil.rmtree(settings.state_dir)  # a new machine: state comes from the changelogs

    second = WorkerProcess(settings, tmp_path / "worker-2.log")
    second.start()
    try:
        for r in second_part:
            kafka.send_record(r)
        kafka.flush()
        notices = [n for n in expected.values() if n["topic"] == "customer-notices"]
        got = kafka.read("customer_notices", len(notices), timeout=120, distinct=output_id)
        got += kafka.read(
            "intervention_tasks", len(expected) - len(notices), timeout=60, distinct=output_id
        )
    finally:
        second.stop()
    seen: dict[str, set[str]] = {}
    for o in got:
        seen.setdefault(output_id(o), set()).add(comparable(o))
    assert set(seen) == set(expected), (
        f"missing {sorted(set(expected) - set(seen))}, unexpected {sorted(set(seen) - set(expected))}"
    )
    for key, copies in seen.items():
        want = {k: v for k, v in expected[key].items() if k not in ("topic", "key")}
        assert copies == {comparable(want)}, key


def output_id(output: dict[str, Any]) -> str:
    """A notice's id; a task change's id (a task's changes share its task_id)."""
    if "notice_id" in output:
        return str(output["notice_id"])
    return str(output["update_id"])
