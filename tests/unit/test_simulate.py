"""The traffic simulator: deterministic, diurnal, rolling billing cycles,
incidents that make the default rules fire, events in event-time order, and
a million subscribers without a million objects."""

from __future__ import annotations

import itertools
import json
import tracemalloc
from collections import Counter
from datetime import datetime

import pytest

from rules.loader import load_rule_set
from sinks import ListDestination
from stream.settings import DEFAULT_RULES_DIR
from stream.tools.replay import replay
from stream.tools.simulate import Population, jsonl, simulate


def test_the_same_arguments_give_the_same_records() -> None:
    a = [jsonl(r) for r in simulate(Population(500, seed=3), 3000, incidents_every=200)]
    b = [jsonl(r) for r in simulate(Population(500, seed=3), 3000, incidents_every=200)]
    c = [jsonl(r) for r in simulate(Population(500, seed=4), 3000, incidents_every=200)]
    assert a == b and a != c


def test_traffic_follows_the_day_and_cycles_roll_over_at_month_end() -> None:
    hours: Counter[int] = Counter()
    cycles = set()
    for _topic, _key, value in simulate(Population(1000), 20000, profiles=False):
        assert value is not None
        at = datetime.fromisoformat(value["event_time"])
        hours[at.hour] += 1
        if "cycle_id" in value:
            cycles.add(value["cycle_id"])
    assert hours[20] > 3 * hours[3]  # the evening peak against the night
    assert cycles == {"2026-11", "2026-12"}


def test_events_come_in_event_time_order_with_incidents_interleaved() -> None:
    times = [
        datetime.fromisoformat(value["event_time"])
        for topic, _k, value in simulate(Population(300), 5000, profiles=False, incidents_every=250)
        if value is not None and topic != "maintenance-windows"
    ]
    assert len(times) > 5000  # the incidents' own events
    assert times == sorted(times)


def fired(incidents_every: int) -> Counter[tuple[str, str, str]]:
    rules = load_rule_set([DEFAULT_RULES_DIR]).rule_set
    assert rules is not None
    out = ListDestination()
    records = simulate(Population(400), 4000, incidents_every=incidents_every)
    replay((jsonl(r) for r in records), rules, out, event_time_created=True)
    return Counter(
        ("task" if "task_id" in doc else "notice", doc["rule_id"], doc["tier"])
        for doc in (json.loads(r.value) for r in out.records)
        if "rule_id" in doc
    )


def test_each_kind_of_incident_makes_its_rule_fire() -> None:
    quiet, eventful = fired(0), fired(330)  # 12 incidents: two of each kind
    for output in (
        ("task", "abnormal-charges", "extreme"),  # fraud bursts: suspend service
        ("task", "cell-degradation", "red"),  # cell outages: dispatch repair
        ("notice", "broadband-slow", "slow"),  # slow lines
        ("notice", "data-usage", "100pct"),  # plans run out
        ("task", "pon-outage", "outage"),  # access nodes fail: one task each
        ("notice", "planned-work", "announce"),  # planned work told ahead
    ):
        assert eventful[output] - quiet[output] >= 2, (output, quiet[output], eventful[output])


def test_a_million_subscribers_cost_nothing_until_they_appear() -> None:
    tracemalloc.start()
    try:
        records = list(
            itertools.islice(simulate(Population(1_000_000), 2000, profiles=False), 2000)
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len({key for _t, key, _v in records}) > 1000
    assert peak < 5_000_000, f"{peak:,} bytes for 2,000 events"


def test_the_live_view_counts_outputs_per_rule_and_tier() -> None:
    from collections import deque

    from stream.tools.feed import render, summary_key

    notice = json.dumps({"notice_id": "n", "rule_id": "data-usage", "tier": "90pct"}).encode()
    task = json.dumps({"task_id": "t", "rule_id": "cell-degradation", "tier": "red"}).encode()
    dead = json.dumps({"error_type": "invalid_json"}).encode()
    counts = Counter(summary_key(v) for v in (notice, notice, task, dead, b"{nope"))
    assert counts == {
        ("notice", "data-usage", "90pct"): 2,
        ("task", "cell-degradation", "red"): 1,
        ("dead letter", "-", "invalid_json"): 1,
        ("dead letter", "-", "undecodable"): 1,
    }
    screen = render(counts, deque(["NOTICE data-usage/90pct ..."]), 12.0, "http://m")
    assert "5 outputs in 12s" in screen and "metrics: http://m" in screen
    assert any(
        line.split() == ["notice", "data-usage", "90pct", "2"] for line in screen.splitlines()
    )


def test_a_live_run_starts_now_with_event_ids_of_its_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`make run` a second time must not look like the first run's duplicates."""
    from datetime import UTC, timedelta

    from stream.cli import main

    assert (
        main(
            [
                "simulate",
                "--subscribers",
                "50",
                "--events",
                "200",
                "--start",
                "now",
                "--no-profiles",
            ]
        )
        == 0
    )
    values = [json.loads(line)["value"] for line in capsys.readouterr().out.splitlines()]
    assert all(v["event_id"].startswith("r2") and "-" in v["event_id"] for v in values)
    first = datetime.fromisoformat(values[0]["event_time"])
    assert abs(first - datetime.now(UTC)) < timedelta(days=1)
    assert main(["simulate", "--subscribers", "50", "--events", "5", "--no-profiles"]) == 0
    again = [json.loads(line)["value"] for line in capsys.readouterr().out.splitlines()]
    assert again[0]["event_id"] == "u0"  # without --start: reproducible as before


def test_roaming_is_spent_by_the_few_who_travel_at_realistic_daily_amounts() -> None:
    """A roaming-spend rule needs subscribers who spend 100+ CNY a day abroad,
    not 120 CNY spread over nearly everyone."""
    from collections import defaultdict
    from datetime import timedelta

    from stream.tools.simulate import Population, simulate

    daily: dict[tuple[str, str], float] = defaultdict(float)
    for topic, key, value in simulate(
        Population(2000), 40000, span=timedelta(days=6), profiles=False
    ):
        if (
            topic == "billing-events"
            and isinstance(value, dict)
            and value["charge_type"] == "roaming"
        ):
            assert key is not None
            daily[(key, value["event_time"][:10])] += value["amount"]
    spenders = {key for key, _ in daily}
    assert 0 < len(spenders) <= 2000 // 40  # the travellers only
    assert max(daily.values()) >= 150
