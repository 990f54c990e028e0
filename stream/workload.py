"""The open tasks of the partitions this worker owns, by queue, for the
`forewarn_tasks_open`, `forewarn_tasks_overdue` and `forewarn_tasks_held`
gauges: built from the stored records when a partition is assigned
(`Processor.index`) and kept up to date from the task outputs the worker
sends. A task is overdue once its promise was missed (it escalated) until it
is closed; a held task (past its guard budget) waits for an operator and is
counted apart from the open ones."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from schemas import InterventionTask, TaskChange, TaskStatus

OPEN, OVERDUE, HELD = "open", "overdue", "held"


class Workload:
    def __init__(self) -> None:
        # partition -> task id -> (queue, OPEN | OVERDUE | HELD)
        self.tasks: dict[int, dict[str, tuple[str, str]]] = {}
        # partition -> target key -> (start, end) of its maintenance window
        self.windows: dict[int, dict[str, tuple[float, float]]] = {}

    def window(self, partition: int, key: str, maint: Mapping[str, Any] | None) -> None:
        """A target's planned work as its record now has it (None: none)."""
        here = self.windows.setdefault(partition, {})
        if maint:
            here[key] = (maint["start"], maint["end"])
        else:
            here.pop(key, None)

    def window_states(self, now: float) -> Counter[str]:
        """Windows planned and in force at `now` (wall clock)."""
        states: Counter[str] = Counter()
        for here in self.windows.values():
            for start, end in here.values():
                if now < start:
                    states["planned"] += 1
                elif now < end:
                    states["in_force"] += 1
        return states

    def track(self, partition: int, task: InterventionTask) -> None:
        open_here = self.tasks.setdefault(partition, {})
        if task.status.closed:
            open_here.pop(task.task_id, None)
            return
        if task.status is TaskStatus.HELD:
            open_here[task.task_id] = (task.queue.value, HELD)
            return
        overdue = task.escalation_level > 0 or task.change is TaskChange.ESCALATED
        open_here[task.task_id] = (task.queue.value, OVERDUE if overdue else OPEN)

    def index(self, partition: int, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """A stored key's open tasks (its engine state's `tasks`)."""
        open_here = self.tasks.setdefault(partition, {})
        for task_id, entry in entries.items():
            if entry.get("status") == TaskStatus.HELD.value:
                state = HELD
            else:
                state = OVERDUE if entry.get("level") else OPEN
            open_here.setdefault(task_id, (entry["queue"], state))

    def forget(self, partition: int) -> None:
        self.tasks.pop(partition, None)
        self.windows.pop(partition, None)

    def by_queue(self) -> tuple[Counter[str], Counter[str], Counter[str]]:
        """(open, overdue, held) task counts by queue; overdue tasks are open."""
        opened: Counter[str] = Counter()
        overdue: Counter[str] = Counter()
        held: Counter[str] = Counter()
        for tasks in self.tasks.values():
            for queue, state in tasks.values():
                if state == HELD:
                    held[queue] += 1
                    continue
                opened[queue] += 1
                overdue[queue] += state == OVERDUE
        return opened, overdue, held
