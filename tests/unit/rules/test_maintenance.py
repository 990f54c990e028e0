"""Planned work's memory on its target's record (`rules.records`, `rules.maintenance`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rules.loader import load_rule_set
from rules.records import Record, apply_clock, covers_of
from stream.settings import DEFAULT_RULES_DIR

HOUR = 3600.0
RULES = load_rule_set([DEFAULT_RULES_DIR]).rule_set


def planned(window_id: str, start: float, end: float) -> dict[str, Any]:
    return {
        "id": window_id,
        "key": "c7",
        "target": "cell",
        "start": start,
        "end": end,
        "announce": start - 24 * HOUR,
        "reason": None,
        "message": None,
        "did": ["announced"],
        "told": [],
    }


def finish(record: Record, window_id: str, start: float, end: float) -> Record:
    """The cell's clock reaches the end of the work."""
    assert RULES is not None
    record = {**record, "maint": planned(window_id, start, end)}
    done, _ = apply_clock(record, "c7", False, datetime.fromtimestamp(end, UTC), RULES)
    return done


def windows(record: Record) -> tuple[tuple[float, float], ...]:
    covers = covers_of(record)
    return covers.windows if covers is not None else ()


def test_finished_work_still_covers_what_was_measured_during_it() -> None:
    """A measurement window closed by the first event after the work ended
    was taken during the work: the finished window stays among the cell's
    covers for a day, so that detection is the work's, not a new outage."""
    record = finish({}, "mw-1", 10 * HOUR, 12 * HOUR)
    assert "maint" not in record
    assert windows(record) == ((10 * HOUR, 12 * HOUR),)
    # the next work, two days later: the first one is forgotten then
    record = finish(record, "mw-2", 58 * HOUR, 60 * HOUR)
    assert windows(record) == ((58 * HOUR, 60 * HOUR),)
    assert record["maint_done"] == ["mw-1", "mw-2"]


def test_work_under_way_and_work_just_finished_both_cover() -> None:
    record = finish({}, "mw-1", 10 * HOUR, 12 * HOUR)
    record = {**record, "maint": planned("mw-2", 14 * HOUR, 15 * HOUR)}
    assert sorted(windows(record)) == [(10 * HOUR, 12 * HOUR), (14 * HOUR, 15 * HOUR)]
