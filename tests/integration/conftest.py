"""Fixtures for tests against the real local Kafka started by dev/kafka.

Each test gets its own topic prefix and consumer group, so tests never see
each other's records. When the broker is missing the tests fail under CI=true
and skip elsewhere (a developer running only unit tests).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from stream.admin import create_topics, delete_topics
from stream.settings import KafkaSettings, Settings
from tests.conftest import IN_CI
from tests.integration.kafka import KafkaProbe

BOOTSTRAP = os.environ.get("FOREWARN_KAFKA__BOOTSTRAP", "127.0.0.1:19192")


def _broker_up() -> str | None:
    try:
        admin = KafkaAdminClient(bootstrap_servers=[BOOTSTRAP], request_timeout_ms=5000)
        admin.list_topics()
        admin.close()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def bootstrap() -> str:
    problem = _broker_up()
    if problem:
        message = (
            f"Kafka broker not reachable at {BOOTSTRAP} ({problem}); start it: dev/kafka start"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return BOOTSTRAP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings(bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Unique topics, group and ports for one test; topics are created, and
    deleted after the test (left behind, a suite's thousands of partitions
    fill the single dev broker's heap). A test parametrized indirectly
    gives further settings as a dict."""
    unique = uuid.uuid4().hex[:10]
    more: dict[str, Any] = getattr(request, "param", {})
    s = Settings(
        app_id=f"forewarn-test-{unique}",
        topic_prefix=f"t-{unique}-",
        # A short session: a killed worker's partitions move within seconds.
        kafka=KafkaSettings(bootstrap=bootstrap, session_timeout_seconds=8),
        partitions=3,
        state_dir=tmp_path / "state",
        web_port=free_port(),
        metrics_port=free_port(),
        log_format="text",
        _env_file=None,  # type: ignore[call-arg]
        **more,
    )
    report = create_topics(s)
    assert not [line for line in report if line.startswith("error")], report
    yield s
    _delete_topics(s)


def _delete_topics(s: Settings) -> None:
    """Best effort: a broker a test stopped on purpose may not answer, and
    the test's own outcome stands."""
    try:
        delete_topics(s)
    except Exception as exc:
        print(f"topics of {s.app_id} not deleted: {exc!r}", file=sys.stderr)


def settings_env(s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
    return {**env, **s.as_env()}


class WorkerProcess:
    """`forewarn worker` as a real subprocess."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"],
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout
        url = f"http://127.0.0.1:{self.settings.web_port}/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"worker not healthy after {ready_timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker ignored SIGTERM for {timeout}s") from None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(settings, tmp_path / "worker.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def kafka(settings: Settings) -> Iterator[KafkaProbe]:
    probe = KafkaProbe(settings)
    yield probe
    probe.close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(settings: Settings) -> Samples:
    """The worker's /metrics as {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout: float = 60.0,
    workers: tuple[WorkerProcess, ...] = (),
) -> None:
    """Poll `check` until true; on timeout say what the `workers` were doing."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError as exc:
            last_error = f" (last check failed: {type(exc).__name__}: {exc})"
        time.sleep(0.25)
    report = [f"timed out after {timeout}s waiting for {what}{last_error}"]
    for w in workers:
        state = (
            "not started"
            if w.proc is None
            else ("running" if w.proc.poll() is None else f"exited with {w.proc.returncode}")
        )
        report.append(f"--- {w.log_path.name}: {state}\n{w.log_tail(80)}")
    raise AssertionError("\n".join(report))


def wait_for_metric(
    worker: WorkerProcess, name: str, at_least: float, what: str, **labels: str
) -> None:
    """Wait until the worker's `name` (summed over `labels`) reaches `at_least`."""
    wait_for(
        lambda: metric(scrape(worker.settings), name, **labels) >= at_least,
        what,
        workers=(worker,),
    )
