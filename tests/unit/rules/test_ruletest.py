"""`forewarn rules test`: the shipped tests pass and cover every tier, a
failing test prints a readable diff, a broken test file gets located
diagnostics, and the tests really depend on the thresholds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rules.ruletest import run_test_files
from stream.cli import main
from stream.settings import DEFAULT_RULES_DIR

DATA = Path(__file__).parent / "testdata" / "ruletest"
DEFAULT_TESTS = sorted((DEFAULT_RULES_DIR / "tests").glob("*.yaml"))


def test_default_ruleset_tests_pass_and_cover_every_tier() -> None:
    run = run_test_files(DEFAULT_TESTS)
    assert run.diagnostics == []
    assert [c.problems for c in run.cases if not c.ok] == []
    assert len(run.cases) >= 20
    assert run.uncovered == []
    assert len(run.tiers) == 14
    assert run.uncovered_transitions == []
    # held, released (guards), linked (inhibited rules), repeated (verify), superseded
    assert len(run.transitions) == 25


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", "--require-coverage"]) == 0
    assert "tier coverage 14/14; task lifecycle coverage 25/25" in capsys.readouterr().out
    assert main(["rules", "test", str(DATA / "failing.test.yaml")]) == 1


def test_rules_check_counts_rules_and_series(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["rules", "check", str(DEFAULT_RULES_DIR)]) == 0
    assert "ok: 8 rule(s) in 8 file(s), 8 series" in capsys.readouterr().err
    charges = (DEFAULT_RULES_DIR / "abnormal-charges.yaml").read_text()
    (tmp_path / "a.yaml").write_text(charges)
    (tmp_path / "b.yaml").write_text(charges.replace("id: abnormal-charges", "id: charges-vip"))
    assert main(["rules", "check", str(tmp_path)]) == 0
    assert "ok: 2 rule(s) in 2 file(s), 1 series" in capsys.readouterr().err


def test_failure_prints_what_is_missing_unexpected_and_the_field_diff(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["rules", "test", str(DATA / "failing.test.yaml")])
    out = capsys.readouterr().out
    assert "failing.test.yaml:3: wrong channel and a missing notice" in out
    assert "missing    notice big-charge/big -> s1 (channel=voice_call" in out
    assert "differs: channel: expected 'voice_call', got 'sms'" in out
    assert "missing    notice big-charge/big -> s2" in out
    assert (
        "unexpected notice big-charge/big -> s1 (warning, sms, en): 'A charge of 150 was made.'"
        in out
    )
    # coverage of the rules this file loaded: "huge" never fired
    assert "not exercised by any test: big-charge/huge" in out


def test_broken_test_file_gets_located_diagnostics() -> None:
    run = run_test_files([DATA / "broken.test.yaml"])
    text = [str(d) for d in run.diagnostics]
    file = str(DATA / "broken.test.yaml")
    assert (
        f"{file}:7:9: tests[0].events[1]: each input is exactly one of 'usage:', 'billing:', 'network:', 'profile:', 'delete_profile:', 'task_update:', 'tick:', 'maintenance:' (got usage, billing)"
        in text
    )
    assert any(
        t.startswith(f"{file}:10:63: tests[0].expect[0].notice.chanel: unknown field") for t in text
    )
    assert run.cases == []


def test_invalid_event_in_a_test_is_located(tmp_path: Path) -> None:
    shutil.copy(DATA / "one-rule.yaml", tmp_path)
    test = tmp_path / "t.yaml"
    test.write_text(
        "rule_files: [one-rule.yaml]\n"
        "tests:\n"
        "  - name: strings are not numbers\n"
        '    start: "2026-11-20T10:00:00+08:00"\n'
        "    events:\n"
        '      - billing: {subscriber_id: s1, charge_type: other, amount: "150"}\n'
    )
    run = run_test_files([test])
    assert [str(d) for d in run.diagnostics] == [
        f"{test}:6:66: tests[0].events[0].billing.amount: Input should be a valid number"
    ]


def test_default_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules)
    path = rules / "data-usage.yaml"
    path.write_text(path.read_text().replace('"ratio >= 0.8"', '"ratio >= 0.85"'))
    run = run_test_files(sorted((rules / "tests").glob("*.yaml")))
    failed = {c.name for c in run.cases if not c.ok}
    assert any(name.startswith("each tier once per cycle, highest only") for name in failed)


def test_a_missing_file_or_bad_setting_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["replay", "/no/such/file.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err == "forewarn: error: cannot open /no/such/file.jsonl: No such file or directory\n"
    monkeypatch.setenv("FOREWARN_PARTITIONS", "many")
    assert main(["rules", "check"]) == 2
    assert capsys.readouterr().err.startswith("forewarn: error: FOREWARN_PARTITIONS: ")


def test_every_command_line_option_has_help_text() -> None:
    import argparse

    from stream.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {action.option_strings or action.dest}")

    walk(build_parser(), "forewarn")
    assert missing == []


def test_a_notice_can_go_to_the_vip_home_subscribers_of_a_cell_only() -> None:
    from pathlib import Path

    from rules.ruletest import run_test_files

    audience = Path(__file__).parent / "testdata" / "audience" / "tests" / "vip-cell.yaml"
    run = run_test_files([audience])
    assert run.diagnostics == [] and [c.problems for c in run.cases] == [[]]
    assert len(run.cases) == 1


def test_an_open_cell_incident_inhibits_its_home_subscribers_symptom_notices() -> None:
    from pathlib import Path

    from rules.ruletest import run_test_files

    case = (
        Path(__file__).parent / "testdata" / "inhibition" / "tests" / "cell-inhibits-symptoms.yaml"
    )
    run = run_test_files([case])
    assert run.diagnostics == [] and [c.problems for c in run.cases] == [[]]
    assert len(run.cases) == 1


def test_an_inhibition_must_name_a_rule_keyed_by_what_it_matches_on(tmp_path: Path) -> None:
    from rules.loader import load_rule_set

    (tmp_path / "bad.yaml").write_text(
        """
rules:
  - id: symptom
    description: x
    source: usage
    category: network
    measures: {v: "volume"}
    inhibited_by:
      - {rule: pon-outage, on: profile.home_cell_id}
      - {rule: no-such-rule, on: profile.home_cell_id}
    tiers:
      - name: t
        when: "v > 1"
        severity: info
        dedup: {scope: episode}
        notice: {title: {en: a, zh-CN: b}, message: {en: a, zh-CN: b}}
""",
        encoding="utf-8",
    )
    result = load_rule_set([DEFAULT_RULES_DIR, tmp_path / "bad.yaml"])
    text = [d.message for d in result.diagnostics]
    assert text == [
        "rule 'pon-outage' is keyed by area_id; profile.home_cell_id cannot name its key",
        "inhibited_by names no rule 'no-such-rule'",
    ]
