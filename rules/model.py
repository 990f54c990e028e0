"""The rule language as frozen, strict pydantic models (`extra="forbid"`): a
rule file is `{rules: [RuleSpec, ...]}`. See docs/rules.md for the guide.

A rule reads one source topic, keeps per-key state (subscriber, cell or
line), computes named measures (per event, or aggregated over an event-time
window), optionally a baseline from the key's own history and a change
detector, and walks ordered tiers from mild to severe. The highest tier whose
condition holds (for long enough) fires, subject to its de-duplication scope.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from rules.durations import Duration, parse_duration
from schemas import ClosesOn, Priority, Queue, Severity, TaskAction

KEBAB = r"^[a-z0-9]+(-[a-z0-9]+)*$"
IDENT = r"^[a-z_][a-z0-9_]*$"
Kebab = Annotated[str, Field(pattern=KEBAB, max_length=64)]
Ident = Annotated[str, Field(pattern=IDENT, max_length=64)]
ExprText = Annotated[str, Field(min_length=1, max_length=2000)]


# Strict models, but enums are read from their YAML string values.
Lax = Strict(False)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class Source(StrEnum):
    USAGE = "usage"
    BILLING = "billing"
    NETWORK_QUALITY = "network_quality"


class KeyField(StrEnum):
    SUBSCRIBER_ID = "subscriber_id"
    CELL_ID = "cell_id"
    LINE_ID = "line_id"
    AREA_ID = "area_id"  # the access node of a line event: the rule sees all its lines


class Aggregate(StrEnum):
    SUM = "sum"
    COUNT = "count"
    AVG = "avg"
    MIN = "min"
    MAX = "max"


class WindowSpec(_Spec):
    """`sliding`: evaluated at every event over the last `size` of event time.
    `tumbling`: fixed, aligned windows, evaluated once when a window closes
    (the first event of a later window closes it)."""

    type: Literal["sliding", "tumbling"]
    size: Duration


class MeasureSpec(_Spec):
    """`name: "expression"` is short for `name: {expr: "expression"}`."""

    expr: ExprText
    aggregate: Annotated[Aggregate, Lax] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        return {"expr": data} if isinstance(data, str) else data


class BaselineSpec(_Spec):
    """The key's own history: the average of `of` per `per` over the
    `lookback` before the current day; null until `min_history` of history."""

    of: ExprText
    per: Duration = "1h"
    lookback: Duration = "30d"
    min_history: Duration = "7d"


class ChangeSpec(_Spec):
    """Tracks `of` across events: `previous`, `current` and `changed` become
    names usable in conditions."""

    of: ExprText


class MembersSpec(_Spec):
    """An area rule's view of its lines: each line's latest measurement of
    the last `within` counts once (a line that stops reporting drops out).
    `affected` says which lines are hit; the rule sees `members` (lines
    reporting), `affected` (how many are hit) and `affected_share`."""

    of: Literal["line_id"] = "line_id"
    within: Duration
    affected: ExprText


class InhibitionSpec(_Spec):
    """While an episode of `rule` is open on the key named by `on`, this
    rule opens no tasks and sends no notices (reason `inhibited`); its
    tasks already open are linked to that episode's task. After
    Alertmanager's inhibit rules: the source is `rule`, the target is this
    rule, `on` is what must be equal. A line rule names its `area_id` (an
    area rule inhibits it); a subscriber rule names `profile.home_cell_id`
    (a cell rule inhibits it)."""

    rule: Kebab
    on: Literal["area_id", "profile.home_cell_id"] = "area_id"


class DedupScope(StrEnum):
    CYCLE = "cycle"
    EPISODE = "episode"
    COOLDOWN = "cooldown"


class DedupSpec(_Spec):
    """`cycle`: once per billing cycle (usage `cycle_id`, else the calendar
    month); `episode`: once until the rule clears; `cooldown`: at most once per
    `cooldown`. `by` keeps separate memories per value (e.g. per country)."""

    scope: Annotated[DedupScope, Lax]
    cooldown: Duration | None = None
    by: ExprText | None = None

    @model_validator(mode="after")
    def _cooldown_needs_duration(self) -> Self:
        if self.scope is DedupScope.COOLDOWN and self.cooldown is None:
            raise ValueError("scope 'cooldown' needs a 'cooldown' duration, e.g. '24h'")
        if self.scope is not DedupScope.COOLDOWN and self.cooldown is not None:
            raise ValueError(
                f"'cooldown' only applies to scope 'cooldown', not {self.scope.value!r}"
            )
        return self


class Text(_Spec):
    """A template in every language we send."""

    en: Annotated[str, Field(min_length=1)]
    zh_cn: Annotated[str, Field(min_length=1, alias="zh-CN")]


class Audience(StrEnum):
    SUBSCRIBER = "subscriber"  # the subscriber_id of the event (or of the line)
    HOME_CELL = "home_cell"  # every subscriber whose home_cell_id is the event's cell
    AFFECTED = "affected"  # an area rule: the subscribers of its affected lines


class ResolvedNoticeSpec(_Spec):
    title: Text
    message: Text


class OutcomeNoticeSpec(_Spec):
    """A notice tied to a task: sent to the tier's audience when the task's
    promise is missed or the work system reports an outcome."""

    title: Text
    message: Text
    message_simple: Text | None = None


class NoticeSpec(_Spec):
    audience: Annotated[Audience, Lax] = Audience.SUBSCRIBER
    audience_filter: ExprText | None = Field(
        default=None,
        description="Only subscribers whose profile makes this true get the notice, e.g."
        " \"profile.segment == 'vip'\" (names: profile.*).",
    )
    title: Text
    message: Text
    message_simple: Text | None = Field(
        default=None, description="Simpler wording for elderly customers (voice calls)."
    )
    suggested_action: Text | None = None
    resolved: ResolvedNoticeSpec | None = Field(
        default=None, description="Sent to the same audience when the episode clears."
    )
    group_wait: Duration | None = Field(
        default=None,
        description="Hold this tier's opening this long before sending it: if a more severe"
        " tier of the rule reaches the subscriber meanwhile, only that one is sent (like"
        " Alertmanager's group_wait), e.g. '10m' so that 80%, 90% and 100% of a data plan"
        " used within minutes make one notice, not three. Not on critical tiers.",
    )
    repeated: OutcomeNoticeSpec | None = Field(
        default=None,
        description="Sent instead of the opening when the tier fires again because work"
        " reported done did not fix it (the task's `verify`).",
    )
    repeat_after: Duration | None = Field(
        default=None,
        description="A subscriber told of this tier's opening about the same key (a cell, a"
        " line, themselves) is not told again before this much event time has passed"
        " (suppression reason 'repeat'), e.g. '7d' for a cell that degrades every evening."
        " At most 30d.",
    )


# Work done by people closes only when the work system says so; a check a
# machine can repeat (`investigate`) may close itself when the metric clears.
DEFAULT_CLOSES_ON: dict[TaskAction, ClosesOn] = {
    TaskAction.INVESTIGATE: ClosesOn.CLEARING,
    TaskAction.DISPATCH_REPAIR: ClosesOn.FEEDBACK,
    TaskAction.CALL_CUSTOMER: ClosesOn.FEEDBACK,
    TaskAction.SUSPEND_SERVICE: ClosesOn.FEEDBACK,
    TaskAction.REVIEW_CHARGES: ClosesOn.FEEDBACK,
    TaskAction.COMPENSATE: ClosesOn.FEEDBACK,
}


class GuardSpec(_Spec):
    """A budget on drastic work: at most `max` tasks of this tier per `per`
    of event time (aligned windows). Past it, tasks are opened `held`, with
    their customer notices, until an operator approves or drops them. The
    budget is split over the partitions (see docs/operations.md)."""

    max: Annotated[int, Field(ge=1, le=1_000_000)]
    per: Duration


class OutcomesSpec(_Spec):
    """Notices sent when the work system reports the task's outcome."""

    done: OutcomeNoticeSpec | None = None
    failed: OutcomeNoticeSpec | None = None
    cancelled: OutcomeNoticeSpec | None = None


class FollowUpTaskSpec(_Spec):
    """A task opened when the parent task's promise is missed (e.g. a
    compensation when a repair is late). It closes on feedback."""

    queue: Annotated[Queue, Lax]
    action: Annotated[TaskAction, Lax]
    priority: Annotated[Priority, Lax]
    due_in: Duration
    summary: Annotated[str, Field(min_length=1)]
    guard: GuardSpec | None = None
    outcomes: OutcomesSpec | None = Field(
        default=None,
        description="Notices to the tier's audience when the work system reports this task's"
        " outcome, e.g. done: 'compensation credited'.",
    )


class EscalationSpec(_Spec):
    """What happens when a task is not done by its `due_by`, or is reported
    `failed`: the task is raised to `priority` (and moved to `queue`), and
    optionally the customer is told and a follow-up task is opened."""

    priority: Annotated[Priority, Lax]
    queue: Annotated[Queue, Lax] | None = None
    due_in: Duration | None = Field(
        default=None,
        description="A new promise for the escalated task; none: no further escalation.",
    )
    notice: OutcomeNoticeSpec | None = None
    task: FollowUpTaskSpec | None = None


class TaskSpec(_Spec):
    queue: Annotated[Queue, Lax]
    action: Annotated[TaskAction, Lax]
    priority: Annotated[Priority, Lax]
    due_in: Duration | None = None
    summary: Annotated[str, Field(min_length=1)]
    closes_on: Annotated[ClosesOn, Lax] | None = Field(
        default=None,
        description="`feedback` (default for work done by people) or `clearing` "
        "(default for `investigate`).",
    )
    resolve: bool = Field(
        default=True,
        description="Tell the work system when the condition clears (closing the task "
        "if it closes on clearing).",
    )
    escalate: EscalationSpec | None = None
    outcomes: OutcomesSpec | None = None
    guard: GuardSpec | None = Field(
        default=None,
        description="A budget, e.g. {max: 50, per: 1h}: tasks past it are held for approval.",
    )
    verify: Persistence | None = Field(
        default=None,
        description="Work reported `done` while the condition still holds is verified: the"
        " condition holding again this long after the report (a count of evaluations, e.g."
        " 3, or a duration, e.g. '30m') means the work did not fix it, and a repeat task"
        " opens (`parent_task_id`: the task reported done) and the tier's audience is told"
        " again.",
    )

    @property
    def closing(self) -> ClosesOn:
        return self.closes_on or DEFAULT_CLOSES_ON[self.action]

    @model_validator(mode="after")
    def _escalation_needs_promise(self) -> Self:
        if self.escalate is not None and self.due_in is None:
            raise ValueError("'escalate' needs a 'due_in': the promise whose miss escalates")
        return self

    @model_validator(mode="after")
    def _verify_needs_feedback(self) -> Self:
        if self.verify is not None and self.closing is not ClosesOn.FEEDBACK:
            raise ValueError(
                "'verify' checks work reported done; a task that closes when its condition"
                " clears has nothing to verify"
            )
        return self


def _persistence(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            "expected a count of consecutive evaluations (e.g. 3) or a duration (e.g. '24h')"
        )
    if isinstance(value, int) and not 1 <= value <= 1000:
        raise ValueError("a count in 'for' must be between 1 and 1000")
    if isinstance(value, str):
        parse_duration(value)
    return value


Persistence = Annotated[int | str, BeforeValidator(_persistence)]


class QuietHours(StrEnum):
    """What a tier's notice does when it falls inside the subscriber's quiet
    hours. Below `critical` a notice is always held; a critical tier chooses."""

    HOLD = "hold"  # held in state, sent when quiet hours end
    TEXT = "text"  # sent at once, by text: never a voice call (a critical tier's default)
    CALL = "call"  # sent at once by the usual channel, a voice call included


class TierSpec(_Spec):
    name: Kebab
    when: ExprText
    for_: Persistence = Field(default=1, alias="for")
    severity: Annotated[Severity, Lax]
    dedup: DedupSpec
    quiet_hours: Annotated[QuietHours, Lax] | None = Field(
        default=None,
        description="Inside the subscriber's quiet hours: 'hold' the notice until they end,"
        " send it at once by 'text' (never a voice call), or 'call' (the usual channel, a"
        " voice call included; the opening notice only). 'text' and 'call' need severity"
        " critical; default 'hold' below critical, 'text' for critical.",
    )
    notice: NoticeSpec | None = None
    task: TaskSpec | None = None

    @model_validator(mode="after")
    def _emits_something(self) -> Self:
        if self.notice is None and self.task is None:
            raise ValueError("a tier must emit a 'notice', a 'task', or both")
        return self


class ClearSpec(_Spec):
    when: ExprText
    for_: Persistence = Field(default=1, alias="for")


class RuleSpec(_Spec):
    id: Kebab
    description: Annotated[str, Field(min_length=1)]
    enabled: bool = True
    source: Annotated[Source, Lax]
    key: Annotated[KeyField, Lax] = KeyField.SUBSCRIBER_ID
    filter: ExprText | None = None
    category: Ident
    window: WindowSpec | None = None
    measures: dict[Ident, MeasureSpec] = Field(min_length=1)
    baseline: BaselineSpec | None = None
    change: ChangeSpec | None = None
    members: MembersSpec | None = None
    inhibited_by: list[InhibitionSpec] = Field(default_factory=list, max_length=8)
    tiers: list[TierSpec] = Field(min_length=1, max_length=16)
    clear: ClearSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.source is not Source.NETWORK_QUALITY and self.key is not KeyField.SUBSCRIBER_ID:
            raise ValueError(f"source {self.source.value!r} is keyed by subscriber_id")
        if self.source is Source.NETWORK_QUALITY and self.key is KeyField.SUBSCRIBER_ID:
            raise ValueError("network_quality rules are keyed by 'cell_id', 'line_id' or 'area_id'")
        if (self.members is not None) != (self.key is KeyField.AREA_ID):
            raise ValueError(
                "a rule keyed by 'area_id' needs 'members' (how its lines count), and"
                " only such a rule has them"
            )
        for inhibition in self.inhibited_by:
            wanted = KeyField.LINE_ID if inhibition.on == "area_id" else KeyField.SUBSCRIBER_ID
            if self.key is not wanted:
                raise ValueError(
                    f"'inhibited_by ... on: {inhibition.on}' applies to rules keyed by"
                    f" {wanted.value}"
                )
        names = [t.name for t in self.tiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(dupes)}")
        return self


class RuleFile(_Spec):
    rules: list[RuleSpec]
