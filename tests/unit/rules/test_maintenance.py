"""Planned work's memory on its target's record (`rules.maintenance`)."""

from __future__ import annotations

from typing import Any

from rules import maintenance

HOUR = 3600.0


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


def finish(record: dict[str, Any], window_id: str, start: float, end: float) -> dict[str, Any]:
    record = {**record, "maint": planned(window_id, start, end)}
    done, _ = maintenance.steps(record, end, audience=lambda: ())
    return done


def test_finished_work_still_covers_what_was_measured_during_it() -> None:
    """A measurement window closed by the first event after the work ended
    was taken during the work: the finished window's span stays on the
    record for a day, so that detection is the work's, not a new outage."""
    record = finish({}, "mw-1", 10 * HOUR, 12 * HOUR)
    assert "maint" not in record
    assert maintenance.windows_in(record) == ((10 * HOUR, 12 * HOUR),)
    # the next work, two days later: the first one's span is dropped then
    record = finish(record, "mw-2", 58 * HOUR, 60 * HOUR)
    assert maintenance.windows_in(record) == ((58 * HOUR, 60 * HOUR),)
    assert record["maint_done"] == ["mw-1", "mw-2"]


def test_work_under_way_and_work_just_finished_both_cover() -> None:
    record = finish({}, "mw-1", 10 * HOUR, 12 * HOUR)
    record = {**record, "maint": planned("mw-2", 14 * HOUR, 15 * HOUR)}
    assert maintenance.windows_in(record) == ((10 * HOUR, 12 * HOUR), (14 * HOUR, 15 * HOUR))
