"""A broker outage with records in flight: the worker backs off instead of
spinning (CPU), logs a bounded number of lines, says it is not ready, and
recovers by itself, losing nothing, once the broker is back. The broker is
the suite's own (`dev/kafka`), stopped and started again by this test."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaProducer

from stream.settings import Settings
from tests.integration.conftest import WorkerProcess, metric, scrape, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 30
EVENTS = 20_000


def broker(action: str, settings: Settings) -> None:
    port = settings.kafka.bootstrap_servers[0].rsplit(":", 1)[1]
    env = {**os.environ, "FOREWARN_KAFKA_PORT": port}
    subprocess.run([str(ROOT / "dev" / "kafka"), action], env=env, check=True, cwd=ROOT)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def active_opens() -> int:
    """TCP connections this machine opened so far (`/proc/net/snmp`)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    head, values = next(pair for pair in itertools.pairwise(lines) if pair[0][0] == "Tcp:")
    return int(values[head.index("ActiveOpens")])


def ready(settings: Settings) -> bool:
    try:
        url = f"http://127.0.0.1:{settings.web_port}/ready"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_a_broker_outage_costs_little_cpu_few_log_lines_and_nothing_is_lost(
    worker: WorkerProcess, settings: Settings
) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=20)
    for i in range(EVENTS):
        sid = f"86139{i % 2000:08d}"
        value = {
            "event_id": f"o{i}",
            "subscriber_id": sid,
            "event_time": "2026-11-20T10:00:00+08:00",
            "service": "data",
            "volume": 1,
            "cycle_id": "2026-11",
            "cycle_used": 500 + i % 600,
            "cycle_quota": 1000,
        }
        producer.send(
            settings.topic("usage_events"), key=sid.encode(), value=json.dumps(value).encode()
        )
    producer.flush()
    producer.close()
    time.sleep(2)  # the worker is busy: outputs and changelog records in flight
    assert worker.proc is not None
    log_before = len(worker.log_path.read_text(errors="replace").splitlines())
    broker("stop", settings)
    try:
        cpu0, t0, opens0 = cpu_seconds(worker.proc.pid), time.monotonic(), active_opens()
        states = []
        while time.monotonic() - t0 < OUTAGE_SECONDS:
            time.sleep(2)
            states.append(ready(settings))
        took = time.monotonic() - t0
        cpu = (cpu_seconds(worker.proc.pid) - cpu0) / took
        connects = (active_opens() - opens0) / took  # the machine's; the worker's dominate
        lines = len(worker.log_path.read_text(errors="replace").splitlines()) - log_before
    finally:
        broker("start", settings)
    started = time.monotonic()
    wait_for(lambda: ready(settings), "the worker to be ready again", 120, (worker,))
    recovered = time.monotonic() - started
    wait_for(
        lambda: (
            metric(scrape(settings), "forewarn_events_consumed_total", source="usage") >= EVENTS
        ),
        "every event to be processed",
        120,
        (worker,),
    )
    per_minute = lines / (OUTAGE_SECONDS / 60)
    print(
        f"outage {OUTAGE_SECONDS}s: worker CPU {cpu:.1%}, {connects:.1f} connects/s,"
        f" {per_minute:.0f} log lines/min,"
        f" ready again {recovered:.1f}s after the broker was back"
    )
    assert worker.proc.poll() is None
    assert not any(states[5:]), states  # not ready within 10 s of the outage
    assert cpu < 0.3, f"{cpu:.0%} CPU while the broker was gone"
    assert per_minute < 300, f"{per_minute:.0f} log lines a minute"
    assert connects < 30, f"{connects:.0f} connects/s"  # 650/s before the backoff
    assert recovered < 60
