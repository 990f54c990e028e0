"""`rules/state.py` is the layout of every per-key record: a replay of
simulated traffic with every kind of incident and simulated work writes
only names it declares, at every level, so the description cannot drift
from what is stored."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from functools import cache
from typing import Any, get_type_hints

import pytest

from rules import state
from rules.loader import load_rule_set
from rules.records import decode_record
from rules.session import Store
from sinks import JsonlDestination
from stream.settings import DEFAULT_RULES_DIR
from stream.tools import replay as replay_module
from stream.tools.simulate import Population, simulate
from stream.tools.worksim import WorkSimulator

RULES = load_rule_set([DEFAULT_RULES_DIR]).rule_set


@cache
def names(kind: type) -> frozenset[str]:
    return frozenset(get_type_hints(kind))


def parts(record: dict[str, Any]) -> Iterator[tuple[str, type, dict[str, Any]]]:
    """(where, declared type, stored dict) for every part of a record."""
    yield "record", state.KeyRecord, record
    engine = record.get("engine", {})
    yield "engine", state.EngineState, engine
    for rule_id, rs in engine.get("rules", {}).items():
        yield f"rules.{rule_id}", state.RuleState, rs
        for tier, streak in rs.get("streak", {}).items():
            yield f"rules.{rule_id}.streak.{tier}", state.Streak, streak
        if rs.get("clear"):
            yield f"rules.{rule_id}.clear", state.Streak, rs["clear"]
        if rs.get("episode"):
            yield f"rules.{rule_id}.episode", state.Episode, rs["episode"]
            for fired in rs["episode"].get("fired", []):
                yield f"rules.{rule_id}.episode.fired", state.Fired, fired
    for sid, ss in engine.get("series", {}).items():
        yield f"series.{sid}", state.SeriesState, ss
    for tid, task in engine.get("tasks", {}).items():
        yield f"tasks.{tid}", state.Task, task
    policy = record.get("policy", {})
    yield "policy", state.PolicyState, policy
    for held in policy.get("held", []):
        yield "policy.held", state.Held, held
    if record.get("maint"):
        yield "maint", state.Planned, record["maint"]


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    assert RULES is not None
    written: list[bytes] = []  # every record as stored, along the way (tasks close, work ends)

    class Kept(Store):
        def put(self, key: str, record: dict[str, Any]) -> None:
            super().put(key, record)
            written.append(self.data[key])

    class Recording(replay_module.Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.subscribers, self.network = Kept(), Kept()

    lines = [
        json.dumps({"topic": t, "key": k, "value": v})
        for t, k, v in simulate(Population(300), 5000, incidents_every=200)
    ]
    original = replay_module.Session
    replay_module.Session = Recording  # type: ignore[misc]
    try:
        replay_module.replay(
            lines,
            RULES,
            JsonlDestination(io.StringIO()),
            event_time_created=True,
            work=WorkSimulator(7),
            partitions=3,
        )
    finally:
        replay_module.Session = original  # type: ignore[misc]
    return [decode_record(value) for value in written]


def test_every_stored_name_is_declared_in_the_layout(records: list[dict[str, Any]]) -> None:
    undeclared = {
        f"{where.split('.')[0]}: {name}"
        for record in records
        for where, kind, found in parts(record)
        for name in found
        if name not in names(kind)
    }
    assert not undeclared, sorted(undeclared)
    assert all(record.get("v") == state.VERSION for record in records if record)


def test_the_run_wrote_every_kind_of_part(records: list[dict[str, Any]]) -> None:
    """Not vacuous: the traffic made tasks, episodes, held notices, planned
    work, windows, baselines and area groups."""
    seen = {(where.split(".")[0], kind.__name__) for r in records for where, kind, _ in parts(r)}
    kinds = {kind for _, kind in seen}
    assert {"Task", "Episode", "Fired", "Streak", "Held", "Planned", "SeriesState"} <= kinds
    series = [ss for r in records for ss in r.get("engine", {}).get("series", {}).values()]
    assert {"win", "base", "chg", "grp"} <= {name for ss in series for name in ss}
