"""What a rule set does to customers, counted: the summary `forewarn replay`
ends with, and `forewarn rules diff`, which replays the same recorded
events through two rule sets (the deployed one and an edited one) and says,
per rule and tier, what changes: notices, tasks, suppressions by reason,
channels, and which subscribers' outcome changed and why (a new rule, the
fatigue cap taking the room another rule now uses, ...).

The fatigue cap and the coherence rules are shared across rules, so adding
a rule can silence another one's notices for some subscribers: the diff
shows exactly that, before the rules reach production.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from rules.records import Effects, Suppression
from rules.ruleset import RuleSet
from schemas import CustomerNotice, DeadLetter, InterventionTask, TaskChange


@dataclass
class Summary:
    """Counts of one run, per (rule, tier); and who got which notice."""

    notices: Counter[tuple[str, str]] = field(default_factory=Counter)
    channels: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    tasks: Counter[tuple[str, str]] = field(default_factory=Counter)  # tasks opened
    suppressed: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # + reason
    dead: Counter[str] = field(default_factory=Counter)
    # subscriber -> (rule, tier) notices they got; and why others did not go
    received: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    refused: dict[tuple[str, str, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, step: Effects) -> None:
        for output in step.outputs:
            if isinstance(output, CustomerNotice):
                self.notices[(output.rule_id, output.tier)] += 1
                self.channels[(output.rule_id, output.tier, output.channel.value)] += 1
                self.received[output.subscriber_id].add((output.rule_id, output.tier))
            elif isinstance(output, InterventionTask) and output.change is TaskChange.OPENED:
                self.tasks[(output.rule_id, output.tier)] += 1
        for s in step.suppressed:
            self.suppress(s)

    def suppress(self, s: Suppression) -> None:
        tier = s.tier or "*"
        self.suppressed[(s.rule_id, tier, s.reason)] += 1
        self.refused[(s.key, s.rule_id, tier)].add(s.reason)

    def dead_letter(self, letter: DeadLetter) -> None:
        self.dead[letter.error_type] += 1

    def rows(self) -> list[tuple[str, str]]:
        keys = set(self.notices) | set(self.tasks) | {(r, t) for r, t, _ in self.suppressed}
        return sorted(keys)

    def as_json(self) -> dict[str, Any]:
        return {
            "rules": [
                {
                    "rule": rule,
                    "tier": tier,
                    "notices": self.notices[(rule, tier)],
                    "tasks_opened": self.tasks[(rule, tier)],
                    "channels": {
                        c: n
                        for (r, t, c), n in sorted(self.channels.items())
                        if (r, t) == (rule, tier)
                    },
                    "suppressed": {
                        reason: n
                        for (r, t, reason), n in sorted(self.suppressed.items())
                        if (r, t) == (rule, tier)
                    },
                }
                for rule, tier in self.rows()
            ],
            "dead_letters": dict(sorted(self.dead.items())),
        }


def write_suppressions(out: TextIO, step: Effects) -> None:
    for s in step.suppressed:
        out.write(json.dumps(s._asdict(), ensure_ascii=False) + "\n")


def table(summary: Summary) -> str:
    """The replay summary: one line per rule and tier, then dead letters."""
    lines = [f"{'rule/tier':<40} {'notices':>8} {'tasks':>6}  suppressed"]
    for rule, tier in summary.rows():
        reasons = ", ".join(
            f"{reason} {n}"
            for (r, t, reason), n in sorted(summary.suppressed.items())
            if (r, t) == (rule, tier)
        )
        lines.append(
            f"{rule + '/' + tier:<40} {summary.notices[(rule, tier)]:>8} "
            f"{summary.tasks[(rule, tier)]:>6}  {reasons or '-'}"
        )
    if summary.dead:
        lines.append(
            "dead letters: " + ", ".join(f"{k} {n}" for k, n in sorted(summary.dead.items()))
        )
    return "\n".join(lines)


@dataclass
class Change:
    subscriber: str
    rule: str
    tier: str
    before: bool  # got the notice before the change
    after: bool
    why: str


def changes(
    before: Summary, after: Summary, after_rules: RuleSet, before_rules: RuleSet
) -> list[Change]:
    """Subscribers whose notices differ, each with the reason in words."""
    out: list[Change] = []
    for sub in sorted(set(before.received) | set(after.received)):
        got_before, got_after = before.received.get(sub, set()), after.received.get(sub, set())
        for rule, tier in sorted(got_before ^ got_after):
            now = (rule, tier) in got_after
            if now:
                why = (
                    "new rule" if before_rules.rule(rule) is None else _why(before, sub, rule, tier)
                )
            else:
                why = (
                    "rule removed"
                    if after_rules.rule(rule) is None
                    else _why(after, sub, rule, tier)
                )
            out.append(Change(sub, rule, tier, not now, now, why))
    # notices lost first: what the change costs existing rules is the news
    return sorted(out, key=lambda c: (c.after, c.subscriber, c.rule, c.tier))


# Of the reasons a subscriber's notice was held back in a run, the one that
# explains a lost notice best (a deferral is not a loss).
_WHY_ORDER = (
    "fatigue_cap",
    "not_notified",
    "superseded",
    "opt_out",
    "cooldown",
    "duplicate",
    "late_event",
    "quiet_hours_deferred",
)


def _why(run: Summary, sub: str, rule: str, tier: str) -> str:
    """Why `sub` did not get `rule/tier` in `run` (a `<tier>:resolved`
    notice is suppressed under its tier's name)."""
    reasons = run.refused.get((sub, rule, tier), set()) | run.refused.get(
        (sub, rule, tier.split(":", maxsplit=1)[0]), set()
    )
    ranked = sorted(reasons, key=lambda r: _WHY_ORDER.index(r) if r in _WHY_ORDER else 99)
    return ranked[0] if ranked else "condition did not fire"


def diff_table(before: Summary, after: Summary) -> str:
    lines = [
        f"{'rule/tier':<40} {'notices':>15} {'tasks':>11}"
        "  suppressions and channels (before -> after, changed only)"
    ]
    for rule, tier in sorted(set(before.rows()) | set(after.rows())):
        key = (rule, tier)
        reasons = sorted(
            {r for (ru, t, r) in before.suppressed if (ru, t) == key}
            | {r for (ru, t, r) in after.suppressed if (ru, t) == key}
        )
        sup = ", ".join(
            f"{r} {before.suppressed[(rule, tier, r)]}->{after.suppressed[(rule, tier, r)]}"
            for r in reasons
            if before.suppressed[(rule, tier, r)] != after.suppressed[(rule, tier, r)]
        )
        moved = ", ".join(
            f"{c} {before.channels[(rule, tier, c)]}->{after.channels[(rule, tier, c)]}"
            for c in sorted(
                {c for (ru, t, c) in before.channels if (ru, t) == key}
                | {c for (ru, t, c) in after.channels if (ru, t) == key}
            )
            if before.channels[(rule, tier, c)] != after.channels[(rule, tier, c)]
        )
        if moved:
            sup = f"{sup}; channels {moved}" if sup else f"channels {moved}"
        n0, n1, t0, t1 = (
            before.notices[key],
            after.notices[key],
            before.tasks[key],
            after.tasks[key],
        )
        mark = "*" if (n0, t0) != (n1, t1) or sup else " "
        lines.append(
            f"{mark}{rule + '/' + tier:<39} {n0:>7}->{n1:<7} {t0:>5}->{t1:<5}  {sup or '-'}"
        )
    return "\n".join(lines)


def diff_json(before: Summary, after: Summary, sample: Iterable[Change]) -> dict[str, Any]:
    return {
        "before": before.as_json(),
        "after": after.as_json(),
        "changed_subscribers": [c.__dict__ for c in sample],
    }
