"""Task feedback: what the work systems (field force, fraud desk, care
centre) report about an `InterventionTask`, read from the `task-updates`
topic. Follows TM Forum TMF621 Trouble Ticket status changes where they
overlap: `acknowledged`, `inProgress`, `resolved` (here `done`), `cancelled`;
`failed` says the work was attempted and did not fix the problem.
`approved` is an operator releasing work a guard held (`forewarn held
release`); `cancelled` on held work drops it (`forewarn held drop`).

Keyed by the task's target id (`target.id`: the subscriber, cell or line),
so the update reaches the partition whose state owns the task. Like every
input, unknown extra fields are ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.outputs import TaskTarget

NonEmpty = Annotated[str, Field(min_length=1, max_length=128)]


class FeedbackStatus(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    APPROVED = "approved"


class TaskUpdate(BaseModel):
    """One status report on a task (topic `task-updates`, key `target.id`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    task_id: NonEmpty
    status: FeedbackStatus
    at: AwareDatetime = Field(description="When the work system recorded the change.")
    target: TaskTarget = Field(description="The task's target; its id is the record key.")
    outcome: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")] | None = Field(
        default=None, description="A short outcome code, e.g. `repaired`, `suspended`."
    )
    note: Annotated[str, Field(max_length=500)] | None = None
    reported_by: NonEmpty = Field(description="The person or system reporting it.")
