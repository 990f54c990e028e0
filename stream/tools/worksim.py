"""A simulated set of work systems (field force, fraud desk, care centre)
that answer the tasks Forewarn sends, for `forewarn replay --simulate-work`
and the demo: each new task gets a scripted, seeded future of
`TaskUpdate`s in event time, returned once the stream's time reaches them.

The scripts follow each team's promise most of the time and miss it some
of the time, so a replay shows every path of a task's life: repairs done in
time (a few late, so their promise escalates), fraud suspensions confirmed
(a few cancelled as not fraud), calls made, compensations paid. Which path a
task takes is a hash of its id and the seed, so a run is reproducible.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from datetime import datetime, timedelta

from schemas import FeedbackStatus, InterventionTask, TaskAction, TaskChange, TaskUpdate

# action -> [(probability, [(minutes after opening, status, outcome)])]
Script = list[tuple[float, list[tuple[float, FeedbackStatus, str | None]]]]
SCRIPTS: dict[TaskAction, Script] = {
    TaskAction.DISPATCH_REPAIR: [
        (
            0.8,
            [
                (20, FeedbackStatus.ACKNOWLEDGED, None),
                (45, FeedbackStatus.IN_PROGRESS, None),
                (100, FeedbackStatus.DONE, "repaired"),
            ],
        ),
        (
            0.2,
            [(30, FeedbackStatus.ACKNOWLEDGED, None), (300, FeedbackStatus.DONE, "repaired")],
        ),  # the 2 h promise is missed
    ],
    TaskAction.SUSPEND_SERVICE: [
        (0.9, [(3, FeedbackStatus.ACKNOWLEDGED, None), (10, FeedbackStatus.DONE, "suspended")]),
        (0.1, [(5, FeedbackStatus.CANCELLED, "not_fraud")]),
    ],
    TaskAction.CALL_CUSTOMER: [
        (0.85, [(60, FeedbackStatus.DONE, "confirmed_by_customer")]),
        (0.15, [(360, FeedbackStatus.DONE, "confirmed_by_customer")]),
    ],
    TaskAction.REVIEW_CHARGES: [(1.0, [(480, FeedbackStatus.DONE, "refunded")])],
    TaskAction.COMPENSATE: [(1.0, [(240, FeedbackStatus.DONE, "credited")])],
}


class WorkSimulator:
    def __init__(self, seed: int = 7) -> None:
        self.seed = seed
        self.queue: list[tuple[datetime, int, TaskUpdate]] = []
        self.sequence = 0  # keeps heap order stable for equal times
        self.seen: set[str] = set()

    def observe(self, outputs: Iterable[object]) -> None:
        """Schedule the work for every newly opened task among `outputs`."""
        for output in outputs:
            if not isinstance(output, InterventionTask) or output.change is not TaskChange.OPENED:
                continue
            if output.task_id in self.seen:
                continue
            self.seen.add(output.task_id)
            for minutes, status, outcome in self._script(output):
                at = output.event_time + timedelta(minutes=minutes)
                update = TaskUpdate(
                    task_id=output.task_id,
                    status=status,
                    at=at,
                    target=output.target,
                    outcome=outcome,
                    reported_by=f"sim-{output.queue.value}",
                )
                self.sequence += 1
                heapq.heappush(self.queue, (at, self.sequence, update))

    def due(self, now: datetime) -> list[TaskUpdate]:
        """The updates reported by `now`, in time order."""
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(heapq.heappop(self.queue)[2])
        return out

    def _script(self, task: InterventionTask) -> list[tuple[float, FeedbackStatus, str | None]]:
        options = SCRIPTS.get(task.action)
        if not options:
            return []  # investigations close themselves when the condition clears
        digest = hashlib.sha256(f"{self.seed}:{task.task_id}".encode()).digest()
        draw = int.from_bytes(digest[:4], "big") / 2**32
        for probability, steps in options:
            if draw < probability:
                return steps
            draw -= probability
        return options[-1][1]
