"""`forewarn replay`: byte-identical output for the same input in event-time
mode, and bad lines become dead letters without stopping the run."""

from __future__ import annotations

import io
import json

from rules.loader import load_rule_set
from sinks import JsonlDestination
from stream.replay import replay
from stream.settings import DEFAULT_RULES_DIR

RULES = load_rule_set([DEFAULT_RULES_DIR]).rule_set
LINES = [
    json.dumps(
        {
            "topic": "customer-profiles",
            "key": "s1",
            "value": {"subscriber_id": "s1", "language": "en", "prepaid": True},
        }
    ),
    json.dumps(
        {
            "topic": "billing-events",
            "key": "s1",
            "value": {
                "event_id": "b1",
                "subscriber_id": "s1",
                "event_time": "2026-11-20T10:00:00+08:00",
                "charge_type": "other",
                "amount": 1500,
                "balance": 3,
            },
        }
    ),
    "not json",
    json.dumps({"topic": "usage-events", "key": "s1", "value": {"event_id": "x"}}),
    json.dumps({"topic": "nope", "key": "s1", "value": {}}),
]


def run() -> str:
    assert RULES is not None
    buf = io.StringIO()
    replay(LINES, RULES, JsonlDestination(buf), event_time_created=True)
    return buf.getvalue()


def test_replay_is_byte_identical_and_keeps_going_after_bad_lines() -> None:
    first, second = run(), run()
    assert first == second
    out = [json.loads(line) for line in first.splitlines()]
    topics = [o["topic"] for o in out]
    assert topics.count("dead-letters") == 3
    kinds = sorted(o["value"]["error_type"] for o in out if o["topic"] == "dead-letters")
    assert kinds == ["invalid_line", "unknown_topic", "validation_error"]
    tiers = {
        (o["value"]["rule_id"], o["value"]["tier"]) for o in out if o["topic"] != "dead-letters"
    }
    assert ("abnormal-charges", "extreme") in tiers and ("prepaid-balance", "very-low") in tiers
    notice = next(o for o in out if o["topic"] == "customer-notices")
    assert notice["key"] == "s1" and notice["value"]["created_at"] == notice["value"]["event_time"]
