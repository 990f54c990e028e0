"""`forewarn replay` predicts production: one input stream with every kind
of bad record (malformed JSON, a wrong type, a wrong key, no key, a batch
with one bad event, an implausible time), fed to the worker through Kafka
and to replay from a file, gives the same notices and tasks (ids included)
and the same dead letters by reason."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from stream.settings import Settings
from tests.integration.conftest import WorkerProcess
from tests.integration.kafka import KafkaProbe
from tests.integration.test_round_trip import comparable, replayed

pytestmark = pytest.mark.integration


def bill(n: int, sid: str, amount: float, at: str = "2026-11-20T10:00:00+08:00") -> dict[str, Any]:
    return {
        "event_id": f"q{n}",
        "subscriber_id": sid,
        "event_time": at,
        "charge_type": "premium_sms",
        "amount": amount,
    }


def records() -> list[dict[str, Any]]:
    s1, s2, s3 = "8613800000101", "8613800000102", "8613800000103"
    return [
        {"topic": "billing-events", "key": s1, "value": bill(1, s1, 1500)},  # good: fraud
        {"topic": "billing-events", "key": s1, "value": "{not json"},  # malformed
        {"topic": "billing-events", "key": s2, "value": {**bill(2, s2, 10), "amount": "x"}},
        {"topic": "billing-events", "key": s3, "value": bill(3, s2, 1500)},  # wrong key
        {"topic": "billing-events", "key": None, "value": bill(4, s2, 1500)},  # no key
        {
            "topic": "billing-events",
            "key": s2,
            "value": [bill(5, s2, 400), {**bill(6, s2, 1), "charge_type": "nope"}],
        },
        {"topic": "billing-events", "key": s3, "value": bill(7, s3, 1, "2099-01-01T00:00:00Z")},
        {"topic": "billing-events", "key": s3, "value": bill(8, s3, 1200)},  # still detected
    ]


@pytest.mark.parametrize(
    "settings",
    [{}, {"agent_batch_records": 1}],
    ids=["agents-take-batches", "agents-take-one-at-a-time"],
    indirect=True,
)
def test_replay_and_worker_agree_on_every_kind_of_bad_record(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    expected = replayed(records(), settings)
    outputs = [o for o in expected if o["topic"] != "dead-letters"]
    dead = Counter(o["error_type"] for o in expected if o["topic"] == "dead-letters")
    assert dead == {
        "invalid_json": 1,
        "validation_error": 2,  # the amount, and the batch's second event
        "key_mismatch": 2,
        "implausible_time": 1,
    }
    for r in records():
        value = r["value"]
        kafka.send_record({**r, "value": value.encode() if isinstance(value, str) else value})
    kafka.flush()
    notices = [o for o in outputs if o["topic"] == "customer-notices"]
    tasks = [o for o in outputs if o["topic"] == "intervention-tasks"]
    got = kafka.read("customer_notices", len(notices)) + kafka.read(
        "intervention_tasks", len(tasks)
    )
    strip = [comparable({k: v for k, v in o.items() if k not in ("topic", "key")}) for o in outputs]
    mine, theirs = sorted(comparable(o) for o in got), sorted(strip)
    assert mine == theirs, (
        f"worker only: {sorted(set(mine) - set(theirs))}\n"
        f"replay only: {sorted(set(theirs) - set(mine))}"
    )
    letters = kafka.read("dead_letters", sum(dead.values()))
    got_dead = Counter(d["error_type"] for d in letters)
    assert got_dead == dead, (got_dead, dead, [d["error_message"][:120] for d in letters])
