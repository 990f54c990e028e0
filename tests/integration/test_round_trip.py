"""Every default rule through the real broker and a real worker: the outputs
are exactly what `forewarn replay` gives for the same input, ids included,
and the metrics count what happened."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rules.loader import load_rule_set
from sinks import ListDestination
from stream.settings import Settings
from stream.tools.replay import replay
from tests.integration.conftest import WorkerProcess, metric, scrape, wait_for
from tests.integration.kafka import KafkaProbe
from tests.integration.scenario import events, profiles

pytestmark = pytest.mark.integration


def replayed(records: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    rules = load_rule_set(list(settings.rule_paths)).rule_set
    assert rules is not None
    out = ListDestination()
    replay(
        (json.dumps(r) for r in records),
        rules,
        out,
        event_time_created=True,
        partitions=settings.partitions,  # the worker's: due work follows partition clocks
    )
    return [
        {"topic": r.topic.value, "key": r.key.decode() if r.key else None, **json.loads(r.value)}
        for r in out.records
    ]


def comparable(output: dict[str, Any]) -> str:
    """Everything but the wall-clock creation time."""
    return json.dumps({k: v for k, v in output.items() if k != "created_at"}, sort_keys=True)


def send_profiles_and_wait(
    kafka: KafkaProbe, settings: Settings, recs: list[dict[str, Any]]
) -> None:
    for r in recs:
        kafka.send_record(r)
    kafka.flush()
    cells = len({r["value"]["home_cell_id"] for r in recs if r["value"].get("home_cell_id")})
    wait_for(
        lambda: (
            metric(scrape(settings), "forewarn_events_consumed_total", source="profiles")
            >= len(recs)
            and metric(scrape(settings), "forewarn_events_consumed_total", source="cell_membership")
            >= cells + 1
        ),
        "profiles and cell memberships to be processed",
    )


def assert_same_outputs(
    kafka: KafkaProbe, notices: list[dict[str, Any]], tasks: list[dict[str, Any]]
) -> None:
    got_notices = kafka.read("customer_notices", len(notices))
    got_tasks = kafka.read("intervention_tasks", len(tasks))
    assert sorted(comparable(n) for n in got_notices) == sorted(
        comparable({k: v for k, v in n.items() if k not in ("topic", "key")}) for n in notices
    )
    assert sorted(comparable(t) for t in got_tasks) == sorted(
        comparable({k: v for k, v in t.items() if k not in ("topic", "key")}) for t in tasks
    )
    assert kafka.read("dead_letters", 0, timeout=2) == []


def test_batched_records_give_the_same_outputs_as_one_event_per_record(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    expected = replayed(profiles() + events(), settings)
    notices = [o for o in expected if o["topic"] == "customer-notices"]
    tasks = [o for o in expected if o["topic"] == "intervention-tasks"]
    send_profiles_and_wait(kafka, settings, profiles())
    batches: dict[tuple[str, str], list[Any]] = {}
    for r in events():  # one record per key and topic: a JSON array of its events, in order
        batches.setdefault((r["topic"], r["key"]), []).append(r["value"])
    assert max(len(b) for b in batches.values()) > 3
    for (topic, key), values in batches.items():
        kafka.send_record({"topic": topic, "key": key, "value": values})
    kafka.flush()
    assert_same_outputs(kafka, notices, tasks)
    m = scrape(settings)
    usage = sum(r["topic"] == "usage-events" for r in events())
    assert metric(m, "forewarn_events_consumed_total", source="usage") == usage


def test_worker_outputs_equal_replay_outputs_with_the_same_ids(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    expected = replayed(profiles() + events(), settings)
    notices = [o for o in expected if o["topic"] == "customer-notices"]
    tasks = [o for o in expected if o["topic"] == "intervention-tasks"]
    # the scenario covers every tier (and the fraud task taking over the billing-risk call)
    assert len(notices) == 18 and len(tasks) == 13

    send_profiles_and_wait(kafka, settings, profiles())
    for r in events():
        kafka.send_record(r)
    kafka.flush()

    assert_same_outputs(kafka, notices, tasks)

    m = scrape(settings)
    rules_fired = {n["rule_id"] for n in notices}
    assert len(rules_fired) == 7  # every default rule but pon-outage: no areas here
    usage = sum(r["topic"] == "usage-events" for r in events())
    assert metric(m, "forewarn_events_consumed_total", source="usage") == usage
    assert (
        metric(m, "forewarn_rule_evaluations_total", rule="roaming-welcome") == usage
    )  # no filter
    assert metric(m, "forewarn_rule_firings_total", rule="data-usage", tier="80pct") == 1
    assert metric(m, "forewarn_rule_firings_total", rule="cell-degradation", tier="red") == 1
    assert metric(m, "forewarn_notices_total") == len(notices)
    assert metric(m, "forewarn_notices_total", channel="voice_call") == 2
    assert metric(m, "forewarn_tasks_total", queue="fraud", priority="P1", status="open") == 2
    for rule in rules_fired:  # per rule and tier, as the dashboard shows them
        assert metric(m, "forewarn_notices_total", rule=rule) == sum(
            n["rule_id"] == rule for n in notices
        )
    assert metric(m, "forewarn_tasks_total", rule="abnormal-charges", tier="extreme") == 2
    # a notice that waited (group wait, quiet hours) is not timed as a detection
    detections = sum(n["deliver_after"] is None for n in notices) + sum(
        t["change"] not in ("escalated", "feedback") for t in tasks
    )
    assert metric(m, "forewarn_detection_latency_seconds_count") == detections
    assert metric(m, "forewarn_task_escalation_delay_seconds_count") == sum(
        t["change"] == "escalated" for t in tasks
    )
    assert metric(m, "forewarn_dead_letters_total") == 0
    assert metric(m, "forewarn_suppressions_total", reason="fatigue_cap") == 1
    assert metric(m, "forewarn_rules_loaded") == 8
    assert metric(m, "forewarn_rule_series") == 8  # the default rules share nothing
    assert metric(m, "forewarn_rules_last_reload_success") == 1
    assert metric(m, "forewarn_state_keys", table="forewarn-subscribers") >= 0
    assert all("subscriber" not in dict(labels) for (_, labels) in m), "no per-subscriber labels"
