"""The default ruleset end to end through the pure engine and notice policy
(no broker): each rule's tiers, re-arming, clearing, fan-out and the policy."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from rules.engine import evaluate
from rules.loader import load_rule_set
from rules.session import Session
from rules.tasks import FeedbackReason, Transition
from schemas import (
    BillingEvent,
    CustomerNotice,
    CustomerProfile,
    FeedbackStatus,
    InterventionTask,
    NetworkQualityEvent,
    TaskUpdate,
    UsageEvent,
)
from stream.settings import DEFAULT_RULES_DIR

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=CST)
RULES = load_rule_set([DEFAULT_RULES_DIR]).rule_set
assert RULES is not None


def profile(sid: str = "s1", **kw: Any) -> CustomerProfile:
    return CustomerProfile.model_validate_json(json.dumps({"subscriber_id": sid, **kw}))


def usage(
    i: int,
    used: float | None,
    *,
    minutes: float = 0,
    cycle: str = "2026-11",
    country: str | None = None,
    volume: float = 10,
) -> UsageEvent:
    return UsageEvent.model_validate_json(
        json.dumps(
            {
                "event_id": f"u{i}",
                "subscriber_id": "s1",
                "service": "data",
                "volume": volume,
                "event_time": (T0 + timedelta(minutes=minutes or i)).isoformat(),
                "cycle_id": cycle,
                "cycle_used": used,
                "roaming_country": country,
            }
        )
    )


def bill(
    i: int,
    amount: float,
    *,
    minutes: float = 0,
    kind: str = "other",
    balance: float | None = None,
    sid: str = "s1",
) -> BillingEvent:
    return BillingEvent.model_validate_json(
        json.dumps(
            {
                "event_id": f"b{i}",
                "subscriber_id": sid,
                "charge_type": kind,
                "amount": amount,
                "balance": balance,
                "event_time": (T0 + timedelta(minutes=minutes or i)).isoformat(),
            }
        )
    )


def cell(i: int, minutes: float, loss: float, availability: float = 99.9) -> NetworkQualityEvent:
    return NetworkQualityEvent.model_validate_json(
        json.dumps(
            {
                "event_id": f"n{i}",
                "scope": "cell",
                "cell_id": "c1",
                "packet_loss_pct": loss,
                "latency_ms": 30,
                "availability_pct": availability,
                "event_time": (T0 + timedelta(minutes=minutes)).isoformat(),
            }
        )
    )


def line(i: int, hours: float, measured: float) -> NetworkQualityEvent:
    return NetworkQualityEvent.model_validate_json(
        json.dumps(
            {
                "event_id": f"l{i}",
                "scope": "broadband_line",
                "line_id": "L1",
                "subscriber_id": "s1",
                "measured_down_mbps": measured,
                "subscribed_down_mbps": 100,
                "event_time": (T0 + timedelta(hours=hours)).isoformat(),
            }
        )
    )


def run(session: Session, events: list[Any]) -> list[tuple[str, str, str]]:
    """(kind, rule/tier, subscriber-or-status) for every output, in order."""
    out = []
    for ev in events:
        for o in session.process(ev).outputs:
            if isinstance(o, CustomerNotice):
                out.append(("notice", f"{o.rule_id}/{o.tier}", o.subscriber_id))
            else:
                assert isinstance(o, InterventionTask)
                out.append(("task", f"{o.rule_id}/{o.tier}", f"{o.change.value}:{o.status.value}"))
    return out


def released(session: Session, now: datetime) -> list[tuple[str, str, str]]:
    """Notices held (group wait, quiet hours) and due by `now`, as `run` lists them."""
    return [
        ("notice", f"{o.rule_id}/{o.tier}", o.subscriber_id)
        for o in session.tick(now).outputs
        if isinstance(o, CustomerNotice)
    ]


@pytest.fixture
def session() -> Session:
    s = Session(RULES)
    s.put_profile(
        "s1",
        profile(
            plan={"data_quota_mb": 1000},
            prepaid=True,
            quiet_hours={"start": "23:00", "end": "07:00"},
        ),
    )
    return s


def test_data_usage_tiers_fire_once_per_cycle_and_highest_only(session: Session) -> None:
    got = run(
        session,
        [
            # a quarter of an hour apart: longer than the 80% and 90% notices'
            # group wait, so each goes before the next reading
            usage(1, 700, minutes=15),
            usage(2, 810, minutes=30),
            usage(3, 850, minutes=45),
            usage(4, 1010, minutes=60),
            usage(5, 1020, minutes=75),
            usage(6, 820, minutes=90, cycle="2026-12"),
        ],
    ) + released(session, T0 + timedelta(hours=2))
    assert got == [
        ("notice", "data-usage/80pct", "s1"),
        ("notice", "data-usage/100pct", "s1"),
        ("notice", "data-usage/80pct", "s1"),
    ]


def test_data_usage_accumulates_volume_and_uses_the_plan_quota(session: Session) -> None:
    events = [usage(i, None, volume=100, minutes=15 * i) for i in range(1, 10)]
    assert run(session, events) + released(session, T0 + timedelta(hours=3)) == [
        ("notice", "data-usage/80pct", "s1"),
        ("notice", "data-usage/90pct", "s1"),
    ]


def test_no_quota_means_unlimited(session: Session) -> None:
    session.put_profile("s1", profile())
    assert run(session, [usage(1, 5000)]) == []


def test_prepaid_balance_rearms_only_after_recovery_to_30(session: Session) -> None:
    got = run(
        session,
        [
            bill(1, 1, balance=15),
            bill(2, 1, balance=25),
            bill(3, 1, balance=15),
            bill(4, 0, kind="top_up", balance=35),
            bill(5, 1, balance=12),
            bill(6, 1, balance=3),
        ],
    )
    assert got == [
        ("notice", "prepaid-balance/low", "s1"),
        ("notice", "prepaid-balance/low", "s1"),
        ("notice", "prepaid-balance/very-low", "s1"),
    ]


def test_abnormal_charges_extreme_fires_alone_with_a_fraud_task(session: Session) -> None:
    got = run(session, [bill(1, 1200)])
    assert ("task", "abnormal-charges/extreme", "opened:open") in got
    assert not [g for g in got if g[1] in ("abnormal-charges/high", "abnormal-charges/unusual")]


def test_abnormal_charges_baseline_suppresses_usual_big_spenders(session: Session) -> None:
    # 8 days of 150/h history makes 150 in an hour normal: no "unusual"
    history = [bill(i, 150, minutes=-60 * 24 * 8 + 60 * i) for i in range(1, 24 * 8)]
    run(session, history)
    assert run(session, [bill(9999, 150, minutes=30)]) == []


def test_roaming_welcome_once_per_country_per_day(session: Session) -> None:
    got = run(
        session,
        [
            # 17:00 at home, 10:00 in Paris: not quiet where the subscriber is
            usage(1, 1, minutes=421, country="FR"),
            usage(2, 1, minutes=422, country="FR"),
            usage(3, 1, minutes=423),
            usage(4, 1, minutes=424, country="FR"),
            usage(5, 1, minutes=425, country="DE"),
        ],
    )
    assert got == [
        ("notice", "roaming-welcome/welcome", "s1"),
        ("notice", "roaming-welcome/welcome", "s1"),
    ]


def test_red_cell_tells_home_subscribers_and_clears_without_closing_the_repair(
    session: Session,
) -> None:
    session.put_profile("a", profile("a", home_cell_id="c1"))
    session.put_profile("b", profile("b", home_cell_id="c1"))
    session.put_profile("z", profile("z", home_cell_id="c9"))
    losses = [0.5, 6, 6, 6, 0.5, 0.5, 0.5]
    events = [cell(i, 5 * i, loss) for i, loss in enumerate(losses)]
    got = run(session, events)
    assert got == [
        ("task", "cell-degradation/red", "opened:open"),
        ("notice", "cell-degradation/red", "a"),
        ("notice", "cell-degradation/red", "b"),
        ("task", "cell-degradation/red", "condition_cleared:open"),
        ("notice", "cell-degradation/red:resolved", "a"),
        ("notice", "cell-degradation/red:resolved", "b"),
    ]


def test_broadband_repair_comes_before_any_compensation(session: Session) -> None:
    """Readings hours apart: the repair is dispatched at the third; the
    compensation only follows its missed promise, never replaces it."""
    slow = [line(i, 3 * i, 20) for i in range(3)] + [line(10, 25, 20)]
    got = run(session, slow)
    assert got == [
        ("task", "broadband-slow/slow", "opened:open"),
        ("notice", "broadband-slow/slow", "s1"),
        ("task", "broadband-slow/slow", "escalated:open"),
        ("task", "broadband-slow/slow", "opened:open"),  # the compensation
        ("notice", "broadband-slow/slow:escalated", "s1"),
    ]
    cleared = run(session, [line(11, 26, 90), line(12, 27, 90)])
    assert ("task", "broadband-slow/slow", "condition_cleared:open") in cleared


def _report(session: Session, task: InterventionTask, status: str, hours: float) -> Any:
    return session.task_update(
        TaskUpdate(
            task_id=task.task_id,
            status=FeedbackStatus(status),
            at=T0 + timedelta(hours=hours),
            target=task.target,
            outcome="repaired" if status == "done" else None,
            reported_by="field-team",
        )
    )


def _slow_line_with_repair(session: Session) -> InterventionTask:
    """Three slow readings: the repair task, returned."""
    opened = [
        o
        for ev in [line(i, i / 6, 20) for i in range(3)]
        for o in session.process(ev).outputs
        if isinstance(o, InterventionTask)
    ]
    assert [t.change.value for t in opened] == ["opened"]
    return opened[0]


def test_a_repair_reported_done_on_a_line_still_slow_opens_a_repeat_repair(
    session: Session,
) -> None:
    """The work system says "repaired", the line says otherwise: three slow
    readings after the report open a new repair, linked to the one reported
    done, and the customer is told again; the first task stays closed."""
    first = _slow_line_with_repair(session)
    done = _report(session, first, "done", 1)
    assert Transition.CLOSED_BY_FEEDBACK in {t for _, t in done.transitions}
    checks = [session.process(line(10 + i, 1 + (i + 1) / 6, 20)) for i in range(3)]
    assert all(not c.outputs for c in checks[:2])  # two slow readings: still checking
    tasks = [o for o in checks[2].outputs if isinstance(o, InterventionTask)]
    notices = [o for o in checks[2].outputs if isinstance(o, CustomerNotice)]
    assert [(t.change.value, t.parent_task_id, t.action.value) for t in tasks] == [
        ("opened", first.task_id, "dispatch_repair")
    ]
    assert tasks[0].task_id != first.task_id
    assert tasks[0].note is not None and first.task_id in tasks[0].note
    assert [(n.tier, n.subscriber_id) for n in notices] == [("slow", "s1")]
    assert notices[0].facts["repeat_of"] == first.task_id
    assert "after our repair" in notices[0].message or "维修后" in notices[0].message
    assert ("broadband-slow", Transition.REPEATED) in checks[2].transitions
    late = _report(session, first, "done", 2)  # the first task is closed for good
    assert late.rejected is FeedbackReason.TASK_CLOSED


def test_a_repair_confirmed_by_the_line_sends_no_second_all_clear(session: Session) -> None:
    """Reported repaired, then the speed is back: the customer heard
    "repaired"; "speed restored" would be the same news twice."""
    first = _slow_line_with_repair(session)
    done = _report(session, first, "done", 1)
    assert [o.tier for o in done.outputs if isinstance(o, CustomerNotice)] == ["slow:done"]
    back = [session.process(line(20 + i, 1.5 + i / 6, 95)) for i in range(2)]
    assert [o for b in back for o in b.outputs] == []
    assert [(d.rule_id, d.reason.value) for b in back for d in b.decisions] == [
        ("broadband-slow", "outcome_told")
    ]
    # the next slow spell is a new problem: a new repair, not a repeat
    again = [
        o
        for ev in [line(30 + i, 3 + i / 6, 20) for i in range(3)]
        for o in session.process(ev).outputs
        if isinstance(o, InterventionTask)
    ]
    assert [(t.change.value, t.parent_task_id) for t in again] == [("opened", None)]


def test_work_cancelled_on_a_line_still_slow_is_not_verified(session: Session) -> None:
    """Only work reported done is checked: a cancelled repair leaves the
    episode as it was, with no repeat task however slow the line stays."""
    first = _slow_line_with_repair(session)
    _report(session, first, "cancelled", 1)
    later = [
        o for i in range(6) for o in session.process(line(40 + i, 1 + (i + 1) / 6, 20)).outputs
    ]
    assert [o for o in later if isinstance(o, InterventionTask)] == []


def test_engine_is_pure_and_ids_are_deterministic() -> None:
    state: dict[str, Any] = {}
    state1, r1 = evaluate(state, bill(1, 1200), profile(), RULES)
    snapshot = copy.deepcopy(state1)
    again, r2 = evaluate(state, bill(1, 1200), profile(), RULES)
    assert state == {} and again == state1
    assert [t.task_id for t in r1.tasks] == [t.task_id for t in r2.tasks]
    evaluate(state1, bill(2, 5), profile(), RULES)
    assert state1 == snapshot
    # the same event id twice is applied once
    _, dup = evaluate(state1, bill(1, 1200), profile(), RULES)
    assert dup.tasks == [] and dup.decisions[0].reason.value == "duplicate_event"


def test_rules_with_nothing_to_remember_leave_no_state_behind() -> None:
    assert RULES is not None
    planned = profile(plan={"data_quota_mb": 1000})
    state, _ = evaluate(None, usage(1, 100), planned, RULES)
    assert state["rules"] == {}  # 10% of the plan: no streak, no window, no episode
    state, _ = evaluate(state, usage(2, 850), planned, RULES)
    assert set(state["rules"]) == {"data-usage"}  # 80%: the tier fired, its cycle is kept
    charges: dict[str, Any] | None = None
    for i in range(3):
        charges, _ = evaluate(charges, bill(i, 5, minutes=i + 1), profile(), RULES)
    assert charges is not None and charges["rules"] == {}  # no tier holds
    series = RULES.rule("abnormal-charges").series_id  # type: ignore[union-attr]
    assert [len(charges["series"][series]["win"])] == [3]  # its 1 h window, shared by series


def test_dropping_fresh_rule_state_changes_no_output() -> None:
    """A long mixed stream gives the same outputs as when every rule's state
    was kept: a missing state and a fresh one mean the same thing."""
    assert RULES is not None
    events: list[Any] = []
    for i in range(60):
        events.append(usage(i, 20.0 * i, minutes=i * 7, country="JP" if i % 13 == 0 else None))
        events.append(bill(i, 3 + (i % 7) * 40, minutes=i * 7 + 1, balance=100 - i))
    planned = profile(plan={"data_quota_mb": 1000}, prepaid=True)
    kept: dict[str, Any] | None = None
    dropped: dict[str, Any] | None = None
    got_kept, got_dropped = [], []
    for event in events:
        kept, r1 = evaluate(_with_fresh_states(kept), event, planned, RULES)
        dropped, r2 = evaluate(dropped, event, planned, RULES)
        got_kept.append(
            [t.model_dump_json() for t in r1.tasks] + [i.model_dump_json() for i in r1.intents]
        )
        got_dropped.append(
            [t.model_dump_json() for t in r2.tasks] + [i.model_dump_json() for i in r2.intents]
        )
    assert got_kept == got_dropped
    assert sum(map(len, got_kept)) >= 5  # the stream did fire rules


def _with_fresh_states(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """The state with an explicit fresh entry for every rule that has none."""
    if state is None:
        return None
    assert RULES is not None
    rules = dict(state.get("rules", {}))
    for rule in RULES.rules:
        rules.setdefault(rule.id, {"shape": rule.state_shape, "streak": {}})
    return {**state, "rules": rules}
