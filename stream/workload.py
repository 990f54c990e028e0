"""The open tasks of the partitions this worker owns, by queue, for the
`forewarn_tasks_open` and `forewarn_tasks_overdue` gauges: built from the
stored records when a partition is assigned (`Processor.index`) and kept up
to date from the task outputs the worker sends. A task is overdue once its
promise was missed (it escalated) until it is closed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from schemas import InterventionTask, TaskChange


class Workload:
    def __init__(self) -> None:
        # partition -> task id -> (queue, overdue)
        self.tasks: dict[int, dict[str, tuple[str, bool]]] = {}

    def track(self, partition: int, task: InterventionTask) -> None:
        open_here = self.tasks.setdefault(partition, {})
        if task.status.closed:
            open_here.pop(task.task_id, None)
            return
        overdue = task.escalation_level > 0 or task.change is TaskChange.ESCALATED
        open_here[task.task_id] = (task.queue.value, overdue)

    def index(self, partition: int, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """A stored key's open tasks (its engine state's `tasks`)."""
        open_here = self.tasks.setdefault(partition, {})
        for task_id, entry in entries.items():
            open_here.setdefault(task_id, (entry["queue"], bool(entry.get("level"))))

    def forget(self, partition: int) -> None:
        self.tasks.pop(partition, None)

    def by_queue(self) -> tuple[Counter[str], Counter[str]]:
        """(open, overdue) task counts by queue."""
        opened: Counter[str] = Counter()
        overdue: Counter[str] = Counter()
        for tasks in self.tasks.values():
            for queue, late in tasks.values():
                opened[queue] += 1
                overdue[queue] += late
        return opened, overdue
