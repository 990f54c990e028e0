"""Synthetic telecom traffic: `forewarn simulate` writes `{topic, key, value}`
records for `forewarn replay` or `forewarn produce`.

A population of subscribers whose profiles are derived from their index
(segment, prepaid, plan, language, home cell, broadband line), so nothing
per subscriber is held in memory: a million subscribers cost nothing until
they appear in an event. Events advance in event time over `span`, busier in
the day and the evening than at night (a diurnal curve), across a month end
by default so billing cycles roll over; the mix is data/voice/SMS usage with
roaming trips, charges with top-ups, occasional fraud bursts and value-added
subscriptions, cell KPIs with cells that degrade for a while, and broadband
speed tests with lines that get slow.

Incidents can be injected on demand (`incidents_every`): in turn a fraud
burst on one subscriber, an outage of one cell, a broadband line that stays
slow, a subscriber running through the data plan, an access node (32
lines, `area_id`) failing for 40 minutes, and planned work on a cell
(announced on `maintenance-windows` a day ahead). An incident changes
the simulated world for a while (the cell's own KPIs degrade too) and its
events are interleaved in event-time order. Seeded: the same arguments give
the same records.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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

    def area_id(self, i: int) -> str:
        """The access node of subscriber i's line: 32 lines per node."""
        return f"A{(i // 3) // AREA_LINES:05d}"

    def area_lines(self, area: int) -> range:
        """The subscribers (indexes) with a line on node `area`."""
        first = area * AREA_LINES * 3
        return range(first, min(first + AREA_LINES * 3, self.subscribers), 3)

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


# Relative traffic per local hour: quiet at night, an evening peak.
DIURNAL = (0.25,) * 7 + (0.8,) * 3 + (1.0,) * 9 + (1.4,) * 4 + (0.6,)
DIURNAL_MEAN = sum(DIURNAL) / len(DIURNAL)
INCIDENTS = (
    "fraud_burst",
    "cell_outage",
    "slow_line",
    "data_exhaustion",
    "area_outage",
    "planned_work",
)
AREA_LINES = 32  # broadband lines per access node (a PON port)


@dataclass
class World:
    """What incidents changed, and the incident events still to come."""

    outage_until: dict[int, datetime] = field(default_factory=dict)  # cell -> end
    slow_until: dict[int, datetime] = field(default_factory=dict)  # subscriber -> end
    work: dict[int, tuple[datetime, datetime]] = field(default_factory=dict)  # cell -> window
    schedule: list[tuple[datetime, int, Record]] = field(default_factory=list)
    sequence: int = 0

    def at(self, when: datetime, record: Record) -> None:
        self.sequence += 1
        heapq.heappush(self.schedule, (when, self.sequence, record))

    def due(self, now: datetime) -> Iterator[Record]:
        while self.schedule and self.schedule[0][0] <= now:
            yield heapq.heappop(self.schedule)[2]


def simulate(
    population: Population,
    events: int,
    *,
    start: datetime = datetime(2026, 11, 30, tzinfo=CST),
    span: timedelta = timedelta(days=2),
    profiles: bool = True,
    incidents_every: int = 0,
) -> Iterator[Record]:
    """All profiles first (when asked), then `events` input events in
    event-time order, plus an incident every `incidents_every` events."""
    if profiles:
        for i in range(population.subscribers):
            yield "customer-profiles", population.subscriber_id(i), population.profile(i)
    rng = random.Random(population.seed)
    world = World()
    step = span / max(events, 1) * DIURNAL_MEAN
    at = start
    for n in range(events):
        at += step / DIURNAL[at.hour]
        yield from world.due(at)
        if incidents_every and n % incidents_every == incidents_every - 1:
            kind = INCIDENTS[(n // incidents_every) % len(INCIDENTS)]
            INJECT[kind](population, rng, world, n, at)
        roll = rng.random()
        if roll < 0.55:
            yield _usage(population, rng, n, at)
        elif roll < 0.80:
            yield _billing(population, rng, n, at)
        elif roll < 0.95:
            yield _cell(population, rng, world, n, at)
        else:
            yield _line(population, rng, world, n, at)
    yield from world.due(datetime.max.replace(tzinfo=CST))


def _fraud_burst(p: Population, rng: random.Random, world: World, n: int, at: datetime) -> None:
    """Four premium-SMS charges of 300 CNY in eight minutes: the extreme tier."""
    i = rng.randrange(p.subscribers)
    sid = p.subscriber_id(i)
    for k in range(4):
        when = at + timedelta(minutes=2 * k + 1)
        value = {
            "event_id": f"x{n}-{k}",
            "subscriber_id": sid,
            "event_time": when.isoformat(),
            "charge_type": "premium_sms",
            "amount": 300.0,
            "description": "simulated fraud burst",
        }
        world.at(when, ("billing-events", sid, value))


def _cell_outage(p: Population, rng: random.Random, world: World, n: int, at: datetime) -> None:
    """A cell loses packets for 20 minutes: its own KPIs degrade, plus a
    KPI report a minute from the cell's monitoring."""
    c = rng.randrange(p.cells)
    world.outage_until[c] = at + timedelta(minutes=20)
    for k in range(20):
        when = at + timedelta(minutes=k + 1)
        world.at(when, _cell_event(p, rng, world, c, f"x{n}-{k}", when))


def _slow_line(p: Population, rng: random.Random, world: World, n: int, at: datetime) -> None:
    """A broadband line at 15% of its speed for an hour: four speed tests."""
    i = rng.randrange(0, p.subscribers, 3)
    world.slow_until[i] = at + timedelta(hours=1)
    for k in range(4):
        when = at + timedelta(minutes=10 * k + 1)
        world.at(when, _line_event(p, rng, world, i, f"x{n}-{k}", when))


def _data_exhaustion(p: Population, rng: random.Random, world: World, n: int, at: datetime) -> None:
    """A subscriber goes through 85%, 95% and 101% of the plan in 15 minutes."""
    i = rng.randrange(p.subscribers)
    quota = p.quota_mb(i) or 10240.0
    sid = p.subscriber_id(i)
    for k, share in enumerate((0.85, 0.95, 1.01)):
        when = at + timedelta(minutes=5 * k + 1)
        value = {
            "event_id": f"x{n}-{k}",
            "subscriber_id": sid,
            "event_time": when.isoformat(),
            "service": "data",
            "volume": round(quota * 0.05, 2),
            "cycle_id": when.strftime("%Y-%m"),
            "cycle_used": round(quota * share, 2),
            "cycle_quota": quota,
            "cell_id": p.cell_id(p.home_cell(i)),
        }
        world.at(when, ("usage-events", sid, value))


def _area_outage(p: Population, rng: random.Random, world: World, n: int, at: datetime) -> None:
    """An access node fails for 40 minutes: every line behind it runs at
    10-20% of its speed (a speed test every 10 minutes), then recovers."""
    areas = max(1, -(-p.subscribers // (3 * AREA_LINES)))
    area = rng.randrange(areas)
    lines = list(p.area_lines(area))
    for i in lines:
        world.slow_until[i] = at + timedelta(minutes=40)
    for k in range(6):  # 4 tests while down, 2 after
        when = at + timedelta(minutes=10 * k + 1)
        for j, i in enumerate(lines):
            tick = when + timedelta(seconds=j)
            world.at(tick, _line_event(p, rng, world, i, f"x{n}-{k}-{j}", tick))


def _planned_work(p: Population, rng: random.Random, world: World, n: int, at: datetime) -> None:
    """Planned work on a cell tomorrow: the window is planned now (its home
    subscribers are told 24 h ahead), and the cell degrades while the work
    goes on, with a KPI report every 5 minutes."""
    c = rng.randrange(p.cells)
    cid = p.cell_id(c)
    start = (at + timedelta(hours=26)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=2)
    world.work[c] = (start, end)
    window = {
        "window_id": f"mw-{n}",
        "target": {"type": "cell", "id": cid},
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reason": "antenna replacement",
        "message": {
            "en": "We are replacing the antenna to improve coverage.",
            "zh-CN": "我们将更换天线以改善信号覆盖。",
        },
        "planned_at": at.isoformat(),
        "planned_by": "simulator",
    }
    world.at(at, ("maintenance-windows", cid, window))
    for k in range(25):  # the work and an hour after it
        when = start + timedelta(minutes=5 * k + 1)
        world.at(when, _cell_event(p, rng, world, c, f"x{n}-{k}", when))


Inject = Callable[[Population, random.Random, World, int, datetime], None]
INJECT: dict[str, Inject] = {
    "fraud_burst": _fraud_burst,
    "cell_outage": _cell_outage,
    "slow_line": _slow_line,
    "data_exhaustion": _data_exhaustion,
    "area_outage": _area_outage,
    "planned_work": _planned_work,
}


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
    if travelling(i, at):
        value["roaming_country"] = trip_country(i, at)
    return "usage-events", sid, value


def travelling(i: int, at: datetime) -> bool:
    """One subscriber in 40 travels, every third day: roaming is theirs."""
    return i % 40 == 7 and at.day % 3 == 0


def trip_country(i: int, at: datetime) -> str:
    return ("JP", "FR", "TH", "US")[(i + at.day) % 4]


def _traveller(p: Population, rng: random.Random, at: datetime) -> int | None:
    """A subscriber travelling on `at`'s day, if the population has one."""
    count = (p.subscribers - 7 + 39) // 40  # i = 7, 47, 87, ...
    if count <= 0 or not travelling(7, at):  # they all travel on the same days
        return None
    return 7 + 40 * rng.randrange(count)


def _billing(p: Population, rng: random.Random, n: int, at: datetime) -> Record:
    i = rng.randrange(p.subscribers)
    roll = rng.random()
    traveller = _traveller(p, rng, at) if roll > 0.95 else None
    if traveller is not None:  # roaming spend of the few who travel: 150-300 CNY a day
        i = traveller
    sid = p.subscriber_id(i)
    if traveller is not None:
        kind, amount = "roaming", round(rng.uniform(15, 90), 2)
    elif roll < 0.002:  # a fraud burst
        kind, amount = "premium_sms", round(rng.uniform(300, 1500), 2)
    elif roll < 0.02:
        kind, amount = "value_added_service", float(rng.choice((6, 10, 15)))
    elif roll < 0.12:
        kind, amount = "top_up", float(rng.choice((30, 50, 100)))
    else:
        kind = rng.choice(("subscription", "international_call", "other"))
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


def _cell(p: Population, rng: random.Random, world: World, n: int, at: datetime) -> Record:
    return _cell_event(p, rng, world, rng.randrange(p.cells), f"n{n}", at)


def _cell_event(
    p: Population, rng: random.Random, world: World, c: int, event_id: str, at: datetime
) -> Record:
    cid = p.cell_id(c)
    out = world.outage_until.get(c)
    degraded = (c * 31 + at.hour) % 97 == 0  # each cell has a bad hour now and then
    work = world.work.get(c)
    down = (out is not None and at <= out) or (work is not None and work[0] <= at < work[1])
    value = {
        "event_id": event_id,
        "event_time": at.isoformat(),
        "scope": "cell",
        "cell_id": cid,
        "region": f"R{c % 16}",
        "latency_ms": round(rng.uniform(20, 60) * (4 if degraded or down else 1), 1),
        "packet_loss_pct": round(
            rng.uniform(0, 0.8) + (6 if degraded else 0) + (15 if down else 0), 2
        ),
        "availability_pct": round(rng.uniform(90.0, 94.0) if down else rng.uniform(99.5, 100.0), 2),
    }
    return "network-quality-events", cid, value


def _line(p: Population, rng: random.Random, world: World, n: int, at: datetime) -> Record:
    return _line_event(p, rng, world, rng.randrange(0, p.subscribers, 3), f"l{n}", at)


def _line_event(
    p: Population, rng: random.Random, world: World, i: int, event_id: str, at: datetime
) -> Record:
    line = f"L{i:08d}"
    subscribed = (100.0, 300.0, 1000.0)[i % 3 if i % 3 else (i // 3) % 3]
    until = world.slow_until.get(i)
    if until is not None and at <= until:
        measured = subscribed * rng.uniform(0.1, 0.2)
    elif (i // 3) % 50 == 0:  # lines that are always slow
        measured = subscribed * rng.uniform(0.1, 0.4)
    else:
        measured = subscribed * rng.uniform(0.7, 1.0)
    value = {
        "event_id": event_id,
        "event_time": at.isoformat(),
        "scope": "broadband_line",
        "line_id": line,
        "area_id": p.area_id(i),
        "subscriber_id": p.subscriber_id(i),
        "measured_down_mbps": round(measured, 1),
        "subscribed_down_mbps": subscribed,
    }
    return "network-quality-events", line, value


def jsonl(record: Record) -> str:
    topic, key, value = record
    return json.dumps({"topic": topic, "key": key, "value": value}, separators=(",", ":"))
