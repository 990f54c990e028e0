"""Rule files: every problem located and reported at once; the shipped
default ruleset is clean."""

from __future__ import annotations

from pathlib import Path

from rules.loader import load_rule_set
from stream.settings import DEFAULT_RULES_DIR

DATA = Path(__file__).parent / "testdata"


def messages(text: str, tmp_path: Path) -> list[str]:
    f = tmp_path / "r.yaml"
    f.write_text(text, encoding="utf-8")
    result = load_rule_set([f])
    assert result.rule_set is None
    return [str(d).removeprefix(f"{f}:") for d in result.diagnostics]


def test_default_ruleset_is_clean_and_complete() -> None:
    result = load_rule_set([DEFAULT_RULES_DIR])
    assert result.diagnostics == []
    assert result.rule_set is not None
    assert sorted(r.id for r in result.rule_set.rules) == [
        "abnormal-charges",
        "broadband-slow",
        "cell-degradation",
        "data-usage",
        "pon-outage",
        "prepaid-balance",
        "roaming-welcome",
        "unexpected-subscriptions",
    ]


def test_five_mistakes_give_five_located_diagnostics() -> None:
    f = DATA / "five-mistakes.bad.yaml"
    result = load_rule_set([f])
    assert result.rule_set is None
    assert [str(d).removeprefix(f"{f}:") for d in result.diagnostics] == [
        "7:15: rule \"data-usage-copy\": measures.ratio: unknown name 'cycle_usd'; did you mean 'cycle_used'?",
        '15:58: rule "data-usage-copy": tiers[0].notice.message.zh-CN: template uses unknown name(s) ratoi; available: condition, cycle, cycle_used, key, quota, ratio, rule_id, subscriber_id, threshold, tier',
        '17:15: rule "data-usage-copy": tiers[1].when: tiers out of order: ratio >= 0.8 is milder than the previous tier\'s ratio >= 0.9; list tiers from mild to severe',
        '27:5: rule "second": colour: unknown field; the fields here are baseline, category, change, clear, description, enabled, filter, id, inhibited_by, key, measures, members, source, tiers, window',
        "34:44: rule \"second\": tiers[0].dedup.cooldown: '1:30' is ambiguous (YAML 1.1 reads it as a base-60 number); quote it, e.g. '22:00', or use a duration like '90m'",
    ]


def test_yaml_11_surprises_and_duplicate_keys_are_errors(tmp_path: Path) -> None:
    got = messages("rules:\n  - id: a\n    id: b\n    enabled: NO\n", tmp_path)
    assert "3:5: rule \"a\": id: duplicate key 'id' (first at line 2)" in got
    assert any("'NO' is ambiguous" in m for m in got)


def test_duplicate_ids_across_files_name_the_first(tmp_path: Path) -> None:
    text = (DEFAULT_RULES_DIR / "roaming-welcome.yaml").read_text(encoding="utf-8")
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(text, encoding="utf-8")
    result = load_rule_set([tmp_path])
    assert [d.message for d in result.diagnostics] == [
        f"duplicate rule id; first defined at {tmp_path / 'a.yaml'}:2:9"
    ]


def test_bad_expression_points_at_the_column(tmp_path: Path) -> None:
    text = (DEFAULT_RULES_DIR / "roaming-welcome.yaml").read_text(encoding="utf-8")
    got = messages(text.replace('"changed and current != null"', '"changed and and"'), tmp_path)
    assert len(got) == 1 and "tiers[0].when: expected a value, found 'and'" in got[0]


def test_missing_path_is_a_diagnostic(tmp_path: Path) -> None:
    result = load_rule_set([tmp_path / "nope.yaml"])
    assert [d.message for d in result.diagnostics] == ["no such file or directory"]


def test_absurdly_nested_expressions_are_diagnostics_not_crashes(tmp_path: Path) -> None:
    text = (DEFAULT_RULES_DIR / "roaming-welcome.yaml").read_text(encoding="utf-8")
    for nested in ("-" * 1900 + "1 > 0", "(" * 400 + "true" + ")" * 400):
        got = messages(text.replace('"changed and current != null"', f'"{nested}"'), tmp_path)
        assert len(got) == 1 and "tiers[0].when: expression too deeply nested" in got[0], got
        # a limit of the language, the same compiled or interpreted
        assert "(over 64 levels)" in got[0], got
    deep_enough = "(" * 60 + "changed" + ")" * 60 + " and " + "-" * 60 + "1 < 0"
    f = tmp_path / "ok.yaml"
    f.write_text(text.replace('"changed and current != null"', f'"{deep_enough}"'))
    assert load_rule_set([f]).rule_set is not None


def test_a_misspelt_field_gets_a_suggestion_at_every_depth(tmp_path: Path) -> None:
    (tmp_path / "typo.yaml").write_text(
        """rules:
  - id: x
    description: d
    source: billing
    category: c
    measures: {a: {expr: "amount", agregate: sum}}
    tiers:
      - name: t
        when: "a > 1"
        severity: warning
        severty: warning
        dedup: {scope: episode}
        fro: 2
        task: {queue: fraud, action: investigate, priority: P3, summary: s, escalate: {priorty: P1}}
""",
        encoding="utf-8",
    )
    result = load_rule_set([tmp_path])
    found = sorted((d.field, d.message) for d in result.diagnostics if "unknown field" in d.message)
    assert found == [
        ("measures.a.agregate", "unknown field; did you mean 'aggregate'?"),
        ("tiers[0].fro", "unknown field; did you mean 'for'?"),
        ("tiers[0].severty", "unknown field; did you mean 'severity'?"),
        ("tiers[0].task.escalate.priorty", "unknown field; did you mean 'priority'?"),
    ]


def test_yaml_syntax_errors_come_with_a_plain_language_hint(tmp_path: Path) -> None:
    cases = {
        "colon.yaml": "rules:\n  - id: a\n    description: Note: this\n",
        "tab.yaml": "rules:\n\t- id: a\n",
        "quote.yaml": 'rules:\n  - id: "a\n',
        "bracket.yaml": "rules: [a, b\n",
    }
    hints = {}
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        (diagnostic,) = load_rule_set([tmp_path / name]).diagnostics
        hints[name] = diagnostic.message.split("(hint: ")[1]
    assert hints == {
        "colon.yaml": "a ':' inside an unquoted value; quote the value)",
        "tab.yaml": "tabs cannot indent YAML; use spaces)",
        "quote.yaml": "a quote or a bracket is not closed)",
        "bracket.yaml": "a list in [brackets] is not closed)",
    }


def test_a_comparison_with_a_value_a_field_never_takes_is_a_located_diagnostic(
    tmp_path: Path,
) -> None:
    (tmp_path / "r.yaml").write_text(
        """rules:
  - id: roam
    description: d
    source: billing
    filter: "charge_type == 'roam' and profile.segment != 'VIP'"
    category: c
    measures: {a: amount}
    tiers:
      - {name: t, when: "a > 1", severity: info, dedup: {scope: episode},
         notice: {title: {en: a, zh-CN: b}, message: {en: a, zh-CN: b}}}
""",
        encoding="utf-8",
    )
    got = [(d.line, d.column, d.message) for d in load_rule_set([tmp_path]).diagnostics]
    assert got == [
        (
            5,
            29,
            "charge_type is never 'roam': did you mean 'roaming'? its values are subscription,"
            " data_overage, roaming, international_call, premium_sms, value_added_service,"
            " device_installment, top_up, other",
        ),
        (
            5,
            59,
            "profile.segment is never 'VIP': its values are standard, vip, elderly, enterprise",
        ),
    ]


def test_the_guide_lists_every_enumerated_value_the_loader_checks() -> None:
    from rules.ruleset import ENUM_VALUES

    guide = (Path(__file__).resolve().parents[3] / "docs" / "rules.md").read_text()
    for name, values in ENUM_VALUES.items():
        row = next(line for line in guide.splitlines() if line.startswith(f"| `{name}`"))
        assert row.count("`") - 2 == 2 * len(values) and all(f"`{v}`" in row for v in values)


def test_only_a_critical_tier_may_send_inside_quiet_hours(tmp_path: Path) -> None:
    text = (DEFAULT_RULES_DIR / "prepaid-balance.yaml").read_text(encoding="utf-8")
    bad = text.replace("severity: warning\n", "severity: warning\n        quiet_hours: call\n")
    assert messages(bad, tmp_path) == [
        "14:22: rule \"prepaid-balance\": tiers[0].quiet_hours: 'quiet_hours: call' needs"
        " severity critical: a warning notice waits for the end of quiet hours"
    ]
    assert any(
        "quiet_hours" in m
        for m in messages(
            text.replace("severity: critical\n", "severity: critical\n        quiet_hours: ring\n"),
            tmp_path,
        )
    )


def test_repeat_after_is_bounded_by_the_policys_memory(tmp_path: Path) -> None:
    text = (DEFAULT_RULES_DIR / "cell-degradation.yaml").read_text(encoding="utf-8")
    bad = text.replace("repeat_after: 7d", "repeat_after: 60d")
    assert bad != text
    assert messages(bad, tmp_path) == [
        "46:25: rule \"cell-degradation\": tiers[1].notice.repeat_after: 'repeat_after: 60d'"
        " is longer than 30d: a subscriber's notice memory keeps 30 days"
    ]


def edited(rule_file: str, old: str, new: str) -> str:
    """A default rule file with `old` replaced (which must be there)."""
    text = (DEFAULT_RULES_DIR / rule_file).read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new)


def test_verify_needs_work_closed_by_feedback_and_repeated_needs_verify(tmp_path: Path) -> None:
    """`verify` checks work reported done: a task that closes itself when
    its condition clears has none; a `repeated` text is only ever sent by a
    tier that verifies its work. Both are located."""
    clearing = edited(
        "broadband-slow.yaml", "verify: 3\n", "verify: 3\n          closes_on: clearing\n"
    )
    [message] = messages(clearing, tmp_path)
    assert 'rule "broadband-slow": tiers[0].task:' in message
    assert "'verify' checks work reported done" in message
    unverified = edited("broadband-slow.yaml", "          verify: 3\n", "")
    # located at the texts under `repeated:`
    line = 2 + unverified[: unverified.index("repeated:")].count("\n")
    assert messages(unverified, tmp_path) == [
        f"{line}:13: rule \"broadband-slow\": tiers[0].notice.repeated: 'repeated' is sent when"
        " work reported done did not fix the condition: it needs the tier's task to set"
        " 'verify'"
    ]
    bad = edited("broadband-slow.yaml", "verify: 3", "verify: often")
    assert any("tiers[0].task.verify" in m and "duration" in m for m in messages(bad, tmp_path))


def test_a_follow_up_outcome_text_is_checked_at_load(tmp_path: Path) -> None:
    bad = edited(
        "broadband-slow.yaml", "credited the compensation for", "credited {{ amount }} for"
    )
    [message] = messages(bad, tmp_path)
    assert "tiers[0].task.escalate.task.outcomes.done.message.en" in message
    assert "unknown name(s) amount" in message


def test_a_critical_tier_cannot_wait_for_a_more_severe_one(tmp_path: Path) -> None:
    bad = edited(
        "data-usage.yaml",
        "severity: critical\n        dedup: {scope: cycle}\n        notice:\n",
        "severity: critical\n        dedup: {scope: cycle}\n        notice:\n          group_wait: 5m\n",
    )
    [message] = messages(bad, tmp_path)
    assert "tiers[2].notice.group_wait: 'group_wait: 5m' holds a notice back" in message
    assert "a critical notice goes at once" in message
