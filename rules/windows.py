"""Event-time state functions for one rule and one key: sliding and tumbling
window aggregates, the key's baseline, and change tracking. Each takes the
previous state (plain JSON-compatible data) and returns the new state; none
reads a clock. Replaying old data gives the same answers as live processing.
"""

from __future__ import annotations

import bisect
from typing import Any

from rules.model import Aggregate

DAY = 86400.0


def aggregate(kind: Aggregate, values: list[float]) -> float | None:
    if kind is Aggregate.COUNT:
        return float(len(values))
    if not values:
        return None
    if kind is Aggregate.SUM:
        return float(sum(values))
    if kind is Aggregate.AVG:
        return float(sum(values)) / len(values)
    if kind is Aggregate.MIN:
        return float(min(values))
    return float(max(values))


def sliding_step(
    entries: list[list[Any]] | None, t: float, values: list[float | None], size: float
) -> list[list[Any]] | None:
    """Add a sample at t to a sliding window of `size` seconds. Returns the new
    entries, or None when the sample is older than the window (late). Entries
    are `[t, v1, v2, ...]`, sorted by time."""
    current = list(entries or [])
    newest = current[-1][0] if current else t
    horizon = max(newest, t) - size
    if t <= horizon:
        return None
    bisect.insort(current, [t, *values], key=lambda e: e[0])
    start = 0
    while start < len(current) and current[start][0] <= horizon:
        start += 1
    return current[start:]


def sliding_values(entries: list[list[Any]], index: int) -> list[float]:
    return [e[index + 1] for e in entries if e[index + 1] is not None]


def tumbling_step(
    win: dict[str, Any] | None,
    t: float,
    values: list[float | None],
    size: float,
    event_id: str,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Add a sample to aligned windows of `size`. Returns (new window state,
    closed window or None). Returns (None, None) for a late sample whose
    window already closed."""
    start = (t // size) * size
    fresh = {
        "start": start,
        "samples": [[v] if v is not None else [] for v in values],
        "ids": [event_id],
    }
    if win is None:
        return fresh, None
    if start < win["start"]:
        return None, None
    if start == win["start"]:
        samples = [
            s + ([v] if v is not None else []) for s, v in zip(win["samples"], values, strict=True)
        ]
        ids = win["ids"] if len(win["ids"]) >= 16 else [*win["ids"], event_id]
        return {"start": start, "samples": samples, "ids": ids}, None
    return fresh, win


def baseline_step(
    base: dict[str, Any] | None,
    t: float,
    value: float | None,
    per: float,
    lookback: float,
    min_history: float,
) -> tuple[dict[str, Any], float | None, float]:
    """Baseline before this sample: the average of the value per `per` over the
    `lookback` days before the current day; None while history is shorter than
    `min_history`. Returns (new state, baseline, history in days)."""
    day = int(t // DAY)
    lookback_days = max(1, int(lookback // DAY))
    state = base or {"first": day, "days": {}}
    first = min(int(state["first"]), day)
    days: dict[str, float] = dict(state["days"])
    covered = min(lookback_days, day - first)
    history_days = float(day - first) + (t % DAY) / DAY
    baseline: float | None = None
    if covered * DAY >= min_history and covered > 0:
        total = sum(v for d, v in days.items() if day - lookback_days <= int(d) < day)
        baseline = total / (covered * DAY / per)
    if value is not None:
        days[str(day)] = days.get(str(day), 0.0) + value
    days = {d: v for d, v in days.items() if int(d) >= day - lookback_days}
    return {"first": first, "days": days}, baseline, history_days
