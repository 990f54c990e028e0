"""The worker's per-record work without Faust: decode, step, what to send,
what to write; every failure becomes a dead letter, never an exception."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from rules.loader import load_rule_set
from rules.records import decode_members
from schemas import NoticeIntent
from sinks.routing import intent_records, partition_of
from stream.decoding import RawRecord
from stream.metrics import Metrics
from stream.processor import Outcome, Processor
from stream.settings import DEFAULT_RULES_DIR, Settings

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
RULES = load_rule_set([DEFAULT_RULES_DIR]).rule_set
assert RULES is not None


def processor() -> Processor:
    return Processor(SETTINGS, RULES, Metrics(), clock=lambda: NOW)


def raw(topic: str, key: str | None, value: Any, offset: int = 1) -> RawRecord:
    data = value if isinstance(value, bytes | None) else json.dumps(value).encode()
    return RawRecord(SETTINGS.topic(topic), 0, offset, key.encode() if key else None, data)


def usage(sid: str, used: float, n: int = 1, minute: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"u{n}",
        "subscriber_id": sid,
        "event_time": f"2026-11-20T10:{minute:02d}:00+08:00",
        "service": "data",
        "volume": 1,
        "cycle_id": "2026-11",
        "cycle_used": used,
        "cycle_quota": 1000,
    }


def topics(outcome: Outcome) -> list[str]:
    return [r.topic.value for r in outcome.outputs]


def test_a_firing_event_sends_a_notice_and_writes_the_record_once() -> None:
    p = processor()
    out = p.subscriber(raw("usage_events", "s1", usage("s1", 1000)), None)  # 100%: at once
    assert topics(out) == ["customer-notices"] and out.record is not None
    again = p.subscriber(raw("usage_events", "s1", usage("s1", 1000)), out.record)
    assert again.outputs == []  # the same event redelivered: already applied


def test_bad_input_becomes_a_dead_letter_and_leaves_state_alone() -> None:
    p = processor()
    for record in (
        raw("usage_events", "s1", b"{nope"),
        raw("usage_events", "s1", {**usage("s1", 850), "volume": -1}),
        raw("usage_events", "other", usage("s1", 850)),
        raw("usage_events", None, usage("s1", 850)),
        raw("customer_profiles", None, {"subscriber_id": "s1"}),
        raw("customer_profiles", "s2", {"subscriber_id": "s1"}),
    ):
        out = p.subscriber(record, b'{"engine": {}}')
        assert topics(out) == ["dead-letters"] and out.record is None
    kinds = [
        json.loads(p.subscriber(r, None).outputs[0].value)["error_type"]
        for r in (
            raw("usage_events", "other", usage("s1", 850)),
            raw("customer_profiles", None, {"subscriber_id": "s1"}),
        )
    ]
    assert kinds == ["key_mismatch", "missing_key"]


def test_an_unexpected_error_is_caught_at_the_boundary() -> None:
    p = processor()
    out = p.subscriber(raw("usage_events", "s1", usage("s1", 850)), b"not a record")
    letter = json.loads(out.outputs[0].value)
    assert letter["error_type"] == "processing_error" and out.record is None


def test_profile_moves_send_membership_changes_and_cells_fan_out_to_members() -> None:
    p = processor()
    out = p.subscriber(
        raw("customer_profiles", "s1", {"subscriber_id": "s1", "home_cell_id": "C1"}), None
    )
    assert [(t, k) for t, k, _ in out.internal] == [(p.membership, b"C1")]
    members = p.network(RawRecord(p.membership, 0, 1, b"C1", out.internal[0][2]), None).members
    assert decode_members(members) == ["s1"]
    moved = p.subscriber(
        raw("customer_profiles", "s1", {"subscriber_id": "s1", "home_cell_id": "C2"}), out.record
    )
    assert sorted(json.loads(v)["member"] for _, _, v in moved.internal) == [False, True]
    deleted = p.subscriber(raw("customer_profiles", "s1", None), moved.record)
    assert [json.loads(v)["member"] for _, _, v in deleted.internal] == [False]

    record = None
    intents: list[bytes] = []
    for i, loss in enumerate((6, 6, 6)):
        event = {
            "event_id": f"n{i}",
            "event_time": f"2026-11-20T10:{5 * i:02d}:00+08:00",
            "scope": "cell",
            "cell_id": "C1",
            "packet_loss_pct": loss,
            "latency_ms": 30,
            "availability_pct": 99.9,
        }
        step = p.network(
            RawRecord(p.network_quality, 0, i, b"C1", json.dumps(event).encode()),
            record,
            members=lambda key: members,
        )
        record = step.record
        intents += [v for t, _, v in step.internal if t == p.intents]
        if step.outputs:
            task = json.loads(step.outputs[0].value)
    assert task["affected_subscribers"] == ["s1"]
    assert [[i["subscriber_id"] for i in json.loads(v)] for v in intents] == [["s1"]]
    home = partition_of(b"s1", SETTINGS.partitions)
    notice = p.subscriber(RawRecord(p.intents, home, 9, b"s1", intents[0]), None)
    assert topics(notice) == ["customer-notices"]


def intent(sid: str | None, n: int = 1) -> dict[str, Any]:
    return {
        "detection_id": f"d{n}",
        "subscriber_id": sid,
        "cell_id": "C1",
        "rule_id": "cell-degradation",
        "rule_version": "v1",
        "tier": "red",
        "severity": "critical",
        "category": "network",
        "facts": {"key": "C1"},
        "event_time": "2026-11-20T10:00:00+08:00",
        "source_event_ids": ["n1"],
    }


def test_fan_out_intents_travel_as_one_record_per_partition_where_their_subscribers_live() -> None:
    sids = [f"86138{i:08d}" for i in range(60)]
    intents = [NoticeIntent.model_validate(intent(sid)) for sid in sids]
    records = intent_records(intents, 6)
    assert 1 < len(records) <= 6
    kafka = DefaultPartitioner()
    carried = []
    for key, value in records:
        home = kafka(key, list(range(6)), list(range(6)))  # where the producer sends it
        members = [i["subscriber_id"] for i in json.loads(value)]
        assert {kafka(m.encode(), list(range(6)), []) for m in members} == {home}
        carried += members
    assert sorted(carried) == sorted(sids)


def test_an_intent_batch_goes_through_each_subscribers_policy_and_writes_each_record() -> None:
    p = processor()
    sids = [s for s in (f"86138{i:08d}" for i in range(40)) if partition_of(s.encode(), 6) == 2]
    sids = sids[:3]
    existing = p.subscriber(raw("usage_events", sids[2], usage(sids[2], 100)), None).record
    stranger = next(
        s for s in (f"86137{i:08d}" for i in range(40)) if partition_of(s.encode(), 6) != 2
    )
    batch = [intent(sids[0]), intent(sids[1]), intent(stranger), intent(sids[2])]
    stored = {sids[2].encode(): existing}
    out = p.subscriber(
        RawRecord(p.intents, 2, 5, sids[0].encode(), json.dumps(batch).encode()),
        None,
        stored.get,
    )
    notices = [json.loads(r.value) for r in out.outputs if r.topic.value == "customer-notices"]
    dead = [json.loads(r.value) for r in out.outputs if r.topic.value == "dead-letters"]
    assert [n["subscriber_id"] for n in notices] == [sids[0], sids[1], sids[2]]
    assert [(d["error_type"], d["error_message"].split(":")[0]) for d in dead] == [
        ("key_mismatch", f"{p.intents}[2]@5#2")
    ]
    assert out.record is not None and set(out.others) == {sids[1].encode(), sids[2].encode()}
    # the third subscriber's usage state was read and kept, not replaced
    assert json.loads(out.others[sids[2].encode()])["engine"] == json.loads(existing)["engine"]
    # the same intents one record at a time give the same notices
    single = [
        p.subscriber(
            RawRecord(p.intents, 2, 6, sid.encode(), json.dumps(intent(sid)).encode()),
            stored.get(sid.encode()),
        )
        for sid in sids
    ]
    assert [r.value for o in single for r in o.outputs] == [
        r.value for r in out.outputs if r.topic.value == "customer-notices"
    ]


def test_a_batch_gives_the_same_outputs_and_state_as_one_event_per_record() -> None:
    # minutes apart: the 80% and 90% notices each wait 10 min (group_wait) and go
    used = ((500, 0), (810, 1), (905, 15), (1001, 30))
    steps = [usage("s1", u, n, minute) for n, (u, minute) in enumerate(used, start=1)]
    single, state = processor(), None
    one_by_one = []
    for n, event in enumerate(steps):
        out = single.subscriber(raw("usage_events", "s1", event, offset=n), state)
        one_by_one += out.outputs
        state = out.record or state
    batched = processor().subscriber(raw("usage_events", "s1", steps), None)
    assert [r.value for r in batched.outputs] == [r.value for r in one_by_one]
    assert len(batched.outputs) == 3  # 80%, 90% and 100%
    assert batched.record == state


def test_bad_events_in_a_batch_are_dead_lettered_and_the_others_kept() -> None:
    m = Metrics()
    p = Processor(SETTINGS, RULES, m, clock=lambda: NOW)
    batch = [
        usage("s1", 100, 1),
        {**usage("s1", 200, 2), "volume": "lots"},  # wrong type
        usage("s2", 850, 3),  # another subscriber: not this record's key
        usage("s1", 1000, 4),
    ]
    out = p.subscriber(raw("usage_events", "s1", batch, offset=7), None)
    dead = [json.loads(r.value) for r in out.outputs if r.topic.value == "dead-letters"]
    notices = [json.loads(r.value) for r in out.outputs if r.topic.value == "customer-notices"]
    assert len(dead) == 1  # one record, one dead letter, whatever its number of bad events
    assert dead[0]["error_message"].startswith(
        f"{SETTINGS.topic('usage_events')}[0]@7: 2 of 4 events refused; "
        "validation_error at #1: volume: Input should be a valid number; key_mismatch at #2: "
    )
    assert [n["source_event_ids"] for n in notices] == [["u4"]]
    assert out.record is not None
    consumed = m.registry.get_sample_value("forewarn_events_consumed_total", {"source": "usage"})
    assert consumed == 4


def test_a_batch_that_is_not_json_is_one_dead_letter() -> None:
    out = processor().subscriber(raw("usage_events", "s1", b'[{"event_id": '), None)
    assert topics(out) == ["dead-letters"] and out.record is None


def test_an_event_dated_2099_is_dead_lettered_without_moving_state_or_clock() -> None:
    """The worker's path: the wall clock (NOW) bounds the future too."""
    p = processor()

    def charge(n: int, at: str, amount: float) -> RawRecord:
        value = {
            "event_id": f"c{n}",
            "subscriber_id": "s7",
            "event_time": at,
            "charge_type": "premium_sms",
            "amount": amount,
        }
        return raw("billing_events", "s7", value, offset=n)

    record = p.subscriber(charge(1, "2026-11-20T10:00:00+08:00", 1), None).record
    future = p.subscriber(charge(2, "2099-01-01T00:00:00+08:00", 1), record)
    assert topics(future) == ["dead-letters"] and future.record is None
    letter = json.loads(future.outputs[0].value)
    assert letter["error_type"] == "implausible_time" and "ahead of the" in letter["error_message"]
    fraud = p.subscriber(charge(3, "2026-11-20T10:05:00+08:00", 1500), record)
    assert sorted(topics(fraud)) == ["customer-notices", "intervention-tasks"]


def test_a_large_batch_of_wrongly_keyed_events_costs_one_bounded_dead_letter() -> None:
    m = Metrics()
    p = Processor(SETTINGS, RULES, m, clock=lambda: NOW)
    batch = [usage(f"x{i}", 1, i) for i in range(7500)]  # none keyed like the record
    value = json.dumps(batch).encode()
    assert len(value) > 1_000_000
    out = p.subscriber(raw("usage_events", "s1", value), None)
    assert topics(out) == ["dead-letters"] and out.record is None
    letter = json.loads(out.outputs[0].value)
    assert (
        letter["error_type"] == "key_mismatch"
        and "7500 of 7500 events refused" in (letter["error_message"])
    )
    assert "key_mismatch at #0-#7499" in letter["error_message"]
    assert len(out.outputs[0].value) < 80_000 and letter["payload_truncated"]
    invalid = m.registry.get_sample_value(
        "forewarn_invalid_events_total", {"source": "usage", "reason": "key_mismatch"}
    )
    assert invalid == 7500


def test_an_output_the_broker_would_refuse_is_a_dead_letter_naming_its_rule() -> None:
    from rules.records import Effects
    from schemas import CustomerNotice

    notice = CustomerNotice.model_validate(
        {
            "notice_id": "n1",
            "correlation_id": "d1",
            "subscriber_id": "s1",
            "rule_id": "data-usage",
            "tier": "80pct",
            "severity": "info",
            "category": "data_usage",
            "channel": "sms",
            "language": "en",
            "title": "t",
            "message": "m",
            "facts": {"blob": "x" * 1_000_000},
            "event_time": NOW.isoformat(),
            "created_at": NOW.isoformat(),
            "source_event_ids": ["u1"],
            "rule_version": "v",
        }
    )
    p = processor()
    effects = Effects()
    effects.outputs.append(notice)
    out = p._outcome(raw("usage_events", "s1", b"{}"), effects, NOW)
    assert topics(out) == ["dead-letters"]
    letter = json.loads(out.outputs[0].value)
    assert letter["error_type"] == "output_too_large" and letter["rule_id"] == "data-usage"


def test_a_huge_cell_task_lists_5000_subscribers_and_counts_all() -> None:

    p = processor()
    out = None
    members = [f"s{i:06d}" for i in range(6000)]
    for i, loss in enumerate((6, 6, 6)):
        event = {
            "event_id": f"n{i}",
            "event_time": f"2026-11-20T10:{5 * i:02d}:00+08:00",
            "scope": "cell",
            "cell_id": "C9",
            "packet_loss_pct": loss,
            "latency_ms": 30,
            "availability_pct": 99.9,
        }
        out = p.network(
            RawRecord(p.network_quality, 0, i, b"C9", json.dumps(event).encode()),
            out.record if out else None,
            members=lambda key: json.dumps(members).encode(),
        )
    assert out is not None
    task = next(json.loads(r.value) for r in out.outputs if r.topic.value == "intervention-tasks")
    assert len(task["affected_subscribers"]) == 5000 and task["affected_subscribers_total"] == 6000


def test_a_huge_cells_intents_are_split_into_records_that_fit() -> None:
    intents = [NoticeIntent.model_validate(intent(f"s{i:05d}")) for i in range(3000)]
    records = intent_records(intents, 1)
    assert len(records) > 1
    assert all(len(value) <= 600_000 for _, value in records)
    got = [i["subscriber_id"] for _, value in records for i in json.loads(value)]
    assert got == [f"s{i:05d}" for i in range(3000)]
    assert all(json.loads(v)[0]["subscriber_id"] == k.decode() for k, v in records)


def test_events_evaluated_before_their_profile_are_counted() -> None:
    """Profiles and events are different topics: an event can be read before
    its subscriber's profile. It is evaluated with the default profile, and
    counted, so the gap shows on the dashboard (README: Ordering)."""
    m = Metrics()
    p = Processor(SETTINGS, RULES, m, clock=lambda: NOW)
    early = p.subscriber(raw("usage_events", "s1", usage("s1", 100, 1)), None)
    counted = m.registry.get_sample_value(
        "forewarn_events_without_profile_total", {"source": "usage"}
    )
    assert counted == 1
    profiled = p.subscriber(
        raw("customer_profiles", "s1", {"subscriber_id": "s1", "language": "en"}), early.record
    )
    p.subscriber(raw("usage_events", "s1", usage("s1", 200, 2), offset=2), profiled.record)
    assert (
        m.registry.get_sample_value("forewarn_events_without_profile_total", {"source": "usage"})
        == 1
    )


def test_the_guard_budget_is_a_record_of_the_partition_and_survives_between_records() -> None:
    p = processor()
    table: dict[bytes, bytes] = {}
    share = -(-50 // SETTINGS.partitions)
    statuses = []
    for i in range(share + 2):
        sid = f"g{i}"
        charge = {
            "event_id": f"b{i}",
            "subscriber_id": sid,
            "event_time": "2026-11-20T10:00:00+08:00",
            "charge_type": "premium_sms",
            "amount": 1500,
        }
        out = p.subscriber(
            raw("billing_events", sid, charge, i), table.get(sid.encode()), table.get
        )
        assert out.record is not None
        table[sid.encode()] = out.record
        table.update(out.others)  # the budget record, written with the key's record
        tasks = [json.loads(r.value) for r in out.outputs if r.topic.value == "intervention-tasks"]
        statuses += [t["status"] for t in tasks]
    assert statuses == ["open"] * share + ["held", "held"]


def test_a_maintenance_window_is_kept_by_its_target_and_silences_its_red_cell() -> None:
    p = processor()
    window = {
        "window_id": "mw-1",
        "target": {"type": "cell", "id": "C1"},
        "start": "2026-11-21T12:00:00+08:00",
        "end": "2026-11-21T14:00:00+08:00",
        "reason": "antenna replacement",
        "planned_at": "2026-11-20T10:00:00+08:00",
        "planned_by": "ops",
    }
    out = p.network(raw("maintenance_windows", "C1", window), None)
    assert out.outputs == [] and out.record is not None
    record = out.record
    for n, minute in enumerate((5, 10, 15, 20)):  # red windows during the work
        cell = {
            "event_id": f"c{n}",
            "event_time": f"2026-11-21T12:{minute:02d}:00+08:00",
            "scope": "cell",
            "cell_id": "C1",
            "packet_loss_pct": 9,
            "latency_ms": 30,
            "availability_pct": 99.9,
        }
        out = p.network(raw("network_quality_events", "C1", cell, n + 2), record)
        assert "intervention-tasks" not in topics(out)
        record = out.record or record
    wrong = p.network(raw("maintenance_windows", "C2", window), None)
    assert [json.loads(r.value)["error_type"] for r in wrong.outputs] == ["key_mismatch"]


def test_records_carry_their_layout_version_and_a_newer_one_is_refused_not_misread() -> None:
    p = processor()
    first = p.subscriber(raw("usage_events", "s1", usage("s1", 850)), None).record
    assert first is not None and json.loads(first)["v"] == 2
    # written before versions were stored (no "v"): read as is, the event is a duplicate
    unversioned = json.dumps({k: v for k, v in json.loads(first).items() if k != "v"})
    assert (
        p.subscriber(raw("usage_events", "s1", usage("s1", 850)), unversioned.encode()).outputs
        == []
    )
    # written by a newer Forewarn: the input goes to dead-letters with why, the state is kept
    newer = json.dumps({**json.loads(first), "v": 3}).encode()
    out = p.subscriber(raw("usage_events", "s1", usage("s1", 950, n=2)), newer)
    assert topics(out) == ["dead-letters"] and out.record is None
    letter = json.loads(out.outputs[0].value)
    assert "layout version 3" in letter["error_message"]
    assert "newer Forewarn" in letter["error_message"]


def test_an_event_without_a_record_key_is_a_key_mismatch_not_a_processing_error() -> None:
    out = processor().subscriber(raw("usage_events", None, usage("s1", 850)), None)
    assert topics(out) == ["dead-letters"] and out.record is None
    assert json.loads(out.outputs[0].value)["error_type"] == "key_mismatch"
