"""Synthetic telecom traffic: `forewarn simulate` writes `{topic, key, value}`
records for `forewarn replay` or `forewarn produce`.

A population of subscribers whose profiles are derived from their index
(segment, prepaid, plan, language, home cell, broadband line), so nothing
per subscriber is held in memory: a million subscribers cost nothing until
they appear in an event. Events advance in event time over `span`; the mix is
data/voice/SMS usage with roaming trips, charges with top-ups, occasional
fraud bursts and value-added subscriptions, cell KPIs with cells that degrade
for a while, and broadband speed tests with lines that get slow. Seeded:
the same arguments give the same records.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

CST = timezone(timedelta(hours=8))
Record = tuple[str, str | None, dict[str, Any] | None]


@dataclass(frozen=True)
class Population:
    subscribers: int
    seed: int = 7

    @property
    def cells(self) -> int:
        return max(1, self.subscribers // 200)

    def subscriber_id(self, i: int) -> str:
        return f"86139{i:08d}"

    def cell_id(self, c: int) -> str:
        return f"C{c:06d}"

    def home_cell(self, i: int) -> int:
        return (i * 7919) % self.cells

    def has_line(self, i: int) -> bool:
        return i % 3 == 0

    def prepaid(self, i: int) -> bool:
        return i % 4 == 1

    def quota_mb(self, i: int) -> float | None:
        return (None, 2048.0, 10240.0, 30720.0, 5120.0)[i % 5]

    def profile(self, i: int) -> dict[str, Any]:
        segment = ("standard",) * 14 + (
            "vip",
            "vip",
            "elderly",
            "elderly",
            "enterprise",
            "standard",
        )
        quota = self.quota_mb(i)
        profile: dict[str, Any] = {
            "subscriber_id": self.subscriber_id(i),
            "segment": segment[i % len(segment)],
            "language": "en" if i % 10 == 3 else "zh-CN",
            "preferred_channel": ("sms", "app_push", "sms", "email")[i % 4],
            "prepaid": self.prepaid(i),
            "home_cell_id": self.cell_id(self.home_cell(i)),
        }
        if quota is not None:
            profile["plan"] = {"data_quota_mb": quota}
        if self.has_line(i):
            profile["broadband_line_id"] = f"L{i:08d}"
        if i % 25 == 0:
            profile["opt_out"] = ["roaming"]
        return profile


def simulate(
    population: Population,
    events: int,
    *,
    start: datetime = datetime(2026, 11, 1, tzinfo=CST),
    span: timedelta = timedelta(days=2),
    profiles: bool = True,
) -> Iterator[Record]:
    """All profiles first (when asked), then `events` input events in event-time order."""
    if profiles:
        for i in range(population.subscribers):
            yield "customer-profiles", population.subscriber_id(i), population.profile(i)
    rng = random.Random(population.seed)
    step = span / max(events, 1)
    for n in range(events):
        at = start + step * n
        roll = rng.random()
        if roll < 0.55:
            yield _usage(population, rng, n, at)
        elif roll < 0.80:
            yield _billing(population, rng, n, at)
        elif roll < 0.95:
            yield _cell(population, rng, n, at)
        else:
            yield _line(population, rng, n, at)


def _usage(p: Population, rng: random.Random, n: int, at: datetime) -> Record:
    i = rng.randrange(p.subscribers)
    sid = p.subscriber_id(i)
    service = rng.choices(("data", "voice", "sms"), (0.7, 0.2, 0.1))[0]
    volume = round(rng.expovariate(1 / 60), 2) if service == "data" else float(rng.randint(1, 10))
    value: dict[str, Any] = {
        "event_id": f"u{n}",
        "subscriber_id": sid,
        "event_time": at.isoformat(),
        "service": service,
        "volume": volume,
        "cycle_id": at.strftime("%Y-%m"),
        "cell_id": p.cell_id(p.home_cell(i)),
    }
    if i % 40 == 7 and at.day % 3 == 0:  # on a trip
        value["roaming_country"] = ("JP", "FR", "TH", "US")[(i + at.day) % 4]
    return "usage-events", sid, value


def _billing(p: Population, rng: random.Random, n: int, at: datetime) -> Record:
    i = rng.randrange(p.subscribers)
    sid = p.subscriber_id(i)
    roll = rng.random()
    if roll < 0.002:  # a fraud burst
        kind, amount = "premium_sms", round(rng.uniform(300, 1500), 2)
    elif roll < 0.02:
        kind, amount = "value_added_service", float(rng.choice((6, 10, 15)))
    elif roll < 0.12:
        kind, amount = "top_up", float(rng.choice((30, 50, 100)))
    else:
        kind = rng.choice(("subscription", "roaming", "international_call", "other"))
        amount = round(rng.expovariate(1 / 8), 2)
    value: dict[str, Any] = {
        "event_id": f"b{n}",
        "subscriber_id": sid,
        "event_time": at.isoformat(),
        "charge_type": kind,
        "amount": amount,
    }
    if p.prepaid(i):
        value["balance"] = round(rng.uniform(0, 120), 2)
    return "billing-events", sid, value


def _cell(p: Population, rng: random.Random, n: int, at: datetime) -> Record:
    c = rng.randrange(p.cells)
    cid = p.cell_id(c)
    degraded = (c * 31 + at.hour) % 97 == 0  # each cell has a bad hour now and then
    value = {
        "event_id": f"n{n}",
        "event_time": at.isoformat(),
        "scope": "cell",
        "cell_id": cid,
        "region": f"R{c % 16}",
        "latency_ms": round(rng.uniform(20, 60) * (4 if degraded else 1), 1),
        "packet_loss_pct": round(rng.uniform(0, 0.8) + (6 if degraded else 0), 2),
        "availability_pct": round(rng.uniform(99.5, 100.0), 2),
    }
    return "network-quality-events", cid, value


def _line(p: Population, rng: random.Random, n: int, at: datetime) -> Record:
    i = rng.randrange(0, p.subscribers, 3)
    line = f"L{i:08d}"
    subscribed = (100.0, 300.0, 1000.0)[i % 3 if i % 3 else (i // 3) % 3]
    slow = (i // 3) % 50 == 0
    measured = subscribed * (rng.uniform(0.1, 0.4) if slow else rng.uniform(0.7, 1.0))
    value = {
        "event_id": f"l{n}",
        "event_time": at.isoformat(),
        "scope": "broadband_line",
        "line_id": line,
        "subscriber_id": p.subscriber_id(i),
        "measured_down_mbps": round(measured, 1),
        "subscribed_down_mbps": subscribed,
    }
    return "network-quality-events", line, value


def jsonl(record: Record) -> str:
    topic, key, value = record
    return json.dumps({"topic": topic, "key": key, "value": value}, separators=(",", ":"))
