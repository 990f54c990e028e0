"""A care manager's audit of a run's outputs: the checks that say whether
what Forewarn sent holds together as customer care (issue: closed-loop
care). Used by the tests over a simulated fortnight; each check returns the
offending items, so a failure shows them."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PEOPLE_WORK = {
    "dispatch_repair",
    "call_customer",
    "suspend_service",
    "compensate",
    "review_charges",
}
# a lone "?" (fullwidth brackets and punctuation count as separators too)
PLACEHOLDER = re.compile("(^|[\\s(\uff08:\uff1a])\\?($|[\\s)\uff09,.\uff0c\u3002])")


@dataclass
class Audit:
    notices: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, outputs: list[dict[str, Any]]) -> Audit:
        audit = cls()
        for o in outputs:
            topic, value = o["topic"], o["value"]
            {"customer-notices": audit.notices, "intervention-tasks": audit.tasks}.get(
                topic, audit.dead
            ).append(value)
        return audit

    # -- broadband: repair before compensation -------------------------
    def slow_lines(self) -> set[str]:
        return {t["target"]["id"] for t in self.tasks if t["rule_id"] == "broadband-slow"}

    def compensation_without_prior_repair(self) -> list[str]:
        bad = []
        repaired: set[str] = set()
        for t in self.tasks:
            line = t["target"]["id"]
            if t["rule_id"] != "broadband-slow" or t["change"] != "opened":
                continue
            if t["action"] == "dispatch_repair":
                repaired.add(line)
            elif t["action"] == "compensate" and line not in repaired:
                bad.append(line)
        return bad

    def lines_without_repair(self) -> list[str]:
        repaired = {
            t["target"]["id"]
            for t in self.tasks
            if t["rule_id"] == "broadband-slow" and t["action"] == "dispatch_repair"
        }
        return sorted(self.slow_lines() - repaired)

    # -- tasks closed only as their action allows -------------------------
    def people_work_closed_without_feedback(self) -> list[dict[str, Any]]:
        """Work done by people closes on the work system's word, or when a
        more severe tier's task takes it over (`superseded`, checked below)."""
        return [
            t
            for t in self.tasks
            if t["action"] in PEOPLE_WORK
            and t["status"] in ("done", "cancelled", "resolved")
            and t["change"] not in ("feedback", "superseded")
        ]

    def repeats_without_work_done(self) -> list[dict[str, Any]]:
        """A repeat task (work reported done did not hold) follows a task of
        the same rule and target reported done before it."""
        done = {
            (t["task_id"], t["rule_id"], t["target"]["id"]): t["event_time"]
            for t in self.tasks
            if t["change"] == "feedback" and t["status"] == "done"
        }
        return [
            t
            for t in self.tasks
            if t["change"] == "opened"
            and (t["note"] or "").startswith("repeat")
            and not (
                (key := (t["parent_task_id"], t["rule_id"], t["target"]["id"])) in done
                and _time(done[key]) <= _time(t["event_time"])
            )
        ]

    def superseded_without_successor(self) -> list[dict[str, Any]]:
        """A task closed as taken over must name a task of the same rule and
        target, of another tier, opened at that moment."""
        opened = {
            (t["task_id"], t["rule_id"], t["target"]["id"], t["tier"], t["event_time"])
            for t in self.tasks
            if t["change"] == "opened"
        }
        bad = []
        for t in self.tasks:
            if t["change"] != "superseded":
                continue
            found = re.search(r"superseded by task ([0-9a-f]+) \(", t["note"] or "")
            successor = found.group(1) if found else None
            if not any(
                o[0] == successor
                and o[1:3] == (t["rule_id"], t["target"]["id"])
                and o[3] != t["tier"]
                and o[4] == t["event_time"]
                for o in opened
            ):
                bad.append(t)
        return bad

    # -- notices coherent with their episode -------------------------------
    def resolutions_without_opening(self) -> list[dict[str, Any]]:
        opened = {
            (n["subscriber_id"], n["correlation_id"]) for n in self.notices if ":" not in n["tier"]
        }
        return [
            n
            for n in self.notices
            if n["tier"].endswith(":resolved")
            and (n["subscriber_id"], n["correlation_id"]) not in opened
        ]

    def openings_delivered_after_their_resolution(self) -> list[dict[str, Any]]:
        resolved: dict[tuple[str, str], datetime] = {}
        for n in self.notices:
            if n["tier"].endswith(":resolved"):
                resolved[(n["subscriber_id"], n["correlation_id"])] = _time(n["event_time"])
        bad = []
        for n in self.notices:
            if ":" in n["tier"]:
                continue
            end = resolved.get((n["subscriber_id"], n["correlation_id"]))
            start = _time(n["deliver_after"] or n["event_time"])
            if end is not None and start > end:
                bad.append(n)
        return bad

    def placeholders(self) -> list[str]:
        texts = [
            text
            for n in self.notices
            for text in (n["title"], n["message"], n.get("suggested_action") or "")
        ] + [t["summary"] for t in self.tasks]
        return [text for text in texts if PLACEHOLDER.search(text)]

    def elderly_info_by_voice(self, elderly: set[str]) -> list[dict[str, Any]]:
        return [
            n
            for n in self.notices
            if n["subscriber_id"] in elderly
            and n["severity"] == "info"
            and n["channel"] == "voice_call"
        ]

    # -- figures for the closing note ---------------------------------------
    def figures(self) -> dict[str, Any]:
        changes = Counter(f"{t['action']}:{t['change']}:{t['status']}" for t in self.tasks)
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for t in self.tasks:
            by_task[t["task_id"]].append(t)
        return {
            "notices": len(self.notices),
            "tasks_opened": sum(t["change"] == "opened" for t in self.tasks),
            "task_outputs": len(self.tasks),
            "escalations": sum(t["change"] == "escalated" for t in self.tasks),
            "closed_by_feedback": sum(
                t["change"] == "feedback" and t["status"] in ("done", "cancelled")
                for t in self.tasks
            ),
            "closed_by_clearing": sum(t["change"] == "closed_by_clearing" for t in self.tasks),
            "slow_lines": len(self.slow_lines()),
            "compensations": sum(
                t["action"] == "compensate" and t["change"] == "opened" for t in self.tasks
            ),
            "notice_parts": dict(
                Counter(
                    n["tier"].split(":")[1] if ":" in n["tier"] else "opening" for n in self.notices
                )
            ),
            "by_change": dict(sorted(changes.items())),
            "dead_letters": len(self.dead),
        }


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
