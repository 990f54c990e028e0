"""The notice policy: how a `NoticeIntent` becomes a `CustomerNotice` for one
subscriber, or is suppressed with a reason.

Stages, in order (each small, each names its reason):
  1. opt_out      — a category in the profile's `opt_out` suppresses non-critical notices
  2. fatigue_cap  — at most 3 non-critical notices per subscriber in any rolling
                    24 h of event time; critical notices are never capped
  3. channel      — the preferred channel; elderly customers get warning-or-worse
                    notices by voice call, with the simpler wording
  4. quiet_hours  — non-critical notices inside quiet hours (subscriber's
                    timezone) get `deliver_after` = end of quiet hours; never dropped
Rendering uses the profile's language. The policy's state is the `policy`
part of the subscriber's engine state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from rules.identity import notice_id
from rules.model import NoticeSpec, Text
from rules.ruleset import RuleSet
from rules.templates import Renderer
from schemas import (
    Channel,
    CustomerNotice,
    CustomerProfile,
    Language,
    NoticeIntent,
    Segment,
    Severity,
)

FATIGUE_LIMIT = 3
FATIGUE_WINDOW = 86400.0


class PolicyReason(StrEnum):
    """Why a notice was not sent now. Values are metric label values."""

    OPT_OUT = "opt_out"
    FATIGUE_CAP = "fatigue_cap"
    QUIET_HOURS_DEFERRED = "quiet_hours_deferred"  # deferred, not dropped
    UNKNOWN_RULE = "unknown_rule"


@dataclass(frozen=True)
class Delivery:
    notice: CustomerNotice | None
    reasons: tuple[PolicyReason, ...]


def _text(text: Text, language: Language) -> str:
    return text.en if language is Language.EN else text.zh_cn


def _opt_out(intent: NoticeIntent, profile: CustomerProfile) -> PolicyReason | None:
    if intent.severity is not Severity.CRITICAL and intent.category in profile.opt_out:
        return PolicyReason.OPT_OUT
    return None


def _fatigue(intent: NoticeIntent, recent: list[list[Any]]) -> PolicyReason | None:
    if intent.severity is Severity.CRITICAL:
        return None
    t = intent.event_time.timestamp()
    window = [r for r in recent if t - FATIGUE_WINDOW < r[0] <= t]
    return PolicyReason.FATIGUE_CAP if len(window) >= FATIGUE_LIMIT else None


def _channel(intent: NoticeIntent, profile: CustomerProfile) -> tuple[Channel, bool]:
    """(channel, use the simpler wording)."""
    if profile.segment is Segment.ELDERLY and intent.severity.rank >= Severity.WARNING.rank:
        return Channel.VOICE_CALL, True
    return profile.preferred_channel, False


def quiet_hours_end(event_time: datetime, profile: CustomerProfile) -> datetime | None:
    """The end of the quiet period `event_time` falls in, or None."""
    tz = ZoneInfo(profile.timezone)
    local = event_time.astimezone(tz)
    start, end = profile.quiet_hours.minutes()
    if start == end:
        return None
    minute = local.hour * 60 + local.minute
    inside = (start <= minute < end) if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    day = local.date() if (start < end or minute < end) else local.date() + timedelta(days=1)
    naive = datetime(day.year, day.month, day.day, end // 60, end % 60)
    return naive.replace(tzinfo=tz)


def deliver(
    state: dict[str, Any] | None,
    profile: CustomerProfile,
    intent: NoticeIntent,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    renderer: Renderer | None = None,
) -> tuple[dict[str, Any], Delivery]:
    """Apply the policy for `profile.subscriber_id`; pure, returns new state."""
    policy: dict[str, Any] = dict(state or {})
    recent: list[list[Any]] = list(policy.get("recent", []))
    rule = rules.rule(intent.rule_id)
    tier = next((t for t in rule.tiers if t.name == intent.tier), None) if rule else None
    if tier is None or tier.notice is None:
        return policy, Delivery(None, (PolicyReason.UNKNOWN_RULE,))
    subscriber = profile.subscriber_id
    nid = notice_id(intent.detection_id, subscriber)
    if any(r[1] == nid for r in recent):
        # a redelivered detection: same id again, already counted
        reasons: list[PolicyReason] = []
    else:
        for stage in (_opt_out(intent, profile), _fatigue(intent, recent)):
            if stage is not None:
                return policy, Delivery(None, (stage,))
        reasons = []
    channel, simple = _channel(intent, profile)
    deliver_after = None
    if intent.severity is not Severity.CRITICAL:
        deliver_after = quiet_hours_end(intent.event_time, profile)
        if deliver_after is not None:
            reasons.append(PolicyReason.QUIET_HOURS_DEFERRED)
    notice = _render(
        intent,
        tier.notice,
        profile,
        channel,
        simple,
        nid,
        deliver_after,
        created_at or intent.event_time,
        renderer or _RENDERER,
    )
    if intent.severity is not Severity.CRITICAL and not any(r[1] == nid for r in recent):
        t = intent.event_time.timestamp()
        recent = [r for r in recent if t - FATIGUE_WINDOW < r[0]] + [[t, nid]]
        policy["recent"] = recent[-(FATIGUE_LIMIT * 4) :]
    return policy, Delivery(notice, tuple(reasons))


def _render(
    intent: NoticeIntent,
    spec: NoticeSpec,
    profile: CustomerProfile,
    channel: Channel,
    simple: bool,
    nid: str,
    deliver_after: datetime | None,
    created_at: datetime,
    renderer: Renderer,
) -> CustomerNotice:
    lang = profile.language
    facts = intent.facts
    scope = {**facts, "rule_id": intent.rule_id, "tier": intent.tier}
    if intent.resolved and spec.resolved is not None:
        title, message = spec.resolved.title, spec.resolved.message
    else:
        title = spec.title
        message = spec.message_simple if simple and spec.message_simple else spec.message
    action = None
    if spec.suggested_action is not None and not intent.resolved:
        action = renderer.render(_text(spec.suggested_action, lang), scope)
    return CustomerNotice(
        notice_id=nid,
        correlation_id=intent.detection_id,
        subscriber_id=profile.subscriber_id,
        rule_id=intent.rule_id,
        tier=f"{intent.tier}:resolved" if intent.resolved else intent.tier,
        severity=Severity.INFO if intent.resolved else intent.severity,
        category=intent.category,
        channel=channel,
        language=lang,
        title=renderer.render(_text(title, lang), scope),
        message=renderer.render(_text(message, lang), scope),
        facts=facts,
        suggested_action=action,
        event_time=intent.event_time,
        created_at=created_at,
        deliver_after=deliver_after,
        source_event_ids=intent.source_event_ids,
        rule_version=intent.rule_version,
    )


_RENDERER = Renderer()
