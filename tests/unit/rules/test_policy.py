"""The notice policy as a case table: channel, quiet hours, fatigue, opt-out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from rules.loader import load_rule_set
from rules.policy import PolicyReason, deliver, release
from schemas import CustomerProfile, NoticeIntent, Severity
from stream.settings import DEFAULT_RULES_DIR

RULES = load_rule_set([DEFAULT_RULES_DIR]).rule_set
assert RULES is not None
CST = timezone(timedelta(hours=8))


def intent(
    hour: int,
    tier: str = "low",
    severity: Severity = Severity.WARNING,
    det: str = "d1",
    minute: int = 0,
) -> NoticeIntent:
    return NoticeIntent(
        detection_id=det,
        subscriber_id="s1",
        rule_id="prepaid-balance",
        rule_version="v",
        tier=tier,
        severity=severity,
        category="balance",
        facts={"balance": 12.5},
        source_event_ids=("e",),
        event_time=datetime(2026, 11, 20, hour, minute, tzinfo=CST),
    )


CRITICAL_23 = intent(23, "very-low", Severity.CRITICAL)
CRITICAL_12 = intent(12, "very-low", Severity.CRITICAL)


def prof(**kw: Any) -> CustomerProfile:
    return CustomerProfile.model_validate_json(json.dumps({"subscriber_id": "s1", **kw}))


@pytest.mark.parametrize(
    ("profile", "notice", "channel", "deliver_after", "reasons"),
    [
        (prof(language="en"), intent(12), "sms", None, ()),
        (
            prof(preferred_channel="app_push"),
            intent(23),
            "app_push",
            datetime(2026, 11, 21, 8, 0, tzinfo=CST),
            (PolicyReason.QUIET_HOURS_DEFERRED,),
        ),
        (prof(), intent(23, "very-low", Severity.CRITICAL), "sms", None, ()),
        (prof(segment="elderly", language="en"), intent(12), "voice_call", None, ()),
        # critical inside quiet hours: at once, but nobody is rung (the tier's default, `text`)
        (prof(segment="elderly"), CRITICAL_23, "sms", None, ()),
        (prof(preferred_channel="voice_call"), CRITICAL_23, "sms", None, ()),
        (prof(segment="elderly", preferred_channel="email"), CRITICAL_23, "email", None, ()),
        (prof(segment="elderly"), CRITICAL_12, "voice_call", None, ()),  # daytime: elderly channel
        (
            prof(timezone="Europe/London", quiet_hours={"start": "22:00", "end": "08:00"}),
            intent(7),
            "sms",
            datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
            (PolicyReason.QUIET_HOURS_DEFERRED,),
        ),  # 07:00 CST is 23:00 London: held until 08:00 London
    ],
)
def test_channel_and_quiet_hours(
    profile: CustomerProfile,
    notice: NoticeIntent,
    channel: str,
    deliver_after: datetime | None,
    reasons: tuple[str, ...],
) -> None:
    state, d = deliver(None, profile, notice, RULES)
    assert d.reasons == reasons
    sent = d.notice
    if deliver_after is not None:  # held in the state, released when quiet hours end
        assert sent is None
        early = deliver_after - timedelta(minutes=1)
        assert release(state, profile, early, RULES)[1] == []
        state, released, _, _ = release(state, profile, deliver_after, RULES)
        assert len(released) == 1 and "held" not in state
        sent = released[0]
    assert sent is not None
    assert sent.channel == channel
    assert sent.deliver_after == deliver_after


def outage(hour: int, det: str, **kw: Any) -> NoticeIntent:
    """The red-cell notice (it has a resolution text) for s1."""
    return NoticeIntent.model_validate(
        {
            **intent(hour, det=det).model_dump(),
            "rule_id": "cell-degradation",
            "tier": "red",
            "category": "network",
            "severity": "major",
            **kw,
        }
    )


def test_a_held_notice_resolved_before_quiet_hours_end_is_dropped_with_its_resolution() -> None:
    opening = outage(23, "d9")
    state, held = deliver(None, prof(), opening, RULES)
    assert held.reasons == (PolicyReason.QUIET_HOURS_DEFERRED,)
    resolution = outage(23, "r9", part="resolved", opening_id="d9")
    state, dropped = deliver(state, prof(), resolution, RULES)
    assert dropped.notice is None and dropped.reasons == (PolicyReason.SUPERSEDED,)
    assert [d.detection_id for d in dropped.dropped] == ["d9"]
    assert release(state, prof(), datetime(2026, 11, 21, 9, 0, tzinfo=CST), RULES)[1] == []


def test_a_resolution_goes_only_to_subscribers_told_of_the_opening() -> None:
    resolution = outage(12, "r1", part="resolved", opening_id="d1")
    _, d = deliver(None, prof(), resolution, RULES)
    assert d.notice is None and d.reasons == (PolicyReason.NOT_NOTIFIED,)
    told, opened = deliver(None, prof(), outage(11, "d1"), RULES)
    _, resolved = deliver(told, prof(), resolution, RULES)
    assert opened.notice is not None and resolved.notice is not None
    assert resolved.notice.tier == "red:resolved" and resolved.notice.severity == "info"


def test_elderly_get_simple_wording_and_language_follows_profile() -> None:
    _, d = deliver(None, prof(segment="elderly", language="en"), intent(12), RULES)
    assert (
        d.notice is not None
        and d.notice.message == "Your phone balance is low. Please top up soon."
    )
    assert d.notice.channel == "voice_call" and d.notice.suggested_action is None  # no "reply"
    _, z = deliver(None, prof(), intent(12), RULES)
    assert z.notice is not None and "12.5" in z.notice.message and z.notice.language == "zh-CN"


def test_fatigue_cap_three_per_rolling_day_but_critical_always_goes() -> None:
    state: dict[str, Any] | None = None
    sent = []
    for i in range(5):
        state, d = deliver(state, prof(), intent(10 + i, det=f"d{i}"), RULES)
        sent.append(d.notice is not None or d.reasons)
    assert sent[:3] == [True, True, True] and sent[3] == (PolicyReason.FATIGUE_CAP,)
    _, crit = deliver(state, prof(), intent(16, "very-low", Severity.CRITICAL, det="c"), RULES)
    assert crit.notice is not None
    _, next_day = deliver(
        state,
        prof(),
        NoticeIntent.model_validate(
            {
                **intent(11, det="n").model_dump(),
                "event_time": datetime(2026, 11, 21, 11, 0, tzinfo=CST),
            }
        ),
        RULES,
    )
    assert next_day.notice is not None


def test_what_a_subscriber_is_owed_is_never_capped_and_not_counted() -> None:
    """Three warnings fill the day's cap; the repair's apology and its
    outcome still go ("your broadband was repaired" closes what they were
    told), and they do not count against the cap."""
    state: dict[str, Any] | None = None
    for i in range(3):
        state, d = deliver(state, prof(language="en"), intent(10 + i, det=f"w{i}"), RULES)
        assert d.notice is not None
    owed = []
    for part, hour in (("escalated", 14), ("done", 15)):
        state, d = deliver(
            state,
            prof(language="en"),
            NoticeIntent(
                detection_id=f"task-notice-{part}",
                subscriber_id="s1",
                rule_id="broadband-slow",
                rule_version="v",
                tier="slow",
                severity=Severity.MAJOR,
                category="broadband",
                part=part,
                opening_id="slow-1",
                facts={"speed_ratio": 0.2, "key": "L1"},
                source_event_ids=("e",),
                event_time=datetime(2026, 11, 20, hour, 0, tzinfo=CST),
            ),
            RULES,
        )
        owed.append((d.notice.title if d.notice else None, d.reasons))
    assert owed == [("Sorry for the delay", ()), ("Your broadband was repaired", ())]
    assert state is not None and len(state["recent"]) == 3  # the owed ones are not counted


def test_redelivered_detection_yields_the_same_notice_not_a_fatigue_hit() -> None:
    state, first = deliver(None, prof(), intent(10), RULES)
    for _ in range(4):
        state, again = deliver(state, prof(), intent(10), RULES)
        assert again.notice is not None and first.notice is not None
        assert again.notice.notice_id == first.notice.notice_id


def test_opt_out_suppresses_non_critical_only() -> None:
    p = prof(opt_out=["balance"])
    _, d = deliver(None, p, intent(12), RULES)
    assert d.notice is None and d.reasons == (PolicyReason.OPT_OUT,)
    _, c = deliver(None, p, intent(12, "very-low", Severity.CRITICAL), RULES)
    assert c.notice is not None


def test_the_cap_judges_a_late_notice_by_the_notices_before_it_in_event_time() -> None:
    """Three notices at 10, 11, 12 h, then one at 40 h, then a late one at
    13 h: it is capped (three before it in 24 h), as it would have been in
    order; the one at 40 h did not thin the memory it is judged against."""
    state: dict[str, Any] | None = None
    for i, hour in enumerate((10, 11, 12)):
        state, d = deliver(state, prof(), intent(hour, det=f"d{i}"), RULES)
        assert d.notice is not None
    later = NoticeIntent.model_validate(
        {
            **intent(10, det="later").model_dump(),
            "event_time": datetime(2026, 11, 21, 16, tzinfo=CST),
        }
    )
    state, d = deliver(state, prof(), later, RULES)
    assert d.notice is not None
    state, late = deliver(state, prof(), intent(13, det="late"), RULES)
    assert late.notice is None and late.reasons == (PolicyReason.FATIGUE_CAP,)
    state, again = deliver(state, prof(), intent(13, det="late"), RULES)  # redelivered
    assert again.notice is None and again.reasons == (PolicyReason.FATIGUE_CAP,)


def test_of_two_held_openings_of_a_tier_only_the_latest_is_sent() -> None:
    """Two 'low balance' episodes in one night: at 08:00 the subscriber gets
    the latest balance once, not both."""
    state, first = deliver(None, prof(), intent(23, det="n1"), RULES)
    late = NoticeIntent.model_validate(
        {
            **intent(23, det="n2").model_dump(),
            "facts": {"balance": 12.0},
            "event_time": datetime(2026, 11, 21, 3, 0, tzinfo=CST),
        }
    )
    state, second = deliver(state, prof(), late, RULES)
    assert first.reasons == second.reasons == (PolicyReason.QUIET_HOURS_DEFERRED,)
    state, sent, _, superseded = release(
        state, prof(), datetime(2026, 11, 21, 8, tzinfo=CST), RULES
    )
    assert [n.correlation_id for n in sent] == ["n2"] and "12" in sent[0].message
    assert [i.detection_id for i in superseded] == ["n1"]


def fraud(hour: int, part: str = "opening") -> NoticeIntent:
    return NoticeIntent.model_validate(
        {
            **intent(hour, "extreme", Severity.CRITICAL, det="f1").model_dump(),
            "rule_id": "abnormal-charges",
            "category": "charges",
            "facts": {"hourly": 1200.0},
            "part": part,
        }
    )


def test_a_tier_with_quiet_hours_call_rings_at_night_with_its_opening_only() -> None:
    elderly = prof(segment="elderly", language="en")
    _, opened = deliver(None, elderly, fraud(23), RULES)
    assert opened.notice is not None and opened.notice.channel == "voice_call"
    assert opened.notice.deliver_after is None
    _, done = deliver(None, elderly, fraud(23, "done"), RULES)
    assert done.notice is not None and done.notice.channel == "sms"  # news of work: by text
    _, day = deliver(None, elderly, fraud(12, "done"), RULES)
    assert day.notice is not None and day.notice.channel == "voice_call"


def test_a_critical_tier_may_hold_its_notice_for_the_morning(tmp_path: Path) -> None:
    text = (DEFAULT_RULES_DIR / "prepaid-balance.yaml").read_text(encoding="utf-8")
    held = text.replace("severity: critical\n", "severity: critical\n        quiet_hours: hold\n")
    (tmp_path / "prepaid.yaml").write_text(held, encoding="utf-8")
    rules = load_rule_set([tmp_path]).rule_set
    assert rules is not None and held != text
    state, d = deliver(None, prof(), intent(23, "very-low", Severity.CRITICAL), rules)
    assert d.notice is None and d.reasons == (PolicyReason.QUIET_HOURS_DEFERRED,)
    _, released, _, _ = release(state, prof(), datetime(2026, 11, 21, 8, 0, tzinfo=CST), rules)
    assert [n.tier for n in released] == ["very-low"]


def test_a_more_severe_opening_outranks_the_held_ones_below_it() -> None:
    state, low = deliver(None, prof(), intent(23, det="d1"), RULES)
    assert low.reasons == (PolicyReason.QUIET_HOURS_DEFERRED,)
    critical = intent(23, "very-low", Severity.CRITICAL, det="d2", minute=10)
    state, sent = deliver(state, prof(), critical, RULES)
    assert sent.notice is not None and [i.detection_id for i in sent.dropped] == ["d1"]
    assert "held" not in state and state["told"] == ["d2"]
    assert release(state, prof(), datetime(2026, 11, 21, 8, 0, tzinfo=CST), RULES)[1] == []
    # another rule's held notice is not touched
    other = outage(23, "d3")
    state, _ = deliver(None, prof(), other, RULES)
    state, sent = deliver(state, prof(), critical, RULES)
    assert sent.dropped == () and len(state["held"]) == 1


def test_an_opening_repeated_within_repeat_after_is_not_sent_again() -> None:
    """cell-degradation/red has `repeat_after: 7d`: one notice a week per
    cell, counted from when the subscriber was actually told."""

    def red(day: int, hour: int, det: str, cell: str = "c1") -> NoticeIntent:
        at = datetime(2026, 11, 20, hour, tzinfo=CST) + timedelta(days=day)
        return outage(hour, det, event_time=at, facts={"key": cell})

    state, first = deliver(None, prof(), red(0, 20, "d1"), RULES)
    assert first.notice is not None
    state, again = deliver(state, prof(), red(1, 20, "d2"), RULES)
    assert again.notice is None and again.reasons == (PolicyReason.REPEAT,)
    state, same = deliver(state, prof(), red(1, 20, "d2"), RULES)  # redelivered: same answer
    assert same.reasons == (PolicyReason.REPEAT,)
    state, other = deliver(state, prof(), red(1, 20, "d3", cell="c2"), RULES)
    assert other.notice is not None  # another cell is other news
    state, week = deliver(state, prof(), red(7, 20, "d4"), RULES)
    assert week.notice is not None


def test_a_held_opening_counts_as_told_when_it_is_released() -> None:
    night = outage(23, "d1", facts={"key": "c1"})
    state, held = deliver(None, prof(), night, RULES)
    assert held.reasons == (PolicyReason.QUIET_HOURS_DEFERRED,) and "told_at" not in state
    morning = datetime(2026, 11, 21, 8, 0, tzinfo=CST)
    state, released, _, _ = release(state, prof(), morning, RULES)
    assert len(released) == 1 and state["told_at"] == {
        "cell-degradation/red/c1": morning.timestamp()
    }
    evening = outage(20, "d2", facts={"key": "c1"}, event_time=morning + timedelta(hours=12))
    _, again = deliver(state, prof(), evening, RULES)
    assert again.reasons == (PolicyReason.REPEAT,)


def test_tiers_without_repeat_after_remember_nothing() -> None:
    state, sent = deliver(None, prof(), intent(12), RULES)
    assert sent.notice is not None and "told_at" not in state
