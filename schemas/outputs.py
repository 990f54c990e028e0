"""Outputs: what customers and operations teams receive.

`CustomerNotice` (topic `customer-notices`, key subscriber_id) follows the
TM Forum TMF681 Communication Message where the two overlap: `channel` is the
message type, `message`/`title` the content and subject, `deliver_after` the
scheduled send time. `InterventionTask` (topic `intervention-tasks`, key target
id) follows TMF621 Trouble Ticket: `queue` is the assigned team, `priority`
maps to ticket priority, `status` open/resolved to the ticket's lifecycle,
`due_by` to the expected resolution date.

`notice_id` and `task_id` are deterministic: the same detection always yields
the same id, so consumers de-duplicate redeliveries (delivery is at least once).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.profile import Channel, Language

SCHEMA_VERSION = "1"

Facts = dict[str, Any]


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    MAJOR = "major"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.MAJOR: 2, Severity.CRITICAL: 3}


class TaskStatus(StrEnum):
    """A task's status as the work system last reported it (`open` until it
    reports), or `resolved` for a task that closes when its condition clears.
    `done`, `cancelled` and `resolved` close a task; `failed` keeps it open
    and escalates it. `held`: opened past its rule's guard budget, waiting
    for an operator to approve (then `open`) or cancel it; no promise runs
    and its customer notices wait with it."""

    HELD = "held"
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RESOLVED = "resolved"

    @property
    def closed(self) -> bool:
        return self in (TaskStatus.DONE, TaskStatus.CANCELLED, TaskStatus.RESOLVED)


class TaskChange(StrEnum):
    """Why this output was sent: every output of a task is one change of it."""

    OPENED = "opened"
    FEEDBACK = "feedback"  # the work system reported a status
    ESCALATED = "escalated"  # not done by `due_by`, or reported failed
    CONDITION_CLEARED = "condition_cleared"  # the metric is back; the task stays open
    CONDITION_RETURNED = "condition_returned"  # it went bad again before the work was done
    CLOSED_BY_CLEARING = "closed_by_clearing"  # a task that closes when its condition clears
    HELD = "held"  # opened past its guard budget: waits for an operator
    RELEASED = "released"  # an operator approved held work: it is open, its promise runs
    LINKED = "linked"  # an area incident now covers it (`parent_task_id`: the area's task)
    WIDENED = "widened"  # an area incident hit more lines: `affected_lines` lists them all
    # a more severe tier's task took over (`note` names it): closed, `cancelled`
    SUPERSEDED = "superseded"


class ClosesOn(StrEnum):
    FEEDBACK = "feedback"
    CLEARING = "clearing"


class Queue(StrEnum):
    NETWORK_OPS = "network-ops"
    FIELD_REPAIR = "field-repair"
    BILLING_RISK = "billing-risk"
    FRAUD = "fraud"
    CUSTOMER_CARE = "customer-care"
    RETENTION = "retention"


class TaskAction(StrEnum):
    INVESTIGATE = "investigate"
    DISPATCH_REPAIR = "dispatch_repair"
    CALL_CUSTOMER = "call_customer"
    SUSPEND_SERVICE = "suspend_service"
    REVIEW_CHARGES = "review_charges"
    COMPENSATE = "compensate"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class TargetType(StrEnum):
    SUBSCRIBER = "subscriber"
    CELL = "cell"
    BROADBAND_LINE = "broadband_line"
    AREA = "area"  # an access node (OLT, PON port): the lines behind it


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskTarget(_Output):
    type: TargetType
    id: Annotated[str, Field(min_length=1)]


class CustomerNotice(_Output):
    """A proactive notice to one subscriber (topic `customer-notices`, key
    subscriber_id). Follows TM Forum TMF681 Communication Message where they
    overlap: `channel` ~ messageType, `title` ~ subject, `message` ~ content,
    `deliver_after` ~ scheduledSendTime, `subscriber_id` ~ receiver. De-duplicate
    on `notice_id`: the same detection always yields the same id."""

    notice_id: str
    correlation_id: str = Field(description="Shared with the task of the same detection.")
    subscriber_id: str
    rule_id: str
    tier: str = Field(description="Tier name, or `<tier>:resolved` for a restoration notice.")
    severity: Severity
    category: str
    channel: Channel
    language: Language
    title: str
    message: str
    facts: Facts = Field(description="Observed values, thresholds and baseline behind it.")
    suggested_action: str | None = None
    event_time: AwareDatetime = Field(description="Time of the triggering event.")
    created_at: AwareDatetime
    deliver_after: AwareDatetime | None = Field(
        default=None, description="Not before this time (quiet hours)."
    )
    source_event_ids: tuple[str, ...]
    rule_version: str
    schema_version: str = SCHEMA_VERSION


class InterventionTask(_Output):
    """Work for an operations team (topic `intervention-tasks`, key target id).
    Follows TM Forum TMF621 Trouble Ticket where they overlap: `task_id` ~ id,
    `queue` ~ the assigned channel/team, `priority` ~ priority, `status`
    open/resolved ~ status acknowledged/resolved, `due_by` ~
    expectedResolutionDate, `target` ~ relatedEntity, `summary` ~ description.
    Every output of one task shares its `task_id`; `revision` counts its
    changes (1 = opened), so a consumer keeps the highest revision and
    de-duplicates redeliveries on `update_id`."""

    task_id: str
    update_id: str = Field(description="Deterministic id of this change of the task.")
    revision: int = Field(ge=1, description="1 when opened, +1 per change.")
    change: TaskChange
    correlation_id: str
    rule_id: str
    tier: str
    status: TaskStatus
    closes_on: ClosesOn = Field(
        description="`feedback`: only a `done`/`cancelled` report closes it; "
        "`clearing`: it closes when its condition clears."
    )
    escalation_level: int = Field(default=0, ge=0)
    parent_task_id: str | None = Field(
        default=None,
        description="The task this one follows: the one whose missed promise opened it"
        " (a follow-up), the one reported done whose work did not hold (a repeat, see"
        " `note`), or an area incident's task covering it (`linked`).",
    )
    queue: Queue
    action: TaskAction
    priority: Priority
    target: TaskTarget
    due_by: AwareDatetime | None
    summary: str
    note: str | None = Field(default=None, description="Why this change, in words.")
    facts: Facts
    event_time: AwareDatetime
    created_at: AwareDatetime
    source_event_ids: tuple[str, ...]
    affected_subscribers: tuple[str, ...] | None = Field(
        default=None,
        description="A cell task's home subscribers (sorted; the first 5,000 of a large cell).",
    )
    affected_subscribers_total: int | None = Field(
        default=None, description="How many home subscribers the cell has in all."
    )
    affected_lines: tuple[str, ...] | None = Field(
        default=None,
        description="An area task's affected broadband lines when it was opened (sorted);"
        " `affected_subscribers` are their subscribers.",
    )
    rule_version: str
    schema_version: str = SCHEMA_VERSION


def utc_iso(value: datetime) -> str:
    """RFC 3339 text used for ids and JSON: stable across producers' offsets."""
    return value.isoformat()
