"""The published JSON Schemas are generated from the models and current."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.jsonschema import JSON_DIR, render, stale_files
from stream.cli import contract_models, main


def test_checked_in_schemas_are_current() -> None:
    stale = stale_files(render(contract_models()))
    assert stale == [], f"run `forewarn schemas export`; stale: {stale}"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert main(["schemas", "export", "--dir", str(tmp_path)]) == 0
    assert main(["schemas", "export", "--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "customer-notice.json").write_text("{}\n")
    (tmp_path / "old-model.json").write_text("{}\n")
    assert main(["schemas", "export", "--check", "--dir", str(tmp_path)]) == 1


def test_schemas_state_the_tm_forum_mapping_and_strictness() -> None:
    notice = json.loads((JSON_DIR / "customer-notice.json").read_text())
    task = json.loads((JSON_DIR / "intervention-task.json").read_text())
    usage = json.loads((JSON_DIR / "usage-event.json").read_text())
    assert "TMF681" in notice["description"]
    assert "TMF621" in task["description"]
    assert notice["additionalProperties"] is False
    assert {"notice_id", "subscriber_id", "channel", "message"} <= set(notice["required"])
    assert usage["properties"]["volume"]["minimum"] == 0
    assert "additionalProperties" not in usage  # producers may add fields
