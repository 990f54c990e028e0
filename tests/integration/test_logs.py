"""The worker's own output, as a log shipper sees it: JSON lines only, at any
level, with subscriber ids masked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stream.settings import DEFAULT_RULES_DIR, Settings
from tests.integration.conftest import WorkerProcess, wait_for_metric
from tests.integration.kafka import KafkaProbe
from tests.integration.test_resilience import usage

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("level", ["WARNING", "INFO"])
def test_worker_output_is_json_lines_without_subscriber_ids(
    kafka: KafkaProbe, settings: Settings, tmp_path: Path, level: str
) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules_dir, ignore=shutil.ignore_patterns("tests"))
    live = settings.model_copy(
        update={
            "log_format": "json",
            "log_level": level,
            "rule_paths": (rules_dir,),
            "rules_poll_seconds": 0.5,
        }
    )
    proc = WorkerProcess(live, tmp_path / "worker.log")
    proc.start()
    sids = [f"86133{i:08d}" for i in range(20)]
    try:
        for i, sid in enumerate(sids):
            kafka.send("usage_events", sid, usage(i, sid, 1000))  # 100%: sent at once
        kafka.send("usage_events", sids[0], b"{broken")
        kafka.flush()
        assert len(kafka.read("customer_notices", len(sids))) == len(sids)
        bad = rules_dir / "data-usage.yaml"
        bad.write_text(bad.read_text().replace('"ratio >= 0.8"', '"ratio >>= 0.8"'))
        wait_for_metric(
            proc, "forewarn_rules_reloads_total", 1, "the rejected reload", result="failure"
        )
    finally:
        assert proc.stop() == 0
    lines = proc.log_path.read_text(errors="replace").splitlines()
    entries = []
    for n, line in enumerate(lines, 1):
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"worker.log:{n} is not a JSON object: {line[:200]!r}")
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    errors = [e["msg"] for e in entries if e["level"] == "error"]
    assert any("data-usage.yaml:" in m for m in errors), errors
    text = "\n".join(lines)
    assert not [sid for sid in sids if sid in text]
