"""The notice policy: how a `NoticeIntent` becomes a `CustomerNotice` for one
subscriber, or is held, or is suppressed with a reason.

Stages, in order (each small, each names its reason):
  1. text         — the tier's text for this part (opening, resolution, escalation,
                    task outcome); none defined: nothing to send (`unknown_rule`);
                    a notice's `audience_filter` over the subscriber's profile.*
                    leaves out those it does not select (`audience`)
  2. coherence    — a resolution goes only to a subscriber who was told of its
                    opening (`not_notified`); a resolution of an opening still held
                    for quiet hours drops both (`superseded`); work reported done
                    (or cancelled) while its opening is still held drops the
                    opening (`superseded`: "a technician will call within 2 h"
                    is moot once the line is repaired) and goes on alone
  3. repeat       — an opening of a tier with `repeat_after`, about a key (a cell, a line,
                    the subscriber) the subscriber was told of less than that ago
                    (`told_at`), is not sent (`repeat`); nor, then, is its resolution
  4. opt_out      — a category in the profile's `opt_out` suppresses non-critical notices
  5. fatigue_cap  — at most 3 non-critical notices per subscriber in any rolling
                    24 h of event time; critical notices and resolutions are never
                    capped (a subscriber told of a problem is told it is over)
  6. quiet_hours  — non-critical notices inside quiet hours (where the subscriber is:
                    the event's timezone or roaming country, else the profile's)
                    are held in the subscriber's state and sent when quiet hours end
                    (`release`), with `deliver_after` set to that time; a held
                    notice whose episode resolves meanwhile is dropped (`superseded`).
                    A critical notice does what its tier's `quiet_hours` says:
                    `text` (the default: at once, never by voice call), `call`
                    (at once by the usual channel; its opening only) or `hold`
  7. channel      — the preferred channel; elderly customers get warning-or-worse
                    notices by voice call, with the simpler wording (a resolution is
                    info, so it goes by the preferred channel); a notice sent by
                    text inside quiet hours goes by the preferred channel, or SMS
                    for those who prefer calls
Rendering uses the profile's language. The policy's state is the `policy`
part of the subscriber's record: `recent` (fatigue memory, in event-time
order), `capped` (notices the cap suppressed: a redelivery gets the same
decision), `told` (openings sent or held), `held` (notices waiting for the
end of quiet hours), `told_at` (when openings of tiers with `repeat_after`
were sent, by rule, tier and key). The cap's decision for a notice depends only on the
notices before it in event time, so it is the same in replay, after a
kill -9 and after a lost disk (the record comes back from the changelog).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from rules import maintenance
from rules.identity import notice_id
from rules.model import QuietHours, Text
from rules.names import profile_env
from rules.ruleset import (
    FOLLOW_UP,
    MAX_REPEAT_AFTER_S,
    REPEAT_OF,
    STILL_AFFECTED,
    RuleSet,
    Tier,
)
from rules.templates import Renderer
from schemas import (
    Channel,
    CustomerNotice,
    CustomerProfile,
    Language,
    NoticeIntent,
    NoticePart,
    Segment,
    Severity,
)

FATIGUE_LIMIT = 3
FATIGUE_WINDOW = 86400.0
TOLD_MEMORY = 64  # opening detections remembered per subscriber
FATIGUE_MEMORY = 32  # notices remembered for the cap (two windows' worth, bounded)
CAPPED_MEMORY = 32  # capped notices remembered, so a redelivery is capped again


class PolicyReason(StrEnum):
    """Why a notice was not sent now. Values are metric label values."""

    OPT_OUT = "opt_out"
    FATIGUE_CAP = "fatigue_cap"
    QUIET_HOURS_DEFERRED = "quiet_hours_deferred"  # held until quiet hours end, not dropped
    UNKNOWN_RULE = "unknown_rule"
    NOT_NOTIFIED = "not_notified"  # a resolution of an opening the subscriber never got
    AUDIENCE = "audience"  # the notice's audience_filter leaves this subscriber out
    SUPERSEDED = "superseded"  # held for quiet hours, and resolved before they ended
    REPEAT = "repeat"  # told of the same problem less than the tier's `repeat_after` ago
    GROUP_WAIT = "group_wait"  # held `group_wait` for a more severe tier, not dropped
    # an area's problem ended while the subscriber's own line was still hit: no
    # "repaired" for them (their line's own rules take over)
    STILL_AFFECTED = "still_affected"


@dataclass(init=False)
class Delivery:
    """What became of one notice intent; never changed once made (`__init__`
    written out, not frozen: native when compiled, one per intent)."""

    notice: CustomerNotice | None
    reasons: tuple[PolicyReason, ...]
    dropped: tuple[NoticeIntent, ...]  # held notices this one superseded

    def __init__(
        self,
        notice: CustomerNotice | None,
        reasons: tuple[PolicyReason, ...],
        dropped: tuple[NoticeIntent, ...] = (),
    ) -> None:
        self.notice, self.reasons, self.dropped = notice, reasons, dropped


@dataclass(init=False)
class Texts:
    """A notice's texts (as `Delivery`)."""

    title: Text
    message: Text
    simple: Text | None
    action: Text | None

    def __init__(
        self, title: Text, message: Text, simple: Text | None, action: Text | None
    ) -> None:
        self.title, self.message, self.simple, self.action = title, message, simple, action


def texts_for(
    tier: Tier, part: NoticePart, repeat: bool = False, follow_up: bool = False
) -> Texts | None:
    """The tier's texts for one part of its story, or None when it has none.
    `repeat`: an opening after work reported done did not fix the condition
    (`notice.repeated`, when the tier has it); `follow_up`: an outcome of the
    task its escalation opened (`escalate.task.outcomes`)."""
    notice, task = tier.notice, tier.task
    if part is NoticePart.OPENING:
        if notice is None:
            return None
        again = notice.repeated if repeat else None
        if again is not None:
            return Texts(again.title, again.message, again.message_simple, notice.suggested_action)
        return Texts(notice.title, notice.message, notice.message_simple, notice.suggested_action)
    if part is NoticePart.RESOLVED:
        if notice is None or notice.resolved is None:
            return None
        return Texts(notice.resolved.title, notice.resolved.message, None, None)
    if task is None:
        return None
    if part is NoticePart.ESCALATED:
        spec = task.escalate.notice if task.escalate else None
    elif follow_up:
        outcomes = task.escalate.task.outcomes if task.escalate and task.escalate.task else None
        spec = getattr(outcomes, str(part)) if outcomes else None
    else:
        spec = getattr(task.outcomes, str(part)) if task.outcomes else None
    return None if spec is None else Texts(spec.title, spec.message, spec.message_simple, None)


def texts_of(rules: RuleSet, intent: NoticeIntent) -> tuple[Tier | None, Texts | None]:
    """The intent's tier (None for built-in notices) and its texts."""
    if intent.rule_id == maintenance.PLANNED_WORK:
        found = maintenance.texts(intent.part)
        return None, Texts(found[0], found[1], found[2], None) if found else None
    tier = _tier(rules, intent)
    if tier is None:
        return None, None
    facts = intent.facts
    return tier, texts_for(tier, intent.part, REPEAT_OF in facts, FOLLOW_UP in facts)


def severity_of(intent: NoticeIntent) -> Severity:
    """A resolution is good news: info, whatever the tier's severity."""
    return Severity.INFO if intent.part is NoticePart.RESOLVED else intent.severity


def _text(text: Text, language: Language) -> str:
    return text.en if language is Language.EN else text.zh_cn


def _opt_out(intent: NoticeIntent, profile: CustomerProfile) -> PolicyReason | None:
    if intent.severity is not Severity.CRITICAL and intent.category in profile.opt_out:
        return PolicyReason.OPT_OUT
    return None


def _remember(recent: list[list[Any]], t: float, nid: str) -> list[list[Any]]:
    """The fatigue memory with a notice sent at `t`, in event-time order.
    Kept for two windows behind the newest notice (not behind this one), so
    a notice that arrives late, after newer ones, is judged against every
    notice before it in event time."""
    entries = sorted([*recent, [t, nid]], key=lambda r: (r[0], r[1]))
    newest = entries[-1][0]
    kept = [r for r in entries if newest - 2 * FATIGUE_WINDOW < r[0]]
    return kept[-FATIGUE_MEMORY:]


# What a subscriber told of a problem is owed: how it ended (a resolution, the
# work's outcome) and when its promise broke. Never capped, and not counted
# against the cap: "your broadband was repaired" is not spam however many
# notices the day brought.
_OWED = (
    NoticePart.RESOLVED,
    NoticePart.ESCALATED,
    NoticePart.DONE,
    NoticePart.FAILED,
    NoticePart.CANCELLED,
)


def _fatigue(intent: NoticeIntent, recent: list[list[Any]]) -> PolicyReason | None:
    if intent.severity is Severity.CRITICAL or intent.part in _OWED:
        return None
    if intent.category == maintenance.CATEGORY:  # owed to the customer: never capped
        return None
    t = intent.event_time.timestamp()
    window = [r for r in recent if t - FATIGUE_WINDOW < r[0] <= t]
    return PolicyReason.FATIGUE_CAP if len(window) >= FATIGUE_LIMIT else None


def _channel(intent: NoticeIntent, profile: CustomerProfile, by_text: bool) -> tuple[Channel, bool]:
    """(channel, use the simpler wording). `by_text`: inside quiet hours,
    where nobody's phone rings for it (`_night_mode`)."""
    if by_text:
        preferred = profile.preferred_channel
        return (Channel.SMS if preferred is Channel.VOICE_CALL else preferred), False
    if profile.segment is Segment.ELDERLY and severity_of(intent).rank >= Severity.WARNING.rank:
        return Channel.VOICE_CALL, True
    return profile.preferred_channel, False


def _night_mode(intent: NoticeIntent, tier: Tier | None) -> QuietHours:
    """What the notice does inside quiet hours: held below critical; a
    critical one as its tier says (built-in notices: by text). Only an
    opening may ring: escalations and outcomes of a critical tier are news
    about work under way, sent by text at night."""
    if severity_of(intent) is not Severity.CRITICAL:
        return QuietHours.HOLD
    mode = tier.quiet_hours if tier is not None else QuietHours.TEXT
    if mode is QuietHours.CALL and intent.part is not NoticePart.OPENING:
        return QuietHours.TEXT
    return mode


def quiet_hours_end(
    event_time: datetime, profile: CustomerProfile, where: str | None = None
) -> datetime | None:
    """The end of the quiet period `event_time` falls in, or None. Quiet
    hours are the profile's, in the timezone the subscriber is in (`where`,
    when the event said so: roaming) or else the profile's."""
    tz = ZoneInfo(where or profile.timezone)
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


# the work's end, or its broken promise, takes a still-held opening's place
_TAKES_OPENINGS_PLACE = (NoticePart.ESCALATED, NoticePart.DONE, NoticePart.CANCELLED)


def _coherence(
    intent: NoticeIntent, policy: dict[str, Any]
) -> tuple[PolicyReason | None, tuple[NoticeIntent, ...]]:
    """A resolution needs its opening told; if that opening is still held,
    both go (the episode ended before the subscriber could hear of it), also
    for a subscriber whose line an area left still hit. The
    work's end (done, cancelled) takes a still-held opening's place: the
    subscriber hears that the line was repaired, not, afterwards, that a
    technician is on the way; so does a missed promise's apology: nobody
    reads "a technician within 2 hours" and "we did not keep that promise"
    at the same 08:00. Returns why `intent` is not sent, if it is not, and
    the held notices it supersedes."""
    if intent.part in _TAKES_OPENINGS_PLACE:
        return None, _drop_held(policy, lambda h: h["detection_id"] == intent.opening_id)
    if intent.part is not NoticePart.RESOLVED:
        return None, ()
    dropped = _drop_held(policy, lambda h: h["detection_id"] == intent.opening_id)
    if dropped:
        return PolicyReason.SUPERSEDED, dropped
    if intent.facts.get(STILL_AFFECTED):
        return PolicyReason.STILL_AFFECTED, ()
    if intent.opening_id not in policy.get("told", []):
        return PolicyReason.NOT_NOTIFIED, ()
    return None, ()


def deliver(
    state: dict[str, Any] | None,
    profile: CustomerProfile,
    intent: NoticeIntent,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    renderer: Renderer | None = None,
) -> tuple[dict[str, Any], Delivery]:
    """Apply the policy for `profile.subscriber_id`; pure, returns new state.
    A notice inside quiet hours is held in the state (reason
    `quiet_hours_deferred`) and comes out of `release`."""
    policy: dict[str, Any] = dict(state or {})
    recent: list[list[Any]] = list(policy.get("recent", []))
    tier, texts = texts_of(rules, intent)
    if texts is None:
        return policy, Delivery(None, (PolicyReason.UNKNOWN_RULE,))
    if (
        tier is not None
        and tier.audience_filter is not None
        and not tier.audience_filter.evaluate(profile_env(profile))
    ):
        return policy, Delivery(None, (PolicyReason.AUDIENCE,))
    subscriber = profile.subscriber_id
    nid = notice_id(intent.detection_id, subscriber)
    if any(h["nid"] == nid for h in policy.get("held", [])):
        return policy, Delivery(None, ())  # a redelivered intent, already held
    if nid in policy.get("capped", []):  # redelivered: the decision already made stands
        return policy, Delivery(None, (PolicyReason.FATIGUE_CAP,))
    again = any(r[1] == nid for r in recent)
    dropped: tuple[NoticeIntent, ...] = ()
    if not again:  # a redelivered detection is already counted
        reason, dropped = _coherence(intent, policy)
        if reason is not None:
            return policy, Delivery(None, (reason,), dropped)
        for stage in (
            _repeat(intent, tier, policy),
            _opt_out(intent, profile),
            _fatigue(intent, recent),
        ):
            if stage is PolicyReason.FATIGUE_CAP:
                policy["capped"] = [*policy.get("capped", [])[-(CAPPED_MEMORY - 1) :], nid]
            if stage is not None:
                return policy, Delivery(None, (stage,), dropped)
    severity = severity_of(intent)
    if severity is not Severity.CRITICAL and intent.part not in _OWED:
        t = intent.event_time.timestamp()
        if not again:
            policy["recent"] = _remember(recent, t, nid)
    if intent.part is NoticePart.OPENING and intent.detection_id not in policy.get("told", []):
        policy["told"] = [*policy.get("told", [])[-(TOLD_MEMORY - 1) :], intent.detection_id]
    superseded = dropped + _outranked(policy, intent, tier, rules)
    quiet_end = quiet_hours_end(intent.event_time, profile, intent.timezone)
    mode = _night_mode(intent, tier) if quiet_end is not None else None
    release_at = quiet_end if mode is QuietHours.HOLD else None
    reason = PolicyReason.QUIET_HOURS_DEFERRED
    wait = tier.group_wait_s if tier is not None and intent.part is NoticePart.OPENING else None
    if wait is not None and release_at is None and severity is not Severity.CRITICAL:
        grouped = intent.event_time + timedelta(seconds=wait)  # then quiet hours, if they began
        release_at = quiet_hours_end(grouped, profile, intent.timezone) or grouped
        reason = PolicyReason.GROUP_WAIT
    if release_at is not None and not again:
        held = {
            "nid": nid,
            "release": release_at.timestamp(),
            "intent": intent.model_dump(mode="json"),
        }
        policy["held"] = [*policy.get("held", []), held]
        return policy, Delivery(None, (reason,), superseded)
    notice = _render(
        intent,
        texts,
        profile,
        nid,
        release_at,
        created_at or intent.event_time,
        renderer or _RENDERER,
        by_text=mode is QuietHours.TEXT,
    )
    _told(policy, intent, tier, intent.event_time.timestamp())
    return policy, Delivery(notice, (), superseded)


def _about(intent: NoticeIntent) -> str:
    """What an opening tells of: its rule, tier and key (a cell, a line, the subscriber)."""
    return f"{intent.rule_id}/{intent.tier}/{intent.facts.get('key', '')}"


def _repeat_after(intent: NoticeIntent, tier: Tier | None) -> float | None:
    """The tier's `repeat_after` (seconds) when the intent is an opening."""
    if tier is None or intent.part is not NoticePart.OPENING:
        return None
    return tier.repeat_after_s


def _repeat(intent: NoticeIntent, tier: Tier | None, policy: dict[str, Any]) -> PolicyReason | None:
    """An opening of a tier with `repeat_after`, about a key the subscriber
    was told of less than that ago: a cell that degrades every evening is
    news once a week, not every day."""
    after = _repeat_after(intent, tier)
    if after is None:
        return None
    told = policy.get("told_at", {}).get(_about(intent))
    if told is not None and intent.event_time.timestamp() - told < after:
        return PolicyReason.REPEAT
    return None


def _told(policy: dict[str, Any], intent: NoticeIntent, tier: Tier | None, t: float) -> None:
    """Remember when the subscriber was told of an opening (at `t`), for
    tiers with `repeat_after`; what is older than any tier may ask is forgotten."""
    if _repeat_after(intent, tier) is None:
        return
    about = _about(intent)
    told = {k: v for k, v in policy.get("told_at", {}).items() if t - v < MAX_REPEAT_AFTER_S}
    told[about] = max(t, told.get(about, t))
    policy["told_at"] = told


def _outranked(
    policy: dict[str, Any], intent: NoticeIntent, tier: Tier | None, rules: RuleSet
) -> tuple[NoticeIntent, ...]:
    """Held openings of the intent's rule at a lower tier than this opening's,
    taken out of `policy` (superseded): a subscriber texted "balance almost
    used up" at 23:40 is not called with "balance low" at 08:00."""
    if not policy.get("held") or tier is None or intent.part is not NoticePart.OPENING:
        return ()
    rule = rules.rule(intent.rule_id)
    lower = {t.name for t in rule.tiers if t.index < tier.index} if rule else set()
    return _drop_held(
        policy,
        lambda h: (
            h["rule_id"] == intent.rule_id
            and h["part"] == NoticePart.OPENING.value
            and h["tier"] in lower
        ),
    )


def _drop_held(
    policy: dict[str, Any], which: Callable[[dict[str, Any]], bool]
) -> tuple[NoticeIntent, ...]:
    """Take the held notices whose intent `which` selects out of `policy`;
    their openings were never told."""
    held = policy.get("held", [])
    gone = [h for h in held if which(h["intent"])]
    if not gone:
        return ()
    rest = [h for h in held if h not in gone]
    if rest:
        policy["held"] = rest
    else:
        policy.pop("held")
    ids = {h["intent"]["detection_id"] for h in gone}
    policy["told"] = [d for d in policy.get("told", []) if d not in ids]
    return tuple(NoticeIntent.model_validate(h["intent"]) for h in gone)


def release(
    state: dict[str, Any] | None,
    profile: CustomerProfile,
    now: datetime,
    rules: RuleSet,
    *,
    created_at: datetime | None = None,
    renderer: Renderer | None = None,
) -> tuple[dict[str, Any], list[CustomerNotice], list[tuple[str, str]], list[NoticeIntent]]:
    """The held notices whose quiet hours have ended by `now`, in the order
    they were held; `deliver_after` is the end of the quiet hours. Of
    several held openings of one rule and tier only the latest goes (the
    others are returned as superseded: "balance 17.18" and "balance 17.28"
    at 08:00 would be one notice too many). A held notice whose text fails
    to render is dropped and reported as (rule id, message)."""
    policy: dict[str, Any] = dict(state or {})
    held = policy.get("held", [])
    t = now.timestamp()
    due = [h for h in held if h["release"] <= t]
    if not due:
        return policy, [], [], []
    rest = [h for h in held if h["release"] > t]
    if rest:
        policy["held"] = rest
    else:
        policy.pop("held", None)
    due, superseded = _latest_openings(due)
    if superseded:
        gone = {i.detection_id for i in superseded}
        policy["told"] = [d for d in policy.get("told", []) if d not in gone]
    notices, failures = [], []
    for h in due:
        intent = NoticeIntent.model_validate(h["intent"])
        tier, texts = texts_of(rules, intent)
        if texts is None:
            continue  # the rule went away while the notice was held
        at = datetime.fromtimestamp(h["release"], UTC)
        try:
            notices.append(
                _render(
                    intent, texts, profile, h["nid"], at, created_at or at, renderer or _RENDERER
                )
            )
        except Exception as exc:  # one failing text costs only its notice
            failures.append((intent.rule_id, f"notice text: {type(exc).__name__}: {exc}"))
            continue
        _told(policy, intent, tier, h["release"])
    return policy, notices, failures, superseded


def _latest_openings(due: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[NoticeIntent]]:
    """The held notices to send, and the openings a later opening of the same
    rule and tier supersedes."""
    latest: dict[tuple[str, str], int] = {}
    for i, h in enumerate(due):
        intent = h["intent"]
        if intent.get("part", NoticePart.OPENING.value) == NoticePart.OPENING.value:
            latest[(intent["rule_id"], intent["tier"])] = i
    keep, dropped = [], []
    for i, h in enumerate(due):
        intent = h["intent"]
        key = (intent["rule_id"], intent["tier"])
        if key in latest and latest[key] != i and intent.get("part", "opening") == "opening":
            dropped.append(NoticeIntent.model_validate(intent))
        else:
            keep.append(h)
    return keep, dropped


def next_release(state: dict[str, Any] | None) -> float | None:
    """When the first held notice is due (epoch seconds), if any."""
    held = (state or {}).get("held", [])
    return min(h["release"] for h in held) if held else None


def _tier(rules: RuleSet, intent: NoticeIntent) -> Tier | None:
    rule = rules.rule(intent.rule_id)
    return next((t for t in rule.tiers if t.name == intent.tier), None) if rule else None


def _render(
    intent: NoticeIntent,
    texts: Texts,
    profile: CustomerProfile,
    nid: str,
    deliver_after: datetime | None,
    created_at: datetime,
    renderer: Renderer,
    by_text: bool = False,
) -> CustomerNotice:
    channel, simple = _channel(intent, profile, by_text)
    lang = profile.language
    facts = intent.facts
    scope = {**facts, "rule_id": intent.rule_id, "tier": intent.tier}
    if intent.rule_id == maintenance.PLANNED_WORK:
        where = intent.timezone or profile.timezone
        scope.update(maintenance.scope(facts, where, str(lang)))
    message = texts.simple if simple and texts.simple else texts.message
    action = None
    # "Reply TOPUP50" means nothing on a voice call: the action goes by text only
    if texts.action is not None and channel is not Channel.VOICE_CALL:
        action = renderer.render(_text(texts.action, lang), scope)
    opening = intent.part is NoticePart.OPENING
    return CustomerNotice(
        notice_id=nid,
        correlation_id=intent.opening_id or intent.detection_id,
        subscriber_id=profile.subscriber_id,
        rule_id=intent.rule_id,
        tier=intent.tier if opening else f"{intent.tier}:{_part_label(intent)}",
        severity=severity_of(intent),
        category=intent.category,
        channel=channel,
        language=lang,
        title=renderer.render(_text(texts.title, lang), scope),
        message=renderer.render(_text(message, lang), scope),
        facts=facts,
        suggested_action=action,
        event_time=intent.event_time,
        created_at=created_at,
        deliver_after=deliver_after,
        source_event_ids=intent.source_event_ids,
        rule_version=intent.rule_version,
    )


def _part_label(intent: NoticeIntent) -> str:
    """`done`, or `compensate:done` for a follow-up task's outcome."""
    action = intent.facts.get(FOLLOW_UP)
    return f"{action}:{intent.part!s}" if action else str(intent.part)


_RENDERER = Renderer()
