"""Guard rails on drastic work: a rule's task (or its escalation's
follow-up task) may carry `guard: {max, per}`, a budget of tasks per aligned
window of event time. The budget is spent where the work is opened, in the
partition of the key, so no two workers ever share a counter: each
partition may open `ceil(max / partitions)` tasks per window. Across all
partitions at most `partitions * ceil(max / partitions)` tasks open, the
budget plus less than one task per partition of slack; when the keys are
spread unevenly (a storm on a few partitions), fewer may open before tasks
are held. Both bounds are in docs/operations.md.

A `Budget` wraps one partition's counters (`{"<rule>/<tier>/<kind>":
[window start, used]}`), kept as its own record in the partition's state,
so a restart, a lost disk (the changelog) and a replay count the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rules.durations import parse_duration
from rules.model import GuardSpec

BUDGET_KEY = "\x00guard"  # the partition's budget record, beside its keys' records


class Budget:
    """One partition's counters; `load` reads them on first use, so a step
    with no guarded work never reads the budget record."""

    def __init__(
        self,
        state: dict[str, Any] | None = None,
        partitions: int = 1,
        load: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self._state: dict[str, list[float]] | None = None if load else dict(state or {})
        self._load = load
        self.partitions = max(1, partitions)
        self.changed = False

    @property
    def state(self) -> dict[str, list[float]]:
        if self._state is None:
            assert self._load is not None
            self._state = dict(self._load() or {})
        return self._state

    def share(self, guard: GuardSpec) -> int:
        """What one partition may spend per window."""
        return math.ceil(guard.max / self.partitions)

    def take(self, name: str, guard: GuardSpec, t: float) -> bool:
        """Spend one task of `name`'s budget at event time `t`; False when
        the window's share is spent (the task is held)."""
        per = parse_duration(guard.per)
        start = math.floor(t / per) * per
        window, used = self.state.get(name, (start, 0))
        if start > window:  # a new window; a late event counts against the current one
            window, used = start, 0
        if used >= self.share(guard):
            return False
        self.state[name] = [window, used + 1]
        self.changed = True
        return True
