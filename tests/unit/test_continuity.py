"""The guard against records that never reach the agent: within one
consumer generation, a record past a hole in its partition's offsets names
the hole, so the worker reads the missing records itself."""

from __future__ import annotations

import pytest

from stream.continuity import Continuity, recovery_progress, stalled


def holes(c: Continuity, offsets: list[int], generation: int = 1) -> list[tuple[int, int] | None]:
    return [c.check("usage", 0, o, generation) for o in offsets]


def test_consecutive_offsets_and_redeliveries_have_no_hole() -> None:
    c = Continuity()
    assert holes(c, [5, 6, 7, 3, 4, 5, 6, 7, 8]) == [None] * 9


def test_a_record_past_a_hole_names_the_missing_offsets_once() -> None:
    c = Continuity()
    assert holes(c, [0, 1, 2]) == [None] * 3
    assert c.check("usage", 0, 6, 1) == (3, 6)  # 3, 4 and 5 never arrived
    assert holes(c, [7, 8]) == [None, None]


def test_a_new_generation_a_compacted_topic_or_another_partition_is_no_hole() -> None:
    c = Continuity(exempt=frozenset({"profiles"}))
    assert holes(c, [0, 1]) == [None] * 2
    assert c.check("usage", 0, 40, 2) is None  # after a rebalance: from the commit
    assert [c.check("profiles", 0, o, 1) for o in (0, 9, 30)] == [None] * 3
    assert c.check("usage", 1, 7, 2) is None
    assert c.check("usage", 1, 9, 2) == (8, 9)


@pytest.mark.parametrize(
    ("ends", "processed", "committed", "resume"),
    [
        # taken over from a dead worker: nothing delivered, records waiting past its commit
        ({("t", 0): 250}, {}, {("t", 0): 105}, {("t", 0): 105}),
        # caught up: what this worker processed, or what the group committed, reaches the end
        ({("t", 0): 250}, {("t", 0): 249}, {}, {}),
        ({("t", 0): 250}, {}, {("t", 0): 250}, {}),
        # this worker processed past the last commit: resume after its own work
        ({("t", 0): 250}, {("t", 0): 199}, {("t", 0): 150}, {("t", 0): 200}),
        # a partition never committed, never processed, with records
        ({("t", 1): 3}, {}, {}, {("t", 1): 0}),
        # an empty partition is not stalled
        ({("t", 2): 0}, {}, {}, {}),
    ],
)
def test_stalled_partitions_resume_after_the_work_already_done(
    ends: dict[tuple[str, int], int],
    processed: dict[tuple[str, int], int],
    committed: dict[tuple[str, int], int],
    resume: dict[tuple[str, int], int],
) -> None:
    assert stalled(ends, processed, committed) == resume


def test_a_recovery_is_stuck_only_when_records_remain_and_do_not_move() -> None:
    progress, stuck = recovery_progress(None, True, 105, now=0.0, after=60)
    assert (progress, stuck) == ((105, 0.0), False)
    progress, stuck = recovery_progress(progress, True, 105, now=59.0, after=60)
    assert not stuck
    assert recovery_progress(progress, True, 105, now=60.0, after=60) == ((105, 0.0), True)
    # progress resets the clock; a finished or absent recovery is never stuck
    assert recovery_progress(progress, True, 80, now=61.0, after=60) == ((80, 61.0), False)
    assert recovery_progress((0, 0.0), True, 0, now=500.0, after=60) == ((0, 0.0), False)
    assert recovery_progress(progress, False, 0, now=500.0, after=60) == (None, False)
