"""The event-time clock: which event times are believed, and when due work
is taken."""

from __future__ import annotations

import pytest

from rules.agenda import Agenda, TimeBounds

BOUNDS = TimeBounds(future_s=100.0, past_s=1000.0)


@pytest.mark.parametrize(
    ("stream", "wall", "t", "believed"),
    [
        (5000.0, 5000.0, 5100.0, True),  # exactly the future limit ahead
        (5000.0, 5000.0, 5100.5, False),
        (5000.0, 6000.0, 6100.0, True),  # ahead of the stream, not of the later wall clock
        (5000.0, 6000.0, 6100.5, False),
        (5000.0, 4000.0, 5100.5, False),  # the stream is the later one
        (5000.0, 5000.0, 4000.0, True),  # exactly the past limit behind
        (5000.0, 5000.0, 3999.0, False),
        (None, 5000.0, 5100.5, False),  # a partition with no stream time yet
        (None, 5000.0, 10.0, True),  # nothing to be behind of
        (5000.0, None, 5100.5, False),  # replay: no wall clock
        (5000.0, None, 3999.0, False),
        (None, None, 1e12, True),
    ],
)
def test_event_times_are_believed_within_the_bounds_of_stream_and_wall_clock(
    stream: float | None, wall: float | None, t: float, believed: bool
) -> None:
    agenda = Agenda()
    if stream is not None:
        agenda.advance(0, stream)
    why = agenda.implausible(0, t, wall, BOUNDS)
    assert (why is None) == believed
    if not believed:
        assert "ahead of the" in why or "behind the stream" in why  # type: ignore[operator]


def test_due_work_is_taken_once_when_the_clock_reaches_it() -> None:
    agenda = Agenda()
    agenda.note(0, "a", 100.0)
    agenda.note(0, "b", 50.0)
    agenda.note(1, "c", 10.0)
    assert agenda.take_due(0, 40.0) is None  # nothing due yet
    taken = agenda.take_due(0, 100.0)
    assert taken is not None and taken[1] == ["b", "a"] and taken[0].timestamp() == 100.0
    assert agenda.take_due(0, None) is None  # taken once
    agenda.note(0, "a", 300.0)
    agenda.note(0, "a", 200.0)  # moved earlier: the stale entry is skipped
    assert agenda.take_due(0, 150.0) is None
    later = agenda.take_due(0, 250.0)
    assert later is not None and later[1] == ["a"]
    assert agenda.take_due(0, 400.0) is None  # its stale entry at 300 is not work
    other = agenda.take_due(1, 10.0)
    assert other is not None and other[1] == ["c"]  # partitions keep their own clocks
