"""Planned maintenance on a cell, a line or an area (`schemas.maintenance`):
kept in the target's record, announced to its subscribers a lead time
before it starts, and closed with a "work finished" notice at its end.
While a window is in force (start <= event time < end), network rules on
the target open no tasks and send no outage notices (`Reason.MAINTENANCE`,
in `rules.engine`); lines of an area in planned work learn of it through a
`CoverMark` (`rules.records`).

Pure: each function takes the target's record and returns the new one; the
time is the window's own (its `planned_at`, `start` and `end`), so replay,
rule tests and the worker announce at the same event times.

How the notices count (docs/rules.md, "Planned maintenance"):
- the announcement is `warning`, or `critical` when the work starts less
  than 12 h after it is announced (short notice cannot wait for the
  morning); quiet hours hold a `warning` one until they end;
- planned-work notices are never capped by the fatigue limit (the operator
  owes the customer this information), and a subscriber who opted out of
  the `planned_work` category is not told unless it is critical;
- "work finished" is `info` and goes only to subscribers who were told.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from rules.identity import resolution_id, stable_id
from rules.model import Text
from schemas import MaintenanceWindow, NoticeIntent, NoticePart, Severity

PLANNED_WORK = "planned-work"  # the rule id of planned-work notices (reserved in rule files)
CATEGORY = "planned_work"
TIER = "announce"
SHORT_NOTICE_S = 12 * 3600
DONE_MEMORY = 8  # finished windows remembered per target, so a redelivery is not announced again

TITLE = Text(en="Planned network work", zh_cn="网络计划维护通知")
MESSAGE = Text(
    en="We will work on the network that serves you from {{ start_local }} to {{ end_local }}."
    "{% if detail %} {{ detail }}{% endif %} Your service may be interrupted during this time;"
    " we are sorry for the inconvenience.",
    zh_cn="我们将于{{ start_local }}至{{ end_local }}对为您服务的网络进行维护。"
    "{% if detail %}{{ detail }}{% endif %}期间您的业务可能中断，敬请谅解。",  # noqa: RUF001
)
SIMPLE = Text(
    en="Planned repair work from {{ start_local }} to {{ end_local }}. Your service may stop for a while.",
    zh_cn="{{ start_local }}至{{ end_local }}网络计划维修，期间业务可能暂时中断。",  # noqa: RUF001
)
FINISHED_TITLE = Text(en="Planned work finished", zh_cn="计划维护已完成")
FINISHED = Text(
    en="The planned work on the network is finished and your service is back to normal."
    " Thank you for your patience.",
    zh_cn="网络计划维护已完成，您的业务已恢复正常，感谢您的耐心等待。",  # noqa: RUF001
)


def _epoch(value: datetime) -> float:
    return value.timestamp()


def store(record: dict[str, Any], window: MaintenanceWindow | None, key: str) -> dict[str, Any]:
    """The record with `window` as the target's planned work (None: withdrawn).
    A window already finished here, or the same window again, changes nothing."""
    current = record.get("maint")
    if window is None:
        return {k: v for k, v in record.items() if k != "maint"}
    if window.window_id in record.get("maint_done", []):
        return record
    entry: dict[str, Any] = {
        "id": window.window_id,
        "key": key,
        "target": window.target.type.value,
        "start": _epoch(window.start),
        "end": _epoch(window.end),
        "announce": max(
            _epoch(window.start) - window.announce_minutes * 60, _epoch(window.planned_at)
        ),
        "reason": window.reason,
        "message": window.message.model_dump(by_alias=True) if window.message else None,
        "did": [],
        "told": [],
    }
    if current and current["id"] == window.window_id:  # rescheduled: keep what was done
        entry["did"], entry["told"] = current["did"], current["told"]
    return {**record, "maint": entry}


def windows_in(record: dict[str, Any]) -> tuple[tuple[float, float], ...]:
    """The target's own window, as (start, end), if any."""
    m = record.get("maint")
    return ((m["start"], m["end"]),) if m else ()


def next_step(record: dict[str, Any]) -> float | None:
    m = record.get("maint")
    if not m:
        return None
    due: float = m["announce"] if "announced" not in m["did"] else m["end"]
    return due


def steps(
    record: dict[str, Any], now: float, audience: Callable[[], Iterable[str]]
) -> tuple[dict[str, Any], list[NoticeIntent]]:
    """What falls due by `now`: the announcement to `audience()` (the
    subscribers of the target, looked up only then), then, at the end,
    "work finished" to those told. A finished window leaves the record."""
    m = record.get("maint")
    if not m or (next_step(record) or now + 1) > now:
        return record, []
    m = {**m, "did": list(m["did"]), "told": list(m["told"])}
    intents: list[NoticeIntent] = []
    det = stable_id(PLANNED_WORK, m["id"], m["key"])
    if "announced" not in m["did"]:
        m["did"].append("announced")
        if m["announce"] < m["end"]:
            who = sorted(set(audience()))
            m["told"] = who
            intents += [_intent(m, det, s, NoticePart.OPENING) for s in who]
    if m["end"] <= now:
        intents += [_intent(m, det, s, NoticePart.RESOLVED) for s in m["told"]]
        done = [*record.get("maint_done", [])[-(DONE_MEMORY - 1) :], m["id"]]
        rest = {k: v for k, v in record.items() if k != "maint"}
        return {**rest, "maint_done": done}, intents
    return {**record, "maint": m}, intents


def _intent(m: dict[str, Any], det: str, subscriber: str, part: NoticePart) -> NoticeIntent:
    opening = part is NoticePart.OPENING
    at = m["announce"] if opening else m["end"]
    short = m["start"] - m["announce"] < SHORT_NOTICE_S
    facts = {
        "window_id": m["id"],
        "target": f"{m['target']}:{m['key']}",
        "start": datetime.fromtimestamp(m["start"], UTC).isoformat(),
        "end": datetime.fromtimestamp(m["end"], UTC).isoformat(),
        "reason": m["reason"],
        "message": m["message"],
    }
    return NoticeIntent(
        detection_id=det if opening else resolution_id(det),
        subscriber_id=subscriber,
        rule_id=PLANNED_WORK,
        rule_version="builtin",
        tier=TIER,
        severity=Severity.CRITICAL if short and opening else Severity.WARNING,
        category=CATEGORY,
        part=part,
        opening_id=None if opening else det,
        facts=facts,
        event_time=datetime.fromtimestamp(at, UTC),
        source_event_ids=(m["id"],),
    )


def texts(part: NoticePart) -> tuple[Text, Text, Text | None] | None:
    """(title, message, simpler message) of a planned-work notice part."""
    if part is NoticePart.OPENING:
        return TITLE, MESSAGE, SIMPLE
    if part is NoticePart.RESOLVED:
        return FINISHED_TITLE, FINISHED, None
    return None


_WEEKDAYS = {
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "zh-CN": ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
}
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _moment(at: datetime, language: str, with_day: bool = True) -> str:
    """A local time as a customer reads it: "Sun 22 Nov 01:00", or in
    Chinese month, day, weekday in full-width brackets, then the time;
    never the year (windows are announced days ahead, not months)."""
    clock = f"{at:%H:%M}"
    if not with_day:
        return clock
    weekday = _WEEKDAYS.get(language, _WEEKDAYS["en"])[at.weekday()]
    if language == "en":
        return f"{weekday} {at.day} {_MONTHS_EN[at.month - 1]} {clock}"
    return f"{at.month}月{at.day}日（{weekday}）{clock}"  # noqa: RUF001


def local_span(start: datetime, end: datetime, timezone: str, language: str) -> tuple[str, str]:
    """The window's start and end in the subscriber's timezone and language;
    the end names its day only when that is not the start's: from "Sun 22
    Nov 01:00" to "05:00", or to "Mon 23 Nov 02:00" over midnight."""
    tz = ZoneInfo(timezone)
    a, b = start.astimezone(tz), end.astimezone(tz)
    return _moment(a, language), _moment(b, language, with_day=b.date() != a.date())


def scope(facts: dict[str, Any], timezone: str, language: str) -> dict[str, Any]:
    """The names the texts read, with times in the subscriber's timezone."""
    start, end = local_span(
        datetime.fromisoformat(facts["start"]),
        datetime.fromisoformat(facts["end"]),
        timezone,
        language,
    )
    message = facts.get("message") or {}
    return {
        "start_local": start,
        "end_local": end,
        "detail": message.get("en" if language == "en" else "zh-CN"),
    }
