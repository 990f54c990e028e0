"""Planned maintenance, read from the compacted `maintenance-windows` topic
(key: the target id, so the window reaches the partition that owns the
target's state; one window per target at a time: a new window for a target
replaces the previous one, a tombstone withdraws it).

During a window, network rules on its target open no tasks and send no
outage notices; the target's subscribers are told a lead time before it
starts (`announce_minutes`) and again when it ends. Like every input,
unknown extra fields are ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

NonEmpty = Annotated[str, Field(min_length=1, max_length=128)]
MAX_WINDOW_DAYS = 7


class MaintenanceTargetType(StrEnum):
    CELL = "cell"
    BROADBAND_LINE = "broadband_line"
    AREA = "area"  # every line of the access node


class MaintenanceTarget(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    type: MaintenanceTargetType
    id: NonEmpty


class WindowText(BaseModel):
    """Customer-facing words about the work, in every language we send."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)

    en: Annotated[str, Field(min_length=1, max_length=300)]
    zh_cn: Annotated[str, Field(min_length=1, max_length=300, alias="zh-CN")]


class MaintenanceWindow(BaseModel):
    """One planned-work window (topic `maintenance-windows`, key `target.id`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    window_id: NonEmpty
    target: MaintenanceTarget
    start: AwareDatetime
    end: AwareDatetime
    reason: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="For the record and the work systems, e.g. `antenna replacement`."
    )
    message: WindowText | None = Field(
        default=None, description="What the customer is told about the work, when given."
    )
    announce_minutes: Annotated[int, Field(ge=0, le=30 * 24 * 60)] = Field(
        default=24 * 60, description="How long before `start` the subscribers are told."
    )
    planned_at: AwareDatetime = Field(
        description="When the window was planned: an announcement due before it goes at this time."
    )
    planned_by: NonEmpty

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if self.end <= self.start:
            raise ValueError("'end' must be after 'start'")
        if (self.end - self.start).total_seconds() > MAX_WINDOW_DAYS * 86400:
            raise ValueError(f"a window lasts at most {MAX_WINDOW_DAYS} days")
        return self
