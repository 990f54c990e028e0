"""One input stream that makes every default rule and tier fire, for the
round-trip test: profiles first (they must be in the tables before the
events that need them), then events, in `{topic, key, value}` records as
`forewarn replay` reads them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=8)))
Rec = dict[str, Any]


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def rec(topic: str, key: str, value: dict[str, Any]) -> Rec:
    return {"topic": topic, "key": key, "value": value}


def profiles() -> list[Rec]:
    p = [
        {"subscriber_id": "8613800000001", "language": "en", "plan": {"data_quota_mb": 1000}},
        {"subscriber_id": "8613800000002", "prepaid": True},
        {"subscriber_id": "8613800000003", "segment": "elderly", "language": "en"},
        {"subscriber_id": "8613800000011", "home_cell_id": "CELL-A"},
        {"subscriber_id": "8613800000012", "home_cell_id": "CELL-A", "language": "en"},
        {"subscriber_id": "8613800000013", "home_cell_id": "CELL-B"},
    ]
    return [rec("customer-profiles", v["subscriber_id"], v) for v in p]


def usage(n: int, sid: str, minutes: float, **kw: Any) -> Rec:
    value = {
        "event_id": f"u{n}",
        "subscriber_id": sid,
        "event_time": at(minutes),
        "service": "data",
        "volume": 10,
        "cycle_id": "2026-11",
        **kw,
    }
    return rec("usage-events", sid, value)


def bill(n: int, sid: str, minutes: float, kind: str, amount: float, **kw: Any) -> Rec:
    value = {
        "event_id": f"b{n}",
        "subscriber_id": sid,
        "event_time": at(minutes),
        "charge_type": kind,
        "amount": amount,
        **kw,
    }
    return rec("billing-events", sid, value)


def cell(n: int, cid: str, minutes: float, loss: float, latency: float = 30) -> Rec:
    value = {
        "event_id": f"c{n}",
        "event_time": at(minutes),
        "scope": "cell",
        "cell_id": cid,
        "packet_loss_pct": loss,
        "latency_ms": latency,
        "availability_pct": 99.9,
    }
    return rec("network-quality-events", cid, value)


def line(n: int, hours: float, measured: float) -> Rec:
    value = {
        "event_id": f"l{n}",
        "event_time": at(hours * 60),
        "scope": "broadband_line",
        "line_id": "LINE-1",
        "subscriber_id": "8613800000004",
        "measured_down_mbps": measured,
        "subscribed_down_mbps": 100,
    }
    return rec("network-quality-events", "LINE-1", value)


def events() -> list[Rec]:
    s1, s2, s3, s5 = "8613800000001", "8613800000002", "8613800000003", "8613800000005"
    # 80%, 90%, 100% 11 min apart: each notice's 10-min group wait ends first
    out = [usage(i, s1, 11 * i - 10, cycle_used=u) for i, u in enumerate((810, 920, 1005), start=1)]
    out += [usage(10, s3, 1, cycle_used=950, cycle_quota=1000)]  # elderly: voice, at 10:11
    out += [usage(20, s1, 30, roaming_country="JP")]  # 11:30 in Tokyo: not quiet there
    # a 4th non-critical notice in 24 h for s1: capped (the lost-disk test checks it)
    out += [usage(21, s1, 40, roaming_country="KR")]
    out += [bill(i, s2, i, "other", 1, balance=b) for i, b in enumerate((15, 4), start=1)]
    out += [bill(10, s5, 1, "international_call", 150)]
    out += [bill(11, s5, 2, "international_call", 200)]
    out += [bill(12, s5, 3, "premium_sms", 700)]
    out += [
        bill(20, s3, 15, "value_added_service", 10),
        bill(21, s3, 16, "value_added_service", 10),
    ]
    losses = [0.5, 6, 6, 6, 0.5, 0.5, 0.5]
    out += [cell(i, "CELL-A", 5 * i, loss) for i, loss in enumerate(losses)]
    out += [cell(10 + i, "CELL-B", 5 * i, 3) for i in range(4)]
    out += [line(i, i, 20) for i in range(3)] + [line(10, 25, 20)]
    out += [line(11, 26, 90), line(12, 27, 90)]
    return out
