"""The Grafana dashboard for people who run Forewarn, built with Grafana's
own Foundation SDK (typed builders of Grafana's dashboard schema) rather than
edited by hand.

    .venv/bin/python dev/dashboard.py          # writes docker/grafana/dashboards/forewarn.json
    .venv/bin/python dev/dashboard.py --check  # exit 1 if the checked-in file is stale

Every query here is also run against a real Prometheus scraping a real worker
in `tests/integration/test_observability.py`, so a renamed metric fails the
suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

OUT = Path(__file__).resolve().parent.parent / "docker" / "grafana" / "dashboards" / "forewarn.json"
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"
# suppression reasons that only delay a notice (rules.policy.PolicyReason)
DEFERRED = "quiet_hours_deferred|group_wait"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    width: int = 12
    mappings: tuple[tuple[str, str, str], ...] = ()


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Service",
        (
            Panel(
                "Workers up",
                "Workers Prometheus can scrape right now. Fewer than you run means a worker is"
                " down or unreachable; its partitions move to the others after the session"
                " timeout.",
                "none",
                (q('sum(up{job="forewarn", instance=~"$instance"})', "up"),),
                kind="stat",
                width=6,
            ),
            Panel(
                "Rules loaded",
                "Rules in the running rule set, per worker (they should agree).",
                "none",
                (q('max(forewarn_rules_loaded{instance=~"$instance"})', "rules"),),
                kind="stat",
                width=6,
            ),
            Panel(
                "Rule-set version per worker",
                "Which rule-set version each worker runs. Two versions at once after a reload"
                " means a worker did not pick up (or rejected) the change.",
                "none",
                (
                    q(
                        'count by (instance, version) (forewarn_rule_set_info{instance=~"$instance"})',
                        "{{instance}} {{version}}",
                    ),
                ),
            ),
            Panel(
                "Build per worker",
                "Which release each worker runs, on which Python, and whether its engine is"
                " compiled (dev/compile.py, as the image builds it) or interpreted: an"
                " interpreted worker spends about 1.5x the CPU per event.",
                "none",
                (
                    q(
                        "count by (instance, version, python, engine)"
                        ' (forewarn_build_info{instance=~"$instance"})',
                        "{{instance}} {{version}} {{engine}}",
                    ),
                ),
            ),
            Panel(
                "Last rule reload",
                "OK when every worker's last rule (re)load succeeded; REJECTED when a changed"
                " rule file was refused (the previous rules keep running; see the worker log for"
                " the located errors).",
                "none",
                (q('min(forewarn_rules_last_reload_success{instance=~"$instance"})', "reload"),),
                kind="stat",
                width=6,
                mappings=(("1", "OK", "green"), ("0", "REJECTED", "red")),
            ),
            Panel(
                "Since last reload attempt",
                "Time since the most recent rule (re)load attempt on any worker.",
                "s",
                (
                    q(
                        "time() - max(forewarn_rules_last_reload_timestamp_seconds"
                        '{instance=~"$instance"})',
                        "age",
                    ),
                ),
                kind="stat",
                width=6,
            ),
        ),
    ),
    (
        "Throughput",
        (
            Panel(
                "Events consumed per source",
                "Input records consumed per second, by source (usage, billing, network quality,"
                " profiles, and the internal fan-out topics).",
                "ops",
                (
                    q(
                        "sum by (source) (rate(forewarn_events_consumed_total"
                        f'{{source=~"$source", instance=~"$instance"}}{RATE}))',
                        "{{source}}",
                    ),
                ),
            ),
            Panel(
                "Invalid events",
                "Input records that could not be decoded or validated per second, by source and"
                " reason. Each one is in the dead-letters topic with its raw payload.",
                "ops",
                (
                    q(
                        "sum by (source, reason) (rate(forewarn_invalid_events_total"
                        f'{{source=~"$source", instance=~"$instance"}}{RATE}))',
                        "{{source}} {{reason}}",
                    ),
                ),
            ),
            Panel(
                "Dead letters",
                "Records written to the dead-letters topic per second, by reason (bad input, key"
                " mismatch, rule errors).",
                "ops",
                (
                    q(
                        "sum by (reason) (rate(forewarn_dead_letters_total"
                        f'{{instance=~"$instance"}}{RATE}))',
                        "{{reason}}",
                    ),
                ),
            ),
            Panel(
                "Processing time per record (p99)",
                "99th percentile of the time one input record takes, by agent (`engine` is the"
                " rule engine alone; the agent figure includes decoding and sends).",
                "s",
                (
                    q(
                        "histogram_quantile(0.99, sum by (le, agent)"
                        " (rate(forewarn_event_processing_seconds_bucket"
                        f'{{instance=~"$instance"}}{RATE})))',
                        "{{agent}}",
                    ),
                ),
            ),
        ),
    ),
    (
        "Detection",
        (
            Panel(
                "Detection latency",
                "From the triggering event's own event time to the notice or task being"
                " produced: p50, p95 and p99. Includes upstream delay before the event reached"
                " Kafka.",
                "s",
                tuple(
                    q(
                        f"histogram_quantile({p}, sum by (le)"
                        " (rate(forewarn_detection_latency_seconds_bucket"
                        f'{{instance=~"$instance"}}{RATE})))',
                        f"p{int(p * 100)}",
                    )
                    for p in (0.5, 0.95, 0.99)
                ),
            ),
            Panel(
                "Rule firings by rule and tier",
                "Tiers that fired per second (before the notice policy).",
                "ops",
                (
                    q(
                        "sum by (rule, tier) (rate(forewarn_rule_firings_total"
                        f'{{rule=~"$rule", instance=~"$instance"}}{RATE}))',
                        "{{rule}} {{tier}}",
                    ),
                ),
            ),
            Panel(
                "Notices by rule and tier",
                "Customer notices produced per second, by rule and tier; 'service restored'"
                " notices (<tier>:resolved) are left out.",
                "ops",
                (
                    q(
                        "sum by (rule, tier) (rate(forewarn_notices_total"
                        f'{{rule=~"$rule", instance=~"$instance", tier!~".*:resolved"}}{RATE}))',
                        "{{rule}} {{tier}}",
                    ),
                ),
            ),
            Panel(
                "Notices by channel",
                "Customer notices produced per second, by channel (sms, app push, email, voice"
                " call for elderly customers) and severity.",
                "ops",
                (
                    q(
                        "sum by (channel, severity) (rate(forewarn_notices_total"
                        f'{{rule=~"$rule", instance=~"$instance"}}{RATE}))',
                        "{{channel}} {{severity}}",
                    ),
                ),
            ),
            Panel(
                "Intervention tasks by queue and priority",
                "Tasks produced per second for operations teams (fraud, field service, billing"
                " risk...), by queue and priority.",
                "ops",
                (
                    q(
                        "sum by (queue, priority) (rate(forewarn_tasks_total"
                        f'{{rule=~"$rule", instance=~"$instance"}}{RATE}))',
                        "{{queue}} {{priority}}",
                    ),
                ),
            ),
            Panel(
                "Suppressions by reason",
                "Detections or notices not sent per second, by reason: duplicate, cooldown,"
                " fatigue cap, opt-out, superseded, not notified... This is the 'never spam'"
                " side. Deferrals (quiet hours, group wait) are not suppressions: they have"
                " their own panel.",
                "ops",
                (
                    q(
                        "sum by (reason) (rate(forewarn_suppressions_total"
                        f'{{rule=~"$rule", instance=~"$instance", reason!~"{DEFERRED}"}}'
                        f"{RATE}))",
                        "{{reason}}",
                    ),
                ),
            ),
            Panel(
                "Deferred notices",
                "Notices held because they fell in the subscriber's quiet hours or for their"
                " tier's group wait, per second, by rule. They are sent when the wait ends,"
                " unless their episode ends first or a more severe tier's notice replaces them.",
                "ops",
                (
                    q(
                        "sum by (rule) (rate(forewarn_suppressions_total"
                        f'{{rule=~"$rule", instance=~"$instance", reason=~"{DEFERRED}"}}'
                        f"{RATE}))",
                        "{{rule}}",
                    ),
                ),
            ),
        ),
    ),
    (
        "Care loop",
        (
            Panel(
                "Open and overdue tasks by queue",
                "Tasks open in the work systems' queues, and those whose promise (due_by) was"
                " missed and are still not done. Overdue tasks that keep growing mean a team"
                " cannot keep its promises: see the ForewarnTasksOverdueGrowing runbook.",
                "short",
                (
                    q(
                        'sum by (queue) (forewarn_tasks_open{instance=~"$instance"})',
                        "open {{queue}}",
                    ),
                    q(
                        'sum by (queue) (forewarn_tasks_overdue{instance=~"$instance"})',
                        "overdue {{queue}}",
                    ),
                ),
            ),
            Panel(
                "Task transitions",
                "Task lifecycle per second: opened, escalated (promise missed or work failed),"
                " closed by feedback (done or cancelled by the work system), closed by clearing"
                " (investigations whose condition cleared), condition cleared (told to the"
                " team; the task stays open).",
                "ops",
                (
                    q(
                        "sum by (transition) (rate(forewarn_task_transitions_total"
                        f'{{rule=~"$rule", instance=~"$instance"}}{RATE}))',
                        "{{transition}}",
                    ),
                ),
            ),
            Panel(
                "Task feedback by result",
                "Reports from work systems on task-updates per second: applied, or not (unknown"
                " task: a dead letter; task closed or no change: a redelivery).",
                "ops",
                (
                    q(
                        "sum by (result) (rate(forewarn_task_feedback_total"
                        f'{{instance=~"$instance"}}{RATE}))',
                        "{{result}}",
                    ),
                ),
            ),
            Panel(
                "Escalation delay",
                "From a task's due time to its escalation being sent: p50 and p99. Ticks"
                " drive it on quiet partitions; it should stay under 60 s.",
                "s",
                tuple(
                    q(
                        f"histogram_quantile({p}, sum by (le)"
                        " (rate(forewarn_task_escalation_delay_seconds_bucket"
                        f'{{instance=~"$instance"}}[1h])))',
                        f"p{int(p * 100)}",
                    )
                    for p in (0.5, 0.99)
                ),
            ),
        ),
    ),
    (
        "Operations controls",
        (
            Panel(
                "Maintenance windows",
                "Planned work on cells, lines and areas kept by this worker's partitions:"
                " planned (announced or still to be announced) and in force now. While a"
                " window is in force its target opens no tasks and sends no outage notices.",
                "short",
                (
                    q(
                        'sum by (state) (forewarn_maintenance_windows{instance=~"$instance"})',
                        "{{state}}",
                    ),
                ),
            ),
            Panel(
                "Silenced by planned work and incidents",
                "Detections that opened no task and sent no notice per second: their key was"
                " in planned work (maintenance), or an open incident of its area covered it"
                " (inhibited, e.g. slow lines behind a failed access node).",
                "ops",
                (
                    q(
                        "sum by (rule, reason) (rate(forewarn_suppressions_total"
                        f'{{reason=~"maintenance|inhibited", rule=~"$rule", instance=~"$instance"}}'
                        f"{RATE}))",
                        "{{reason}} {{rule}}",
                    ),
                ),
            ),
            Panel(
                "Held work waiting for a person",
                "Tasks opened past their rule's guard budget (e.g. suspensions in a fraud"
                " storm) and not yet released or dropped (forewarn held), by queue; and how"
                " fast work is being held. Any held task pages: see ForewarnGuardTripped.",
                "short",
                (
                    q(
                        'sum by (queue) (forewarn_tasks_held{instance=~"$instance"})',
                        "held {{queue}}",
                    ),
                    q(
                        "sum by (rule) (increase(forewarn_task_transitions_total"
                        f'{{transition="held", rule=~"$rule", instance=~"$instance"}}{RATE}))',
                        "newly held {{rule}}",
                    ),
                ),
            ),
        ),
    ),
    (
        "Kafka and state",
        (
            Panel(
                "Consumer lag by topic",
                "Messages waiting to be processed, by topic, summed over partitions and workers."
                " Steady growth means the workers cannot keep up: add workers (up to the"
                " partition count).",
                "short",
                (
                    q(
                        'sum by (topic) (forewarn_consumer_lag_messages{instance=~"$instance"})',
                        "{{topic}}",
                    ),
                ),
            ),
            Panel(
                "State size",
                "Estimated live bytes of local RocksDB state, by table (restored from changelog"
                " topics when a partition moves).",
                "bytes",
                (
                    q(
                        'sum by (table) (forewarn_state_bytes{instance=~"$instance"})',
                        "{{table}}",
                    ),
                ),
            ),
            Panel(
                "Delivery: in-flight and directly read records",
                "Records processed since their agent's last checkpoint (acknowledged, and"
                " committed, once their outputs and state changes are acknowledged by the"
                " broker: at most a second or 10,000 records), and records Faust failed to"
                " deliver that the worker read directly and processed. A sawtooth is normal;"
                " a count that only grows means the broker is not acknowledging.",
                "short",
                (
                    q(
                        'sum by (agent) (forewarn_inflight_records{instance=~"$instance"})',
                        "in flight {{agent}}",
                    ),
                    q(
                        "sum by (source) (increase(forewarn_input_gaps_total"
                        f'{{instance=~"$instance"}}{RATE}))',
                        "read directly {{source}}",
                    ),
                ),
            ),
            Panel(
                "Oldest in-flight input",
                "How long the oldest input has waited for its checkpoint (its outputs' and"
                " state's acknowledgement), by agent: about a second at most. Growing: the"
                " broker is not acknowledging (see 'When the broker is gone').",
                "s",
                (
                    q(
                        'max by (agent) (forewarn_inflight_oldest_seconds{instance=~"$instance"})',
                        "{{agent}}",
                    ),
                ),
            ),
            Panel(
                "Stalled partitions sought back",
                "Partitions with records waiting that Faust did not deliver, sought back by the"
                " worker, by source. Occasional after a rebalance; steady: check the broker.",
                "short",
                (
                    q(
                        "sum by (source) (increase(forewarn_input_stalls_total"
                        '{instance=~"$instance"}[1h]))',
                        "{{source}}",
                    ),
                ),
            ),
            Panel(
                "State keys",
                "Estimated keys in local state, by table: subscribers, cells and lines, cell"
                " member lists.",
                "short",
                (
                    q(
                        'sum by (table) (forewarn_state_keys{instance=~"$instance"})',
                        "{{table}}",
                    ),
                ),
            ),
            Panel(
                "Rule errors",
                "Rule evaluations that raised per second, by rule; each is also a dead letter"
                " naming the rule.",
                "ops",
                (
                    q(
                        "sum by (rule) (rate(forewarn_rule_failures_total"
                        f'{{rule=~"$rule", instance=~"$instance"}}{RATE}))',
                        "{{rule}}",
                    ),
                ),
            ),
        ),
    ),
)


def label_variable(name: str, label: str, metric: str, description: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DS)
        .query(f"label_values({metric}, {name})")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def panel(p: Panel) -> Any:
    builder: Any = stat.Panel() if p.kind == "stat" else timeseries.Panel()
    builder = (
        builder.title(p.title)
        .description(p.description)
        .unit(p.unit)
        .datasource(DS)
        .height(4 if p.kind == "stat" else 8)
        .span(p.width)
    )
    for i, query in enumerate(p.queries):
        builder = builder.with_target(
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + i))
            .range()
        )
    if p.mappings:
        builder = builder.mappings(
            [
                model.ValueMap(options={value: model.ValueMappingResult(text=text, color=color)})
                for value, text, color in p.mappings
            ]
        )
    return builder


def build() -> dict[str, Any]:
    dash = (
        db.Dashboard("Forewarn")
        .uid("forewarn")
        .description(
            "Forewarn proactive-care workers: throughput, detection latency, notices and"
            " tasks, suppressions, dead letters, consumer lag, rule reloads."
        )
        .tags(["forewarn", "kafka", "faust"])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .editable()
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            label_variable("instance", "Worker", 'up{job="forewarn"}', "Workers to include.")
        )
        .with_variable(
            label_variable(
                "source",
                "Source",
                "forewarn_events_consumed_total",
                "Input sources to include in throughput panels.",
            )
        )
        .with_variable(
            label_variable(
                "rule",
                "Rule",
                "forewarn_rule_evaluations_total",
                "Rules to include in detection panels.",
            )
        )
    )
    for title, panels in ROWS:
        dash = dash.with_row(db.Row(title))
        for p in panels:
            dash = dash.with_panel(panel(p))
    encoded = json.loads(json.dumps(dash.build(), cls=JSONEncoder))
    assert isinstance(encoded, dict)
    return encoded


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the checked-in file is stale")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run .venv/bin/python dev/dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
