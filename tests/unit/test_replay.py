"""`forewarn replay`: byte-identical output for the same input in event-time
mode, and bad lines become dead letters without stopping the run."""

from __future__ import annotations

import io
import json

from rules.loader import load_rule_set
from sinks import JsonlDestination
from stream.settings import DEFAULT_RULES_DIR
from stream.tools.replay import replay

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


def charge(n: int, at: str, amount: float, sid: str = "s9") -> str:
    value = {
        "event_id": f"c{n}",
        "subscriber_id": sid,
        "event_time": at,
        "charge_type": "premium_sms",
        "amount": amount,
    }
    return json.dumps({"topic": "billing-events", "key": sid, "value": value})


def test_an_implausible_event_time_is_dead_lettered_and_detection_goes_on() -> None:
    """One event dated 2099 (and one at the very end of time) for a
    subscriber: both dead-lettered, no clock or state moved, and the fraud
    rule still fires on the two 1,500 CNY charges that follow."""
    assert RULES is not None
    lines = [
        charge(1, "2026-11-20T10:00:00+08:00", 1),
        charge(2, "2099-01-01T00:00:00+08:00", 1),
        charge(3, "9999-12-31T23:59:59-14:00", 1),
        charge(4, "2026-11-20T10:05:00+08:00", 1500),
        charge(5, "2026-11-21T11:00:00+08:00", 1500),
        charge(6, "2026-09-01T10:00:00+08:00", 1),  # 81 days late
    ]
    buf = io.StringIO()
    replay(lines, RULES, JsonlDestination(buf), event_time_created=True)
    out = [json.loads(line)["value"] for line in buf.getvalue().splitlines()]
    dead = [o for o in out if "error_type" in o]
    assert [d["error_type"] for d in dead] == ["implausible_time"] * 3
    assert "years ahead of the stream's time" in dead[0]["error_message"]
    assert "days behind the stream's time" in dead[2]["error_message"]
    fraud = [o for o in out if o.get("tier") == "extreme" and "notice_id" in o]
    assert [o["event_time"] for o in fraud] == [
        "2026-11-20T10:05:00+08:00",
        "2026-11-21T11:00:00+08:00",
    ]
    assert not any("2099" in o.get("event_time", "") for o in out if "error_type" not in o)


def test_replay_refuses_what_the_worker_refuses_with_the_same_intake() -> None:
    """Wrongly keyed and keyless records, a bad batch item: the worker's
    intake (`stream.decoding.events_of`), so a backtest predicts production."""
    assert RULES is not None
    good = json.loads(charge(1, "2026-11-20T10:00:00+08:00", 1500))
    lines = [
        json.dumps({**good, "key": "someone-else"}),
        json.dumps({**good, "key": None}),
        json.dumps({**good, "value": [good["value"], {**good["value"], "amount": "x"}]}),
    ]
    buf = io.StringIO()
    replay(lines, RULES, JsonlDestination(buf), event_time_created=True)
    out = [json.loads(line)["value"] for line in buf.getvalue().splitlines()]
    dead = [o["error_type"] for o in out if "error_type" in o]
    assert dead == ["key_mismatch", "key_mismatch", "validation_error"]
    assert sum(o.get("tier") == "extreme" for o in out) == 2  # the batch's good event fired
