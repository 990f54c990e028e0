"""The per-key record: everything Forewarn remembers about one subscriber,
cell, line or area, described in one place with the meaning of every
stored name, and the version of the layout.

Records are JSON objects kept in the state store and its changelog. Stored
names are short on purpose: a busy key's record is written once per
checkpoint and once per changelog record, so its size is paid twice per
change. This module is where each short name is spelled out; the
TypedDicts below are the layout that `rules.engine`, `rules.tasks`,
`rules.policy`, `rules.maintenance` and `rules.records` read and write.

Versions (`v` in the record; absent = 1):
  1  the layout below without `v` (written before versions were stored);
     read as is.
  2  the same layout, stamped with `v`.
A record stamped with a newer version than this code knows was written by
a newer Forewarn: it is refused (`StateVersionError`) rather than misread,
so a rollback of the worker cannot silently drop state it does not
understand. A future change of layout adds a step to `migrate`.
"""

from __future__ import annotations

from typing import Any, TypedDict

VERSION = 2
VERSION_KEY = "v"


class StateVersionError(ValueError):
    """A record written by a newer Forewarn than this one."""


class Streak(TypedDict, total=False):
    """A condition holding for consecutive evaluations (`for:` in a tier)."""

    n: int  # evaluations in a row
    since: float  # when the streak began (epoch seconds)
    now: float  # the last evaluation's time


class Fired(TypedDict):
    """A tier that fired in an episode."""

    tier: str
    detection: str  # the detection id (`rules.identity.detection_id`)
    facts: dict[str, Any]  # the values the notice and the task quote
    sources: list[str]  # the events behind the detection


class Episode(TypedDict, total=False):
    """From a rule's first firing to its condition clearing."""

    id: str  # the id of the event that opened it
    fired: list[Fired]
    told: dict[str, str | None]  # an area rule's hit lines -> their subscriber


class RuleState(TypedDict, total=False):
    """One rule's memory for one key; kept only while something is under way."""

    shape: str  # digest of the rule's meaning: a changed rule starts afresh
    streak: dict[str, Streak]  # tier name -> streak
    clear: Streak  # the `clear:` condition's streak
    episode: Episode | None
    sent: dict[str, dict[str, Any]]  # tier -> de-duplication marker -> cycle, episode or time
    repeat: str  # the task reported done whose work did not hold: the next firing repeats it


class SeriesState(TypedDict, total=False):
    """What a series (filter, measures, window, baseline, change) keeps,
    shared by the rules computing the same one."""

    win: Any  # sliding: [[t, values...]]; tumbling: {"start", "samples", "ids"}
    base: Any  # the baseline's buckets (`rules.windows.baseline_step`)
    chg: dict[str, Any]  # {"value": the watched expression's last value}
    grp: dict[str, list[Any]]  # an area's lines: line -> [t, affected, subscriber]


class Task(TypedDict, total=False):
    """An intervention task, with what every later output of it needs."""

    rule: str  # rule id
    tier: str
    det: str  # the detection that opened it
    follow: int  # 1: a follow-up task opened when the work failed
    parent: str | None  # the task a follow-up continues
    status: str  # schemas.TaskStatus value
    rev: int  # revision of the last output
    level: int  # escalation level reached
    due: float | None  # the promise (epoch seconds); None: none left
    closes: str  # what closes it: feedback or clearing (rules.model.ClosesOn)
    queue: str
    priority: str
    action: str
    summary: str
    facts: dict[str, Any]
    target: list[str]  # [target type, id]
    sub: str | None  # the subscriber its notices go to
    cell: str | None  # or the cell whose home subscribers are told
    sev: str  # severity
    cat: str  # category
    opened: str  # RFC 3339
    sources: list[str]
    version: str  # the rule's version when it opened
    cleared: bool  # the condition has cleared (a task closing on feedback stays open)
    lines: list[str]  # an area task's affected lines (widened as the outage grows)
    subs: list[str]  # and their subscribers, told of the task's progress
    due_in: float | None  # held past its guard budget: the promise, from its release
    waiting: list[dict[str, Any]]  # held: the customer notices (NoticeIntent JSON) it keeps


class Done(TypedDict, total=False):
    """Work reported done while its condition still held (`rules.tasks.Book.done`),
    by the detection that opened it; kept until the condition clears or
    comes back (`task.verify`)."""

    task: str  # the task reported done
    at: float  # when (epoch seconds)
    streak: Streak  # the condition holding again since the report (`task.verify`)


class EngineState(TypedDict, total=False):
    """The rule engine's part (`rules.engine`, `rules.tasks`)."""

    seen: list[str]  # the last 32 event ids: a redelivered event changes nothing
    acc: dict[str, dict[str, float]]  # cycle -> service -> used (the two latest cycles)
    series: dict[str, SeriesState]  # series id -> state
    rules: dict[str, RuleState]  # rule id -> state
    tasks: dict[str, Task]  # open tasks by task id
    closed: list[str]  # ids of the last closed tasks: late feedback is recognised
    done: dict[str, Done]  # detection -> work reported done while its condition held


class Held(TypedDict):
    """A notice held for the end of quiet hours."""

    nid: str  # notice id
    release: float  # when quiet hours end (epoch seconds)
    intent: dict[str, Any]  # the NoticeIntent, as JSON


class PolicyState(TypedDict, total=False):
    """The notice policy's part (`rules.policy`)."""

    recent: list[list[Any]]  # [t, notice id] of non-critical notices: the fatigue cap's memory
    capped: list[str]  # notices the cap suppressed: a redelivery gets the same decision
    told: list[str]  # openings sent or held: only they get a resolution
    held: list[Held]
    told_at: dict[str, float]  # "rule/tier/key" -> when told (epoch s), for `repeat_after`


class Planned(TypedDict, total=False):
    """Planned work on the key (`rules.maintenance`)."""

    id: str  # the window id
    key: str
    target: str  # cell, broadband_line or area
    start: float
    end: float
    announce: float  # when the announcement is due
    reason: str | None
    message: dict[str, str] | None  # the operator's own text, per language
    did: list[str]  # steps done: announced, finished
    told: list[str]  # subscribers told


class KeyRecord(TypedDict, total=False):
    """One key's record. Subscribers use `profile`, `engine`, `policy`;
    cells and lines `engine`, `maint`, `covers`, `who`; areas `engine`,
    `maint`, `lines`, `incidents`. `due` is the next time something falls
    due (a promise, a held notice, planned work): the clock finds due keys
    without decoding every record. The partition's guard budget is a
    record of its own: `{"spent": {task name: [window start, count]}}`."""

    v: int  # layout version (VERSION)
    profile: str  # the subscriber's CustomerProfile, as JSON
    engine: EngineState
    policy: PolicyState
    due: float
    who: str  # a line's subscriber, told of planned work
    maint: Planned
    maint_done: list[str]  # finished windows: a redelivery is not announced again
    covers: dict[
        str, dict[str, Any]
    ]  # what covers the key: "kind\x1fsource\x1fref" -> window or task; planned work for a day after
    lines: dict[str, str | None]  # an area's lines -> their subscriber
    incidents: dict[str, dict[str, Any]]  # an area's open incidents: rule id -> {"task"}
    spent: dict[str, list[float]]  # the guard budget record's counters


def migrate(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record in this version's layout. Version 1 is the same
    layout; a newer one is refused."""
    version = record.get(VERSION_KEY, 1)
    if version > VERSION:
        raise StateVersionError(
            f"state record of layout version {version}, written by a newer Forewarn;"
            f" this one reads up to version {VERSION}: run the newer version, or"
            " delete the state and its changelog topics to start afresh"
        )
    return record


def stamp(record: dict[str, Any]) -> dict[str, Any]:
    """The record as stored: with this layout's version, first (so the
    same record encodes to the same bytes whichever path built it)."""
    if not record or record.get(VERSION_KEY) == VERSION:
        return record
    stamped = {VERSION_KEY: VERSION, **record}
    stamped[VERSION_KEY] = VERSION
    return stamped
