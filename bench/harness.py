"""What every benchmark here needs: fresh topics on the real broker, a fast
producer (at full speed or at a set rate), a `forewarn worker` child process
with its metrics, peak RSS, and latency percentiles.

Benchmarks are measurements, not tests: they print and write figures and
assert nothing about speed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from stream.admin import create_topics
from stream.settings import KafkaSettings, Settings

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = os.environ.get("FOREWARN_KAFKA__BOOTSTRAP", "127.0.0.1:19192")
INPUTS = {"usage", "billing", "network_quality", "profiles"}
Record = tuple[str, str | None, dict[str, Any] | None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_settings(workdir: Path, partitions: int = 6, **update: Any) -> Settings:
    """Unique topics and group on the bench broker; topics are created."""
    unique = uuid.uuid4().hex[:8]
    s = Settings(
        app_id=f"forewarn-bench-{unique}",
        topic_prefix=f"b-{unique}-",
        kafka=KafkaSettings(bootstrap=BOOTSTRAP, session_timeout_seconds=10),
        partitions=partitions,
        state_dir=workdir / f"state-{unique}",
        web_port=free_port(),
        metrics_port=free_port(),
        rules_poll_seconds=0,
        log_level="WARNING",
        _env_file=None,
        **update,
    )
    problems = [line for line in create_topics(s) if line.startswith("error")]
    if problems:
        raise SystemExit("\n".join(problems))
    return s


class Sent:
    """When each event of a paced phase was sent (epoch s), by id and, in
    event-time order, by key: a tumbling window's detection is triggered by
    the first event of its key at or after the window's end."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.by_key: dict[str, list[tuple[float, float]]] = {}

    def add(self, key: str, event_id: str, stamp: float, at: float) -> None:
        """`stamp`: the event time (epoch s), `at`: when it was sent."""
        self.times[event_id] = at
        self.by_key.setdefault(key, []).append((stamp, at))

    def __len__(self) -> int:
        return len(self.times)

    def trigger(self, key: str, window_end: str) -> float | None:
        """Send time of the event that closed `key`'s window ending at `window_end`."""
        end = datetime.fromisoformat(window_end).timestamp()
        after = [at for stamp, at in self.by_key.get(key, ()) if stamp >= end]
        return min(after) if after else None


class Producer:
    """Sends `(contract topic, key, value)` records to a settings' topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kafka = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            acks=1,
            linger_ms=20,
            batch_size=256 * 1024,
            compression_type=None,
        )
        self.names = {
            getattr(settings.topics, field): settings.topic(field)
            for field in type(settings.topics).model_fields
        }

    def send(self, topic: str, key: str | None, value: bytes) -> None:
        self.kafka.send(self.names[topic], key=key.encode() if key else None, value=value)

    def all(self, records: Iterable[Record]) -> int:
        """Everything, as fast as the producer goes."""
        n = 0
        for topic, key, value in records:
            self.send(topic, key, json.dumps(value, separators=(",", ":")).encode())
            n += 1
        self.kafka.flush()
        return n

    def paced(self, records: Iterator[Record], rate: float, seconds: float) -> Sent:
        """`rate` records/s for `seconds`; when each event was sent. Records
        are generated and encoded before the clock starts, and sent with
        aiokafka (C murmur2 and record builder), so that the load generator,
        which shares the machine with the worker and the broker, takes as
        little CPU from them as it can (kafka-python took ~40% of a core at
        2,400 records/s)."""
        ready = []
        for topic, key, value in itertools.islice(records, int(rate * seconds) + 1):
            assert value is not None and key is not None
            data = json.dumps(value, separators=(",", ":")).encode()
            stamp = datetime.fromisoformat(value["event_time"]).timestamp()
            ready.append((self.names[topic], key, value["event_id"], stamp, data))
        return asyncio.run(self._paced(ready, rate, seconds))

    async def _paced(
        self, ready: list[tuple[str, str, str, float, bytes]], rate: float, seconds: float
    ) -> Sent:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            acks=1,
            linger_ms=1,
            max_batch_size=256 * 1024,
        )
        await producer.start()
        try:
            sent = Sent()
            start = time.monotonic()
            n = 0
            while (elapsed := time.monotonic() - start) < seconds and n < len(ready):
                while n < min(int(elapsed * rate), len(ready)):
                    topic, key, event_id, stamp, data = ready[n]
                    sent.add(key, event_id, stamp, time.time())
                    await producer.send(topic, data, key=key.encode())
                    n += 1
                await asyncio.sleep(0.001)
            await producer.flush()
            return sent
        finally:
            await producer.stop()

    def close(self) -> None:
        self.kafka.close()


class Worker:
    """`forewarn worker` as a child process (`module`: another entry point
    with the same command line, e.g. `bench.noop_worker`)."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        module: str = "stream.cli",
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings, self.log, self.module = settings, log, module
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
        env.update(self.settings.as_env())
        env.update(self.extra_env)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker"],
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def ready(self) -> bool:
        url = f"http://127.0.0.1:{self.settings.web_port}/ready"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """The worker's samples as (name, labels, value); empty while not serving."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.settings.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return []
        return [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def consumed(self) -> float:
        """Input records consumed (internal fan-out topics not counted)."""
        return sum(
            value
            for name, labels, value in self.metrics()
            if name == "forewarn_events_consumed_total" and labels.get("source") in INPUTS
        )

    def behind(self) -> int:
        """Records of the worker's source topics (inputs and internal fan-out
        topics) not yet committed by its group."""
        s = self.settings
        admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap_servers)
        consumer = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers)
        try:
            committed = admin.list_group_offsets(s.app_id).get(s.app_id, {})
            parts = [
                TopicPartition(t, p)
                for t in (*s.input_topics, *s.internal_topics)
                for p in range(s.partitions)
            ]
            ends = consumer.end_offsets(parts)
        finally:
            admin.close()
            consumer.close()
        done = {tp: meta.offset for tp, meta in committed.items()}
        return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker has used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def profile(self, out: Path, seconds: float) -> subprocess.Popen[bytes]:
        """py-spy (from PyPI, on PATH) sampling the worker for `seconds`."""
        assert self.proc is not None
        out.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(self.proc.pid),
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> float:
        """SIGTERM; returns the seconds it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - t

    def wipe_state(self) -> None:
        shutil.rmtree(self.settings.state_dir, ignore_errors=True)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-30:]
            raise SystemExit("worker exited:\n" + "\n".join(tail))


def wait_until(check: Any, what: str, timeout: float, poll: float = 0.2) -> float:
    """Poll `check()` until true; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(poll)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def output_times(settings: Settings, topics: Iterable[str], seconds: float) -> list[Any]:
    """Every record on the output topics (from the start) read for `seconds`
    after the last one arrived: (value dict, broker timestamp in epoch s)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=int(seconds * 1000),
    )
    parts = [
        TopicPartition(settings.topic(t), p) for t in topics for p in range(settings.partitions)
    ]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    found = [(json.loads(m.value), m.timestamp / 1000) for m in consumer]
    consumer.close()
    return found


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
