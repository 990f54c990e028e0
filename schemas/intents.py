"""Notice intents: a detection's request to notify a subscriber, before the
subscriber's notice policy (channel, language, quiet hours, fatigue cap,
opt-out) turns it into a `CustomerNotice` or suppresses it.

Intents cross Kafka on an internal subscriber-partitioned topic when the
detecting key is not the subscriber (a cell or a broadband line), so that
every notice goes through its subscriber's policy and state. A record holds
one intent, or a JSON array of the intents for subscribers of one partition
(a cell's fan-out costs a record per partition, not one per subscriber).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.outputs import Severity


class NoticePart(StrEnum):
    """Which of a tier's notices: the opening one (a detection), its
    resolution (the condition cleared), or one tied to its task: the
    promise was missed (`escalated`) or the work system reported an outcome."""

    OPENING = "opening"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class NoticeIntent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    detection_id: str
    subscriber_id: str | None  # None: fan out to every subscriber of `cell_id`
    cell_id: str | None = None
    rule_id: str
    rule_version: str
    tier: str
    severity: Severity
    category: str
    part: NoticePart = NoticePart.OPENING
    opening_id: str | None = None  # the opening detection this notice follows up
    timezone: str | None = None  # where the subscriber is, when the event says so (roaming)
    facts: dict[str, Any]
    event_time: AwareDatetime
    source_event_ids: tuple[str, ...]


class CellMembership(BaseModel):
    """A subscriber joining or leaving a cell's home subscribers, sent to the
    cell-keyed index when a profile's `home_cell_id` changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cell_id: str
    subscriber_id: str
    member: bool


class CoverMark(BaseModel):
    """Something of another key covering this one: an area's planned work or
    open incident covering one of its lines, or a cell's open incident
    covering one of its home subscribers. Sent from the covering key to the
    covered one through an internal topic keyed by the covered key, so its
    rules see it in their own partition. `open` False withdraws it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str  # the covered line or subscriber
    space: Literal["network", "subscribers"]  # where the covered key's state lives
    source: str  # the covering area or cell
    kind: Literal["maintenance", "incident"]
    ref: str  # the window id, or the incident's rule id
    open: bool
    start: AwareDatetime | None = None  # planned work: the window
    end: AwareDatetime | None = None
    task_id: str | None = None  # an incident's task: the covered key's open tasks are linked to it
    at: AwareDatetime  # the covering step's time
