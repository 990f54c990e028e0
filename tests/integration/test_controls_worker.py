"""Operations controls through the real broker and a real worker, against
`forewarn replay` of the same records: planned work announced ahead that
silences a red cell and lets it fire after; an access-node outage opening
one area task, one notice per subscriber, inhibiting the per-line rule and
linking a line's repair already under way; a fraud storm held at its guard
budget, with one held task released by an operator. The worker's notices
and tasks (ids, statuses, revisions) equal the replay's.

Records that cross partitions are sent in phases, each once the previous
one's effects are in, as a live feed would be spread out in time: the order
of two partitions' records is not defined in Kafka, so it is not tested."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sinks.routing import partition_of
from stream.settings import Settings
from tests.integration.conftest import WorkerProcess, metric, scrape, wait_for
from tests.integration.kafka import KafkaProbe
from tests.integration.test_round_trip import comparable, replayed

pytestmark = pytest.mark.integration

T0 = datetime.fromisoformat("2026-11-20T10:00:00+08:00")


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def same_partition(prefix: str, count: int, partitions: int) -> list[str]:
    """Ids with `prefix` whose records all land in one partition: their
    order there is their send order, in the worker as in the replay."""
    ids = (f"{prefix}{n}" for n in range(10_000))
    return [i for i in ids if partition_of(i.encode(), partitions) == 0][:count]


def profiles(cell: str, homes: list[str], lines: dict[str, str]) -> list[dict[str, Any]]:
    out = [
        {
            "topic": "customer-profiles",
            "key": s,
            "value": {"subscriber_id": s, "home_cell_id": cell},
        }
        for s in homes
    ]
    out += [
        {
            "topic": "customer-profiles",
            "key": s,
            "value": {"subscriber_id": s, "broadband_line_id": line, "language": "en"},
        }
        for line, s in lines.items()
    ]
    return out


def cell_event(cell: str, n: int, hours: float, loss: float) -> dict[str, Any]:
    value = {
        "event_id": f"{cell}-{n}",
        "event_time": at(hours),
        "scope": "cell",
        "cell_id": cell,
        "latency_ms": 30,
        "availability_pct": 99.9,
        "packet_loss_pct": loss,
    }
    return {"topic": "network-quality-events", "key": cell, "value": value}


def line_event(line: str, sub: str, area: str, n: int, hours: float, mbps: float) -> dict[str, Any]:
    value = {
        "event_id": f"{line}-{n}",
        "event_time": at(hours),
        "scope": "broadband_line",
        "line_id": line,
        "area_id": area,
        "subscriber_id": sub,
        "subscribed_down_mbps": 100,
        "measured_down_mbps": mbps,
    }
    return {"topic": "network-quality-events", "key": line, "value": value}


def charge(sid: str, n: int) -> dict[str, Any]:
    value = {
        "event_id": f"storm-{n}",
        "subscriber_id": sid,
        "event_time": at(5 + n / 3600),
        "charge_type": "premium_sms",
        "amount": 1500,
    }
    return {"topic": "billing-events", "key": sid, "value": value}


def test_worker_equals_replay_with_planned_work_an_area_outage_and_a_tripped_guard(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    p = settings.partitions
    cell, area = "CMW1", "OLT1-PON1"
    homes = same_partition("h", 2, p)
    line_ids = same_partition("AL", 8, p)
    lines = {line: f"s{line}" for line in line_ids}
    early = line_ids[0]  # slow for an hour before the node fails: its repair is under way
    window = {
        "topic": "maintenance-windows",
        "key": cell,
        "value": {
            "window_id": "mw-1",
            "target": {"type": "cell", "id": cell},
            "start": at(26),
            "end": at(28),
            "reason": "antenna replacement",
            "planned_at": at(0),
            "planned_by": "it",
        },
    }
    storm_subs = [f"f{n:03d}" for n in range(60)]
    phases: list[list[dict[str, Any]]] = [
        profiles(cell, homes, lines),
        # the cell's traffic first: its partition follows event time, not the wall clock
        [cell_event(cell, 0, 0.1, 0.2)],
        [window],
        [cell_event(cell, 1, 3, 0.2)],  # its home subscribers are told at T+2h
        [line_event(early, lines[early], area, k, 1 + k / 6, 10) for k in range(3)],
        [line_event(line, s, area, 9, 2, 10) for line, s in lines.items()],  # the node fails
        [
            line_event(line, s, area, 10 + k, 2 + (k + 1) / 6, 10)
            for k in range(2)
            for line, s in lines.items()
        ],
        [cell_event(cell, 2 + k, 26 + k / 12, 8) for k in range(1, 6)],  # red in planned work
        [cell_event(cell, 10 + k, 28 + k / 12, 8) for k in range(1, 4)],  # red after it
        [charge(s, n) for n, s in enumerate(storm_subs)],
    ]
    everything = [r for phase in phases for r in phase]
    first = replayed(everything, settings)
    held = [o for o in first if o["topic"] == "intervention-tasks" and o["status"] == "held"]
    assert held, "the storm trips the guard"
    release = {
        "topic": "task-updates",
        "key": held[0]["target"]["id"],
        "value": {
            "task_id": held[0]["task_id"],
            "status": "approved",
            "at": at(6),
            "target": held[0]["target"],
            "reported_by": "fraud-lead",
        },
    }
    expected = replayed([*everything, release], settings)
    tasks = [o for o in expected if o["topic"] == "intervention-tasks"]
    notices = [o for o in expected if o["topic"] == "customer-notices"]
    # what the run must show, before comparing with the worker
    area_tasks = [t for t in tasks if t["rule_id"] == "pon-outage"]
    assert [t["change"] for t in area_tasks if t["change"] == "opened"] == ["opened"]
    assert sorted(area_tasks[0]["affected_lines"]) == sorted(line_ids[:5])
    per_line = [t for t in tasks if t["rule_id"] == "broadband-slow"]
    assert [(t["target"]["id"], t["change"]) for t in per_line] == [
        (early, "opened"),
        (early, "linked"),
    ]
    assert per_line[1]["parent_task_id"] == area_tasks[0]["task_id"]
    told = {n["subscriber_id"] for n in notices if n["rule_id"] == "pon-outage"}
    assert told == set(lines.values())
    planned = sorted(
        (n["tier"], n["subscriber_id"]) for n in notices if n["rule_id"] == "planned-work"
    )
    assert planned == sorted(
        [("announce", h) for h in homes] + [("announce:resolved", h) for h in homes]
    )
    red = [t for t in tasks if t["rule_id"] == "cell-degradation" and t["tier"] == "red"]
    assert len(red) == 1 and red[0]["event_time"] >= at(28)
    changes = [t["change"] for t in tasks if t["rule_id"] == "abnormal-charges"]
    assert changes.count("opened") <= p * -(-50 // p)  # the budget, split over partitions
    assert changes.count("held") == len(held) and changes.count("released") == 1

    sent = 0
    for phase in [*phases, [release]]:
        for r in phase:
            kafka.send_record(r)
        kafka.flush()
        sent += len(phase)
        want = len(replayed([*everything, release][:sent], settings))
        wait_for(
            lambda want=want: outputs_so_far(kafka) >= want,
            f"the outputs of the first {sent} records",
            timeout=90,
            workers=(worker,),
        )
        time.sleep(5.5)  # a fresh look at the lag (the worker measures it every 5 s)
        wait_for(
            lambda: metric(scrape(settings), "forewarn_consumer_lag_messages") == 0,
            "internal records (area samples, marks, intents) to be processed",
            workers=(worker,),
        )

    got_tasks = kafka.read("intervention_tasks", len(tasks))
    got_notices = kafka.read("customer_notices", len(notices))
    strip = lambda o: comparable({k: v for k, v in o.items() if k not in ("topic", "key")})  # noqa: E731
    assert sorted(comparable(t) for t in got_tasks) == sorted(strip(t) for t in tasks)
    assert sorted(comparable(n) for n in got_notices) == sorted(strip(n) for n in notices)
    m = scrape(settings)
    assert metric(m, "forewarn_suppressions_total", reason="maintenance") >= 1
    assert metric(m, "forewarn_suppressions_total", reason="inhibited") >= 1
    assert metric(m, "forewarn_task_transitions_total", transition="held") == len(held)


def outputs_so_far(kafka: KafkaProbe) -> int:
    return sum(
        len(kafka.read(t, 0, timeout=0.5))
        for t in ("customer_notices", "intervention_tasks", "dead_letters")
    )


def test_planned_work_notices_go_out_within_60s_of_their_time_with_no_traffic(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings
) -> None:
    """A live window on a cell with no traffic at all: the announcement and
    the "work finished" notice fire from the worker's clock."""
    cell, home = "CLIVE", "8613900000777"
    kafka.send_record(
        {
            "topic": "customer-profiles",
            "key": home,
            "value": {
                "subscriber_id": home,
                "home_cell_id": cell,
                "language": "en",
                "quiet_hours": {"start": "00:00", "end": "00:00"},  # none: any hour will do
            },
        }
    )
    kafka.flush()
    wait_for(
        lambda: (
            metric(scrape(settings), "forewarn_events_consumed_total", source="cell_membership")
            >= 1
        ),
        "the profile's cell membership",
        workers=(worker,),
    )
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now + timedelta(seconds=20), now + timedelta(seconds=30)
    window = {
        "window_id": "mw-live",
        "target": {"type": "cell", "id": cell},
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reason": "live test",
        "announce_minutes": 0,  # told when the work starts: short notice, critical
        "planned_at": now.isoformat(),
        "planned_by": "it",
    }
    kafka.send("maintenance_windows", cell, window)
    kafka.flush()

    def planned() -> list[dict[str, Any]]:
        notices = kafka.read("customer_notices", 0, timeout=1)
        return [n for n in notices if n["rule_id"] == "planned-work"]

    wait_for(lambda: len(planned()) >= 2, "the announcement and the end", 180, (worker,))
    told, done = sorted(planned(), key=lambda n: n["event_time"])
    assert (told["tier"], done["tier"]) == ("announce", "announce:resolved")
    assert told["severity"] == "critical" and done["severity"] == "info"
    for notice, due in ((told, start), (done, end)):
        late = (datetime.fromisoformat(notice["created_at"]) - due).total_seconds()
        assert 0 <= late <= 60, (notice["tier"], late)
        print(f"{notice['tier']} sent {late:.1f}s after its time")
