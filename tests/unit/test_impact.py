"""`forewarn rules diff` and the replay summary: what a rule change does to
customers, shown before it ships, including what the shared fatigue cap
takes from the rules already running."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stream.cli import main
from stream.settings import DEFAULT_RULES_DIR

EXTRA = Path(__file__).parent / "rules" / "testdata" / "extra-rules" / "extra.yaml"


def usage(n: int, minutes: int, **kw: object) -> str:
    value = {
        "event_id": f"u{n}",
        "subscriber_id": "s1",
        "event_time": f"2026-11-20T16:{minutes:02d}:00+08:00",  # daytime in Europe too
        "service": "data",
        "volume": 1,
        "cycle_id": "2026-11",
        "cycle_quota": 1000,
        **kw,
    }
    return json.dumps({"topic": "usage-events", "key": "s1", "value": value})


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    profile = {"subscriber_id": "s1", "language": "en"}
    lines = [
        json.dumps({"topic": "customer-profiles", "key": "s1", "value": profile}),
        usage(1, 0, cycle_used=550),  # the new 50% rule
        usage(2, 5, cycle_used=560, roaming_country="FR"),  # welcome + the new daily reminder
        usage(3, 10, cycle_used=810, roaming_country="FR"),  # 80%: now the 4th in 24 h
        usage(4, 25, service="voice", roaming_country="FR"),  # past the 80% notice's group wait
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_rules_diff_shows_the_fatigue_cap_taking_an_existing_rules_notice(
    events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    after = tmp_path / "after"
    shutil.copytree(DEFAULT_RULES_DIR, after, ignore=shutil.ignore_patterns("tests"))
    shutil.copy(EXTRA, after / "extra.yaml")
    args = ["rules", "diff", str(events), "--before", str(DEFAULT_RULES_DIR), "--after", str(after)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {(r["rule"], r["tier"]): r for r in report["after"]["rules"]}
    assert rows[("data-usage", "80pct")]["notices"] == 0
    assert rows[("data-usage", "80pct")]["suppressed"] == {"fatigue_cap": 1}
    before = {(r["rule"], r["tier"]): r for r in report["before"]["rules"]}
    assert before[("data-usage", "80pct")]["notices"] == 1
    lost = report["changed_subscribers"][0]
    assert lost == {
        "subscriber": "s1",
        "rule": "data-usage",
        "tier": "80pct",
        "before": True,
        "after": False,
        "why": "fatigue_cap",
    }
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "*data-usage/80pct" in text
    # before, the 80% notice waited its group wait and went; after, the cap takes it
    assert "fatigue_cap 0->1, group_wait 1->0; channels sms 1->0" in text
    assert "s1 no longer gets data-usage/80pct: fatigue_cap" in text  # masked: last 4 kept


def test_replay_ends_with_a_summary_and_writes_suppressions(
    events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules, ignore=shutil.ignore_patterns("tests"))
    shutil.copy(EXTRA, rules / "extra.yaml")
    out, sup = tmp_path / "out.jsonl", tmp_path / "suppressed.jsonl"
    code = main(
        [
            "replay",
            str(events),
            "--rules",
            str(rules),
            "--out",
            str(out),
            "--suppressions",
            str(sup),
        ]
    )
    assert code == 0
    summary = capsys.readouterr().err
    assert "data-usage/80pct" in summary and "fatigue_cap 1" in summary
    suppressed = [json.loads(line) for line in sup.read_text().splitlines()]
    assert {
        "rule_id": "data-usage",
        "tier": "80pct",
        "reason": "fatigue_cap",
        "key": "s1",
        "at": "2026-11-20T16:10:00+08:00",
    } in suppressed
