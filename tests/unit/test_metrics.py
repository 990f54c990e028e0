"""The worker's metrics as Prometheus scrapes them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas import DeadLetterReason
from stream.metrics import Metrics, Tally, Timings


def samples(m: Metrics, name: str) -> dict[str, float]:
    text = generate_latest(m.registry).decode()
    return {
        s.labels["rule"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_rule_evaluations_are_counted_per_rule_and_declared_at_zero() -> None:
    m = Metrics()
    m.declare(["data-usage", "roaming-welcome", "never"], ["cooldown"])
    m.evaluations.add(["data-usage", "roaming-welcome", "data-usage"])
    m.evaluations.add(["data-usage"])
    got = samples(m, "forewarn_rule_evaluations_total")
    assert got == {"data-usage": 3.0, "roaming-welcome": 1.0, "never": 0.0}


def exposition(registry: CollectorRegistry) -> list[str]:
    """The scrape's sample lines, without prometheus-client's `_created`
    series (a creation time, which the per-event families do not keep)."""
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_per_event_counters_scrape_as_prometheus_client_counters() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = Tally("t_total", "Things.", ["source", "reason"], registry=ours)
    counter = Counter("t_total", "Things.", ["source", "reason"], registry=theirs)
    for family in (tally, counter):
        family.labels("usage", "invalid_json").inc()
        family.labels("usage", "invalid_json").inc(2)
        family.labels("billing", DeadLetterReason.VALIDATION_ERROR).inc()
        family.labels("profiles", "declared")  # declared: exported at 0
    assert exposition(ours) == exposition(theirs)
    assert 't_total{reason="validation_error",source="billing"} 1.0' in exposition(ours)
    with pytest.raises(ValueError, match="takes labels"):
        tally.labels("usage")


def test_per_event_histograms_scrape_as_prometheus_client_histograms() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    buckets = (0.001, 0.01, 0.1, 1)
    timings = Timings("h_seconds", "Time.", ["agent"], buckets=buckets, registry=ours)
    histogram = Histogram("h_seconds", "Time.", ["agent"], buckets=buckets, registry=theirs)
    plain = (Timings("p_seconds", "P.", buckets=buckets, registry=ours),
             Histogram("p_seconds", "P.", buckets=buckets, registry=theirs))  # fmt: skip
    # on a bound (counted in its bucket, `le`), between, above every bound, zero
    values = (0.001, 0.0005, 0.05, 0.01, 3.0, 0.0, 1.0, 0.2)
    for family in (timings, histogram):
        for v in values:
            family.labels("subscribers").observe(v)
        family.labels("network").observe(0.02)
    for family in plain:
        family.observe(0.5)
    assert exposition(ours) == exposition(theirs)
