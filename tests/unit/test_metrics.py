"""The worker's metrics as Prometheus scrapes them."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream.metrics import Metrics


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
