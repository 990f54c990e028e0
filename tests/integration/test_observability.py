"""The ops files checked with the real tools: the Grafana dashboard's and the
alert rules' PromQL run against a real Prometheus that scrapes a real worker
fed with real events; promtool checks and unit-tests the alerts; the compose
file passes `docker-compose config`; the Dockerfile keeps its promises.

A renamed or dropped metric makes a dashboard query return nothing, which
fails here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.settings import Settings
from tests.conftest import IN_CI
from tests.integration.conftest import WorkerProcess, free_port, wait_for
from tests.integration.kafka import KafkaProbe
from tests.integration.scenario import events, profiles

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "forewarn.json"
ALERTS = DOCKER / "prometheus" / "alerts.yaml"

# What Grafana puts in place of its variables when every value is selected.
GRAFANA_VARIABLES = {
    "$__rate_interval": "30s",
    "$__interval": "5s",
    "$__range": "5m",
    "$instance": ".*",
    "$source": ".*",
    "$rule": ".*",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; dev/tools installs it (make test runs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def rendered_alerts(directory: Path, base: str = "docs") -> Path:
    """alerts.yaml with its runbook base filled in, as the compose stack
    does when Prometheus starts (next to a copy of its unit tests)."""
    out = directory / "alerts.yaml"
    out.write_text(ALERTS.read_text().replace("__RUNBOOK_BASE__", base))
    shutil.copy(ALERTS.parent / "alerts.test.yaml", directory / "alerts.test.yaml")
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def alert_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]


def substitute(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as resp:
                body: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as err:  # 400 carries the parse error
            body = json.loads(err.read())
        return body

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)


@pytest.fixture
def prometheus(settings: Settings, tmp_path: Path) -> Iterator[Prometheus]:
    binary = tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rendered_alerts(tmp_path))],
                "scrape_configs": [
                    {
                        "job_name": "forewarn",
                        "static_configs": [{"targets": [f"127.0.0.1:{settings.metrics_port}"]}],
                    }
                ],
            }
        )
    )
    check = subprocess.run(
        [tool("promtool"), "check", "config", str(config)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(port)
    try:
        wait_for(prom.ready, "Prometheus to start", timeout=60)
        yield prom
    finally:
        proc.terminate()
        proc.wait(30)


def test_every_dashboard_and_alert_query_runs_on_real_prometheus_against_a_real_worker(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings, prometheus: Prometheus
) -> None:
    for record in profiles():
        kafka.send_record(record)
    kafka.flush()
    time.sleep(2)  # profiles first, as in the round-trip test
    for record in events():
        kafka.send_record(record)
    kafka.send("usage_events", "8613900000001", b"{broken")  # invalid + dead letter
    kafka.flush()
    assert kafka.read("customer_notices", 18)

    def scraped_everything() -> bool:
        result = prometheus.query("sum(forewarn_notices_total)")["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= 18

    wait_for(scraped_everything, "Prometheus to scrape the worker's notices", timeout=60)
    time.sleep(3)  # a few more scrapes, so rate() has two samples of everything

    empty, broken = [], []
    for title, expr in dashboard_queries():
        answer = prometheus.query(substitute(expr))
        if answer["status"] != "success":
            broken.append(f"{title}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            empty.append(f"{title}: {expr}")
    for name, expr in alert_expressions():
        answer = prometheus.query(expr)
        if answer["status"] != "success":
            broken.append(f"{name}: {answer.get('error')}")
    assert not broken, "queries Prometheus refused:\n" + "\n".join(broken)
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    # Every metric the dashboard and alerts name is one the worker exports.
    exported = set(prometheus.get("/api/v1/label/__name__/values")["data"])
    used = {
        name
        for _, expr in dashboard_queries() + alert_expressions()
        for name in re.findall(r"\bforewarn_[a-z_]+\b", expr)
    }
    assert used and used <= exported, sorted(used - exported)

    rules = prometheus.get("/api/v1/rules")["data"]["groups"]
    assert {g["name"] for g in rules} == {"forewarn-service", "forewarn-slo"}
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
    firing = {a["labels"]["alertname"] for a in prometheus.get("/api/v1/alerts")["data"]["alerts"]}
    assert "ForewarnWorkerDown" not in firing and "ForewarnNoWorkers" not in firing

    # the worker says which engine it runs; `make test` runs the compiled one (dev/compile.py)
    builds = prometheus.query("forewarn_build_info")["data"]["result"]
    assert [b["metric"]["engine"] for b in builds] in (["compiled"], ["interpreted"]), builds
    if IN_CI:
        assert builds[0]["metric"]["engine"] == "compiled", builds


def test_a_fraud_storm_is_held_at_its_budget_and_trips_the_guard_alert_on_real_prometheus(
    worker: WorkerProcess, kafka: KafkaProbe, settings: Settings, prometheus: Prometheus
) -> None:
    storm = 150  # suspicious charges, one per subscriber, within a minute
    now = datetime.now(UTC)
    for i in range(storm):
        kafka.send(
            "billing_events",
            f"f{i:04d}",
            {
                "event_id": f"storm-{i}",
                "subscriber_id": f"f{i:04d}",
                "event_time": (now + timedelta(milliseconds=100 * i)).isoformat(),
                "charge_type": "premium_sms",
                "amount": 1500,
            },
        )
    kafka.flush()
    tasks = kafka.read("intervention_tasks", storm)
    opened = [t for t in tasks if t["status"] == "open"]
    held = [t for t in tasks if t["status"] == "held"]
    budget = settings.partitions * -(-50 // settings.partitions)  # 50 split over partitions
    assert len(opened) <= budget and len(opened) + len(held) == storm
    assert len(held) >= storm - budget

    def firing() -> list[dict[str, Any]]:
        alerts = prometheus.get("/api/v1/alerts")["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "ForewarnGuardTripped" and a["state"] == "firing"
        ]

    wait_for(lambda: bool(firing()), "ForewarnGuardTripped to fire", timeout=60)
    (alert,) = firing()
    assert alert["labels"]["queue"] == "fraud" and float(alert["value"]) == len(held)


def test_a_renamed_metric_leaves_a_dashboard_panel_without_data(
    worker: WorkerProcess, settings: Settings, prometheus: Prometheus
) -> None:
    wait_for(
        lambda: bool(prometheus.query("forewarn_rules_loaded")["data"]["result"]),
        "the first scrape",
    )
    title, expr = next(q for q in dashboard_queries() if "forewarn_rules_loaded" in q[1])
    renamed = substitute(expr).replace("forewarn_rules_loaded", "forewarn_rules_loaded_count")
    assert prometheus.query(substitute(expr))["data"]["result"], title
    assert prometheus.query(renamed)["data"]["result"] == []


def test_alert_rules_pass_promtool_check_and_their_unit_tests(tmp_path: Path) -> None:
    promtool = tool("promtool")
    alerts = rendered_alerts(tmp_path)
    check = subprocess.run(
        [promtool, "check", "rules", str(alerts)], check=False, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yaml"],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
    alertmanager = subprocess.run(
        [tool("amtool"), "check-config", str(DOCKER / "alertmanager" / "alertmanager.yml")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert alertmanager.returncode == 0, alertmanager.stdout + alertmanager.stderr
    tested = set(re.findall(r"alertname: (\w+)", (ALERTS.parent / "alerts.test.yaml").read_text()))
    alerts = {name for name, _ in alert_expressions() if not name.startswith("forewarn:")}
    assert tested == alerts, f"alerts without a promtool test: {sorted(alerts - tested)}"


def test_every_alert_has_a_runbook_section_in_the_operations_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in guide.splitlines()
        if line.startswith("#")
    }
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
                assert anchor in anchors, f"{rule['alert']}: no section #{anchor}"


def test_compose_file_passes_docker_compose_config_and_a_broken_one_does_not(
    tmp_path: Path,
) -> None:
    compose = tool("docker-compose")
    ok = subprocess.run(
        [compose, "-f", str(DOCKER / "compose.yaml"), "config"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    config = yaml.safe_load(ok.stdout)
    services = config["services"]
    assert set(services) == {"kafka", "topics", "worker", "prometheus", "alertmanager", "grafana"}
    prometheus = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]  # page alerts reach a receiver
    assert "RUNBOOK_BASE" in services["prometheus"]["environment"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert all(":" in s["image"] and not s["image"].endswith(":latest") for s in services.values())
    assert services["worker"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully"
    )
    mounts = {v.split(":")[1] for s in services.values() for v in s.get("volumes", [])}
    assert "/etc/forewarn/rules" in mounts
    worker_mounts = {v.split(":")[0]: v.split(":")[1] for v in services["worker"]["volumes"]}
    assert worker_mounts.get("worker-state") == "/var/lib/forewarn/state"
    assert "worker-state" in config["volumes"]  # a named volume: state outlives the container

    broken = tmp_path / "compose.yaml"
    text = (DOCKER / "compose.yaml").read_text().replace("stop_grace_period:", "stop_grace_perod:")
    broken.write_text(text.replace("build:\n      context: ..", f"build:\n      context: {ROOT}"))
    bad = subprocess.run(
        [compose, "-f", str(broken), "config"], check=False, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "stop_grace_perod" in bad.stderr


def test_dockerfile_is_multi_stage_non_root_pinned_and_uses_the_lock_file() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?", text, flags=re.M)
    assert [name for _, name in stages] == ["build", "runtime"]
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), base
    assert "-c constraints.txt" in text
    assert re.search(r"^USER forewarn", text, flags=re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/health", text, flags=re.M)
    assert "/etc/forewarn/rules" in text
    # the image runs the compiled engine, built in the build stage and checked there
    build_stage = text.split("AS runtime")[0]
    assert "dev/compile.py" in build_stage and "--install" in build_stage
    assert 'engine_build() == "compiled"' in build_stage
    assert "gcc" not in text.split("AS runtime")[1]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_dashboard_is_the_sdk_built_one_with_units_descriptions_and_variables() -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    board = json.loads(DASHBOARD.read_text())
    model = Dashboard.from_json(board)  # Grafana's schema, through the SDK's model
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == board
    built = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "dev" / "dashboard.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    for p in panels:
        assert p["description"] and p["fieldConfig"]["defaults"]["unit"], p["title"]
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "rule", "source", "instance"} <= variables
    # what an on-call engineer asks for first (each query also runs above)
    titles = {p["title"] for p in panels}
    assert {
        "Oldest in-flight input",
        "Stalled partitions sought back",
        "State keys",
        "Rule-set version per worker",
        "Deferred notices",
        "Open and overdue tasks by queue",
        "Task transitions",
    } <= titles
    queries = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels}
    assert 'reason!~"quiet_hours_deferred|group_wait"' in queries["Suppressions by reason"]
    assert 'tier!~".*:resolved"' in queries["Notices by rule and tier"]
    assert "count by (instance, version)" in queries["Rule-set version per worker"]
