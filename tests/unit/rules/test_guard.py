"""Guard rails: a budget of drastic work per rule, split over partitions;
work past it is held with its customer notices until an operator decides."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

from rules.guard import Budget
from rules.loader import load_rule_set
from rules.model import GuardSpec
from rules.session import Session
from schemas import BillingEvent, CustomerNotice, InterventionTask, TaskStatus
from stream.settings import DEFAULT_RULES_DIR

RULES = load_rule_set([DEFAULT_RULES_DIR]).rule_set
assert RULES is not None
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def test_each_partition_spends_its_share_per_window_and_a_new_window_starts_afresh() -> None:
    guard = GuardSpec(max=50, per="1h")
    budget = Budget(partitions=12)
    t = T0.timestamp()
    assert budget.share(guard) == 5  # ceil(50 / 12)
    assert [budget.take("r/t", guard, t + i) for i in range(6)] == [True] * 5 + [False]
    assert budget.take("r/t", guard, t + 3600)  # the next hour
    late = [budget.take("r/t", guard, t + 10) for _ in range(5)]
    assert late == [True] * 4 + [False]  # late events spend the current window's share
    assert budget.take("other/t", guard, t)  # budgets are per rule and tier


def charge(i: int, at: datetime) -> BillingEvent:
    return BillingEvent.model_validate(
        {
            "event_id": f"b{i}",
            "subscriber_id": f"s{i:05d}",
            "event_time": at.isoformat(),
            "charge_type": "premium_sms",
            "amount": 1500,
        },
        strict=False,
    )


def test_a_fraud_storm_over_every_partition_opens_at_most_the_budget_plus_slack() -> None:
    partitions = 12
    session = Session(
        RULES,
        created_at=lambda e: e.event_time,
        partition_of=lambda key: zlib.crc32(key.encode()) % partitions,
        partitions=partitions,
    )
    outputs: list[CustomerNotice | InterventionTask] = []
    for i in range(10_000):  # 10,000 charges in 10 minutes, one per subscriber
        outputs += session.process(charge(i, T0 + timedelta(seconds=i * 0.06))).outputs
    tasks = [o for o in outputs if isinstance(o, InterventionTask)]
    opened = [t for t in tasks if t.status is TaskStatus.OPEN]
    held = [t for t in tasks if t.status is TaskStatus.HELD]
    slack = partitions * -(-50 // partitions) - 50
    assert len(opened) <= 50 + slack == 60
    assert len(opened) == 60  # every partition saw enough of the storm to spend its share
    assert len(held) == 10_000 - len(opened)
    assert all(t.due_by is None and t.action.value == "suspend_service" for t in held)
    told = {n.subscriber_id for n in outputs if isinstance(n, CustomerNotice)}
    assert told == {t.target.id for t in opened}  # held work's customers are not told yet
