"""The guard against records that never reach the agent: within one
consumer generation, a record past a hole in its partition's offsets names
the hole, so the worker reads the missing records itself."""

from __future__ import annotations

from stream.continuity import Continuity


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
