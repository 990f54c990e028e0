"""Hostile rule files (`tests/unit/rules/testdata/attack/`, plus a 50 MB one
made here): `forewarn rules check` gives each a located diagnostic within
bounded time and memory, never a traceback; hot-reloaded into a running
worker under traffic, each is rejected while the worker stays ready and
keeps processing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stream.settings import DEFAULT_RULES_DIR, Settings
from tests.integration.conftest import WorkerProcess, metric, scrape, wait_for
from tests.integration.kafka import KafkaProbe

ATTACK = Path(__file__).resolve().parent.parent / "unit" / "rules" / "testdata" / "attack"
SECONDS, RSS_MB = 5.0, 200


def attack_files(tmp: Path) -> list[Path]:
    huge = tmp / "fifty-megabytes.yaml"
    with huge.open("w", encoding="utf-8") as fh:
        fh.write("rules:\n")
        line = "  - id: x\n" + "    # " + "padding " * 120 + "\n"
        while fh.tell() < 50 * 1024 * 1024:
            fh.write(line)
    return [*sorted(ATTACK.glob("*.yaml")), huge]


def check(path: Path) -> tuple[int, str, float, float]:
    """Exit code, output, seconds and peak RSS (MB) of `forewarn rules check`."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "rules", "check", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out, time.monotonic() - started, usage.ru_maxrss / 1024


def test_every_attack_file_gets_a_located_diagnostic_in_bounded_time_and_memory(
    tmp_path: Path,
) -> None:
    files = attack_files(tmp_path)
    assert len(files) >= 10
    report = []
    for path in files:
        code, out, seconds, rss = check(path)
        report.append(f"{path.name}: {seconds:.2f}s {rss:.0f}MB: {out.splitlines()[0]}")
        assert code == 1, out
        assert out.startswith(f"{path}:") and "Traceback" not in out, out
        assert "root:" not in out and "padding" not in out, out  # never echoes the file
        assert seconds < SECONDS and rss < RSS_MB, report[-1]
    print("\n".join(report))


@pytest.mark.integration
def test_attack_files_hot_reloaded_under_traffic_leave_the_worker_ready(
    settings: Settings, kafka: KafkaProbe, tmp_path: Path
) -> None:
    live = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, live, ignore=shutil.ignore_patterns("tests"))
    s = settings.model_copy(update={"rule_paths": (live,), "rules_poll_seconds": 0.5})
    worker = WorkerProcess(s, tmp_path / "worker.log")
    worker.start()
    sent = 0

    def traffic(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            sid = f"86139{sent % 50:08d}"
            kafka.send(
                "usage_events",
                sid,
                {
                    "event_id": f"a{sent}",
                    "subscriber_id": sid,
                    "event_time": datetime.now(UTC).isoformat(),
                    "service": "voice",
                    "volume": 1,
                    "cycle_id": "2026-11",
                },
            )
            sent += 1
        kafka.flush()

    def ready() -> bool:
        url = f"http://127.0.0.1:{s.web_port}/ready"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200

    try:
        wait_for(ready, "the worker to be ready", workers=(worker,))
        rejected = 0
        for path in attack_files(tmp_path):
            shutil.copy(path, live / "zz-attack.yaml")
            rejected += 1
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # traffic flows while the file is loaded
                traffic(20)
                if metric(scrape(s), "forewarn_rules_reloads_total", result="failure") >= rejected:
                    break
                time.sleep(0.2)
            assert ready(), f"not ready after {path.name}:\n{worker.log_tail()}"
            wait_for(
                lambda: metric(scrape(s), "forewarn_events_consumed_total", source="usage") >= sent,
                f"traffic processed after {path.name}",
                workers=(worker,),
            )
            assert worker.proc is not None and worker.proc.poll() is None
        m = scrape(s)
        assert metric(m, "forewarn_rules_reloads_total", result="failure") == rejected
        assert metric(m, "forewarn_rules_last_reload_success") == 0
        assert metric(m, "forewarn_rules_loaded") == 8  # the good rules kept running
    finally:
        worker.stop()
    assert "Traceback" not in (tmp_path / "worker.log").read_text(errors="replace")
