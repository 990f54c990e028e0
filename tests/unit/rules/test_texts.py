"""Notice texts are checked at load against representative facts, so one
that would print a missing value is refused with a located diagnostic; one
that still fails at run time costs that notice only, reported with its
rule's id."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rules.loader import LoadResult, load_rule_set
from rules.maintenance import local_span
from rules.records import apply_intent
from schemas import NoticeIntent, Severity

RULES = """
rules:
  - id: careless
    description: Prints a baseline that new subscribers do not have.
    source: billing
    category: charges
    measures: {charged: "amount"}
    baseline: {of: "amount", per: 1h, lookback: 30d, min_history: 7d}
    tiers:
      - name: big
        when: "charged >= 100"
        severity: critical
        dedup: {scope: episode}
        notice:
          title: {en: "Charge", zh-CN: "扣费"}
          message: {en: "Usually {{ baseline | num }} CNY", zh-CN: "通常{{ baseline | num }}元"}
  - id: careful
    description: Says in words that there is no baseline yet.
    source: billing
    category: charges
    measures: {charged: "amount"}
    baseline: {of: "amount", per: 1h, lookback: 30d, min_history: 7d}
    tiers:
      - name: big
        when: "charged >= 100"
        severity: critical
        dedup: {scope: episode}
        notice:
          title: {en: "Charge", zh-CN: "扣费"}
          message:
            en: "{% if baseline is not none %}Usually {{ baseline | num }} CNY{% else %}No history yet{% endif %}"
            zh-CN: "{% if baseline is not none %}通常{{ baseline | num }}元{% else %}暂无历史{% endif %}"
"""


def big_charge(rule_id: str, facts: dict[str, float]) -> NoticeIntent:
    """The notice intent of rule `rule_id`'s critical tier `big` for s1."""
    return NoticeIntent(
        detection_id="d1",
        subscriber_id="s1",
        rule_id=rule_id,
        rule_version="v",
        tier="big",
        severity=Severity.CRITICAL,
        category="charges",
        facts=facts,
        event_time=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
        source_event_ids=("b1",),
    )


def load(tmp_path: Path, text: str) -> LoadResult:
    (tmp_path / "r.yaml").write_text(text, encoding="utf-8")
    return load_rule_set([tmp_path])


def test_a_text_that_would_print_a_missing_value_is_refused_at_load(tmp_path: Path) -> None:
    result = load(tmp_path, RULES)
    assert result.rule_set is None
    assert [(d.rule_id, d.field) for d in result.diagnostics] == [
        ("careless", "tiers[0].notice.message.en"),
        ("careless", "tiers[0].notice.message.zh-CN"),
    ]
    assert "fails when a value is missing: 'num' got no value" in result.diagnostics[0].message


def test_a_text_that_fails_at_run_time_costs_only_its_notice(tmp_path: Path) -> None:
    """A notice held while its rule was edited to read a name its facts lack."""
    careful = RULES[RULES.index("  - id: careful") :]
    rules = load(tmp_path, "rules:\n" + careful).rule_set
    assert rules is not None
    intent = big_charge("careful", {"charged": 150.0})  # facts from before it read `baseline`
    record, effects = apply_intent({}, "s1", intent, rules)
    assert effects.outputs == [] and record == {}
    assert [rule for rule, _ in effects.failures] == ["careful"]
    assert "baseline" in effects.failures[0][1]


def test_a_text_can_read_its_tiers_own_threshold(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """rules:
  - id: spend
    description: d
    source: billing
    category: charges
    measures: {charged: amount}
    tiers:
      - name: big
        when: "charged >= 250"
        severity: critical
        dedup: {scope: episode}
        notice:
          title: {en: "Over {{ threshold | num(0) }} CNY", zh-CN: "超过{{ threshold | num(0) }}元"}
          message: {en: "{{ charged | num }} CNY", zh-CN: "{{ charged | num }}元"}
""",
    ).rule_set
    assert rules is not None
    intent = big_charge("spend", {"charged": 300.0, "threshold": 250.0})
    _, effects = apply_intent({}, "s1", intent, rules)
    assert [o.title for o in effects.outputs] == ["超过250元"]  # type: ignore[union-attr]


def test_texts_rendered_once_are_reused_only_for_exactly_the_same_values() -> None:
    from rules.templates import Renderer

    r = Renderer()
    source = "{{ n }} of {{ who }}"
    assert r.render(source, {"n": 1, "who": "you"}) == "1 of you"
    assert r.render(source, {"n": 1.0, "who": "you"}) == "1.0 of you"  # equal, not the same
    assert r.render(source, {"n": True, "who": "you"}) == "True of you"
    assert r.render(source, {"n": 1, "who": "them"}) == "1 of them"
    assert r.render(source, {"n": [1, 2], "who": "you"}) == "[1, 2] of you"  # not a key: rendered
    assert r.render(source, {"n": 1, "who": "you"}) == "1 of you"
    # only the names a text reads make it differ: other facts do not cost a render
    assert r.render(source, {"n": 1, "who": "you", "balance": 3.5}) == "1 of you"
    assert len(r._texts) == 4
    # a missing name and a none value are not the same text
    maybe = "{% if x is defined %}{{ x }}{% else %}no x{% endif %}"
    assert [r.render(maybe, f) for f in ({}, {"x": None}, {})] == ["no x", "None", "no x"]
    # a text with no placeholder is itself (trimmed), whatever the facts
    assert r.render("  Low balance \n", {"n": [1]}) == "Low balance"


def test_planned_work_times_read_like_a_person_wrote_them() -> None:
    """A planned-work notice names the day once, in the subscriber's own
    timezone and language; the end repeats the day only over midnight."""
    start = datetime(2026, 11, 21, 17, 0, tzinfo=UTC)  # 01:00 on Sunday in Shanghai
    same_day = datetime(2026, 11, 21, 21, 0, tzinfo=UTC)
    next_day = datetime(2026, 11, 22, 18, 30, tzinfo=UTC)
    assert local_span(start, same_day, "Asia/Shanghai", "en") == ("Sun 22 Nov 01:00", "05:00")
    assert local_span(start, next_day, "Asia/Shanghai", "en") == (
        "Sun 22 Nov 01:00",
        "Mon 23 Nov 02:30",
    )
    assert local_span(start, same_day, "Asia/Shanghai", "zh-CN") == (
        "11月22日（周日）01:00",  # noqa: RUF001
        "05:00",
    )
    # the same window for a subscriber in Paris: Saturday evening there
    assert local_span(start, same_day, "Europe/Paris", "en") == ("Sat 21 Nov 18:00", "22:00")
