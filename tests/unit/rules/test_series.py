"""Rules that share a series (filter, measures, window, baseline, change)
compute it once and keep one copy of its state per key. Sharing must be
invisible: a rule gives the same outputs alone as next to others."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from rules.engine import State, evaluate
from rules.loader import load_rule_set
from rules.ruleset import RuleSet
from stream.settings import DEFAULT_RULES_DIR
from tests.unit.rules.test_default_rules import bill, profile

CHARGES = (DEFAULT_RULES_DIR / "abnormal-charges.yaml").read_text()


def ruleset(tmp_path: Path, **files: str) -> RuleSet:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    loaded = load_rule_set([tmp_path / f"{name}.yaml" for name in files])
    assert loaded.rule_set is not None, loaded.diagnostics
    return loaded.rule_set


def variant(rule_id: str, when: dict[str, str]) -> str:
    """abnormal-charges under another id, with other tier conditions: the
    same series (filter, 1 h window, measures, baseline)."""
    text = CHARGES.replace("- id: abnormal-charges", f"- id: {rule_id}")
    for tier, condition in when.items():
        text = re.sub(rf'(- name: {tier}\n\s+when: )"[^"]*"', rf'\g<1>"{condition}"', text, count=1)
    return text


LOWER = variant(
    "charges-low",
    {"unusual": "hourly >= 40", "high": "hourly >= 120", "extreme": "hourly >= 400"},
)


def stream() -> list[Any]:
    """Charges over 4 hours: quiet, a burst, quiet again, a second burst."""
    amounts = [5, 8, 45, 60, 90, 150, 280, 3, 2, 1, 4, 500, 700, 6, 2] * 4
    return [bill(i, a, minutes=i * 4) for i, a in enumerate(amounts)]


def run(rules: RuleSet, events: list[Any], state: State | None = None) -> tuple[State, list[str]]:
    outputs: list[str] = []
    for event in events:
        state, result = evaluate(state, event, profile(), rules)
        assert result.failures == []
        outputs += [t.model_dump_json() for t in result.tasks]
        outputs += [i.model_dump_json() for i in result.intents]
    assert state is not None
    return state, outputs


def test_rules_sharing_a_series_give_the_outputs_they_give_alone(tmp_path: Path) -> None:
    both = ruleset(tmp_path / "both", charges=CHARGES, low=LOWER)
    alone = ruleset(tmp_path / "alone", charges=CHARGES)
    low_alone = ruleset(tmp_path / "low", low=LOWER)
    (rule_a, rule_b) = both.rules
    assert rule_a.series_id == rule_b.series_id
    state, together = run(both, stream())
    _, first = run(alone, stream())
    _, second = run(low_alone, stream())
    assert len(first) >= 4 and len(second) >= 4  # both fire (the lower one earlier)
    assert sorted(together) == sorted(first + second)
    assert list(state["series"]) == [rule_a.series_id]  # one window for both
    assert len(state["series"][rule_a.series_id]["win"]) == 15  # the last hour's charges


def test_a_different_filter_is_a_different_series(tmp_path: Path) -> None:
    other = LOWER.replace("charge_type != 'top_up'", "charge_type == 'other'")
    rules = ruleset(tmp_path, charges=CHARGES, other=other)
    assert rules.rules[0].series_id != rules.rules[1].series_id


def test_a_rule_failing_its_tiers_leaves_its_series_siblings_working(tmp_path: Path) -> None:
    broken = variant("charges-broken", {"unusual": "abs(charge_type) > 1"})  # TypeError
    rules = ruleset(tmp_path, charges=CHARGES, broken=broken)
    state: State | None = None
    fired, failed = [], []
    for event in stream()[:8]:
        state, result = evaluate(state, event, profile(), rules)
        fired += [i.rule_id for i in result.intents]
        failed += [f.rule_id for f in result.failures]
    assert set(failed) == {"charges-broken"} and len(failed) == 8
    assert "abnormal-charges" in fired and "charges-broken" not in fired


def test_state_written_before_series_existed_is_carried_over(tmp_path: Path) -> None:
    """Windows and baselines used to live in each rule's own state: an
    upgrade moves them to the series and changes no output."""
    rules = ruleset(tmp_path, charges=CHARGES, low=LOWER)
    events = stream()
    state, _ = run(rules, events[:20])
    _, expected = run(rules, events[20:], copy.deepcopy(state))
    old = {k: v for k, v in copy.deepcopy(state).items() if k != "series"}
    for rule in rules.rules:
        parts = state["series"][rule.series_id]
        old["rules"][rule.id] = {
            "shape": rule.state_shape,
            **old["rules"].get(rule.id, {}),
            **parts,
        }
    upgraded, got = run(rules, events[20:], old)
    assert got == expected
    assert all("win" not in rs and "base" not in rs for rs in upgraded["rules"].values()), upgraded[
        "rules"
    ]
    # without the carry-over the window would restart and the outputs differ
    fresh = {k: v for k, v in old.items() if k != "rules"} | {"rules": {}}
    _, restarted = run(rules, events[20:], fresh)
    assert restarted != expected


def test_a_reload_keeps_shared_history_and_drops_what_no_rule_reads(tmp_path: Path) -> None:
    """Hot reload: a rule added with an existing series reads its window at
    once; a series no rule uses any more is dropped from the key's record."""
    before = ruleset(tmp_path / "before", charges=CHARGES)
    state, _ = run(before, stream()[:10])
    series = before.rules[0].series_id
    assert len(state["series"][series]["win"]) == 10

    added = ruleset(tmp_path / "added", charges=CHARGES, low=LOWER)
    state_added, outputs = run(added, stream()[10:11], copy.deepcopy(state))
    assert len(state_added["series"][series]["win"]) == 11  # one window, now for both
    # the new rule's first evaluation already sums the last hour: it fires
    assert any('"rule_id":"charges-low"' in o for o in outputs)

    resized = CHARGES.replace("size: 1h", "size: 2h")
    changed = ruleset(tmp_path / "changed", charges=resized)
    state_changed, _ = run(changed, stream()[10:11], copy.deepcopy(state))
    assert list(state_changed["series"]) == [changed.rules[0].series_id] != [series]
    assert len(state_changed["series"][changed.rules[0].series_id]["win"]) == 1  # afresh
