"""Prometheus metrics of the worker, for Grafana and alerting.

Naming follows Prometheus practice: the `forewarn_` prefix, base units
(seconds, bytes), `_total` only on counters, and bounded labels only (source,
rule, tier, reason, channel, queue...; never a subscriber, cell or line id).
Served by prometheus-client's own HTTP server on `metrics_host:metrics_port`
from a registry of our own, so nothing else leaks in.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from rules.tasks import FeedbackReason, Transition
from schemas import DeadLetterReason, FeedbackStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
PROCESSING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1)


# Label values known in advance are exported at 0 from the start, so that
# dashboards and alerts see a series (and `rate()` a first sample) before the
# first occurrence.
class InputSource(StrEnum):
    """What a consumed record is, by the topic it came from: the `source`
    label of the per-source metrics; declared once, mapped from topics by
    the processor."""

    USAGE = "usage"
    BILLING = "billing"
    NETWORK_QUALITY = "network_quality"
    PROFILES = "profiles"
    TASK_UPDATES = "task_updates"
    MAINTENANCE_WINDOWS = "maintenance_windows"
    NOTICE_INTENTS = "notice_intents"  # the internal topics from here on
    CELL_MEMBERSHIP = "cell_membership"
    TASK_UPDATES_NETWORK = "task_updates_network"
    AREA_SAMPLES = "area_samples"
    NETWORK_MARKS = "network_marks"
    SUBSCRIBER_MARKS = "subscriber_marks"
    CLOCK = "clock"


INPUT_SOURCES = tuple(
    s.value for s in list(InputSource)[: list(InputSource).index(InputSource.NOTICE_INTENTS)]
)
# the worker's: a replay's own reasons (a bad line, an unknown topic) are not its
DEAD_LETTER_REASONS = tuple(
    r.value
    for r in DeadLetterReason
    if r not in (DeadLetterReason.UNKNOWN_TOPIC, DeadLetterReason.INVALID_LINE)
)
TRANSITIONS = tuple(t.value for t in Transition)
FEEDBACK_STATUSES = tuple(s.value for s in FeedbackStatus)
FEEDBACK_RESULTS = (
    "applied",
    *(r.value for r in FeedbackReason),
    DeadLetterReason.KEY_MISMATCH.value,
)
QUEUES = ("network-ops", "field-repair", "billing-risk", "fraud", "customer-care", "retention")
ESCALATION_BUCKETS = (1, 5, 10, 15, 30, 45, 60, 120, 300, 900, 3600)


class RuleEvaluations(Collector):
    """`forewarn_rule_evaluations_total{rule}`, counted in a plain dict
    and read at scrape time. Every event adds one per rule of its source
    (hundreds per event with a large rule set), which through a labelled
    prometheus-client child would cost a lookup and a lock each. A loop, not
    `Counter.update`: that is interpreted code with an ABC isinstance check
    per call (4% of the compiled processor's samples), the loop compiles."""

    NAME = "forewarn_rule_evaluations"
    HELP = "Rule evaluations, by rule."

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, rule_ids: Iterable[str]) -> None:
        counts = self.counts
        for rule_id in rule_ids:
            counts[rule_id] = counts.get(rule_id, 0) + 1

    def declare(self, rule_id: str) -> None:
        self.counts.setdefault(rule_id, 0)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.NAME, self.HELP, labels=["rule"])

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.NAME, self.HELP, labels=["rule"])
        for rule_id, count in sorted(self.counts.items()):  # one C call: atomic under the GIL
            family.add_metric([rule_id], count)
        yield family


def _labelled(name: str, labelnames: tuple[str, ...], values: tuple[str, ...]) -> tuple[str, ...]:
    """`values`, when they are one per label name of the family `name`."""
    if len(values) != len(labelnames):
        raise ValueError(f"{name} takes labels {labelnames}, given {values}")
    return values


class Count:
    """One labelled series of a `Tally`: a plain number."""

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class Tally(Collector):
    """A counter family for the per-event path, with prometheus-client's
    `labels(...).inc()` calls: each series is a plain number, read at
    scrape time. A prometheus-client child takes a lock per increment and
    its calls are interpreted code: with one increment per record, one
    observation per event and several per output, that was ~5% of the
    compiled processor's samples. Increments come from the event loop's
    thread only; a scrape (the metrics server's thread) copies the series
    in one C call, atomic under the GIL."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation = name.removesuffix("_total"), documentation
        self.labelnames = tuple(labelnames)
        self.series: dict[tuple[str, ...], Count] = {}
        registry.register(self)

    def labels(self, *values: str) -> Count:
        """The series of these label values (a `StrEnum` is its value)."""
        found = self.series.get(values)
        if found is None:
            found = self.series[_labelled(self.name, self.labelnames, values)] = Count()
        return found

    def inc(self, amount: float = 1) -> None:
        self.labels().inc(amount)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, count in list(self.series.items()):  # one C call: atomic under the GIL
            family.add_metric([str(v) for v in values], count.value)
        yield family


class Spread:
    """One labelled series of a `Timings`: counts per bucket and a sum."""

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.sum += value


class Timings(Collector):
    """A histogram family kept like a `Tally`: prometheus-client's
    `labels(...).observe()` calls and exposition (cumulative `le` buckets,
    `_sum`, `_count`), without a lock or interpreted code per observation."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        *,
        buckets: Iterable[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)
        self.bounds = sorted(float(b) for b in buckets)
        self.series: dict[tuple[str, ...], Spread] = {}
        registry.register(self)

    def labels(self, *values: str) -> Spread:
        found = self.series.get(values)
        if found is None:
            found = self.series[_labelled(self.name, self.labelnames, values)] = Spread(self.bounds)
        return found

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        names = [*map(floatToGoString, self.bounds), "+Inf"]
        for values, spread in list(self.series.items()):
            counts, total = list(spread.counts), spread.sum
            cumulative, buckets = 0, []
            for le, n in zip(names, counts):  # noqa: B905 (one count per bound and +Inf)
                cumulative += n
                buckets.append((le, float(cumulative)))
            family.add_metric([str(v) for v in values], buckets, total)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.events = Tally(
            "forewarn_events_consumed_total",
            "Input records consumed, by source.",
            ["source"],
            registry=r,
        )
        self.without_profile = Tally(
            "forewarn_events_without_profile_total",
            "Subscriber events evaluated with the default profile because none was stored"
            " yet for the subscriber (sent later, or still in flight), by source.",
            ["source"],
            registry=r,
        )
        self.invalid = Tally(
            "forewarn_invalid_events_total",
            "Input records that could not be decoded or validated, by source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.evaluations = RuleEvaluations()
        r.register(self.evaluations)
        self.firings = Tally(
            "forewarn_rule_firings_total",
            "Tiers that fired, by rule and tier.",
            ["rule", "tier"],
            registry=r,
        )
        self.rule_failures = Tally(
            "forewarn_rule_failures_total",
            "Rule evaluations that raised, by rule.",
            ["rule"],
            registry=r,
        )
        self.notices = Tally(
            "forewarn_notices_total",
            "Customer notices produced, by rule, tier, channel and severity.",
            ["rule", "tier", "channel", "severity"],
            registry=r,
        )
        self.tasks = Tally(
            "forewarn_tasks_total",
            "Intervention tasks produced, by rule, tier, queue, priority and status.",
            ["rule", "tier", "queue", "priority", "status"],
            registry=r,
        )
        self.suppressions = Tally(
            "forewarn_suppressions_total",
            "Detections or notices not sent (or deferred), by rule and reason.",
            ["rule", "reason"],
            registry=r,
        )
        self.transitions = Tally(
            "forewarn_task_transitions_total",
            "Task lifecycle transitions, by rule and transition (opened, escalated,"
            " closed_by_feedback, closed_by_clearing, ...).",
            ["rule", "transition"],
            registry=r,
        )
        self.feedback = Tally(
            "forewarn_task_feedback_total",
            "Task updates received from work systems, by reported status and result"
            " (applied, unknown_task, task_closed, no_change, key_mismatch).",
            ["status", "result"],
            registry=r,
        )
        self.tasks_open = Gauge(
            "forewarn_tasks_open",
            "Open tasks of this worker's partitions, by queue.",
            ["queue"],
            registry=r,
        )
        self.tasks_overdue = Gauge(
            "forewarn_tasks_overdue",
            "Open tasks whose promise (due_by) was missed, by queue.",
            ["queue"],
            registry=r,
        )
        self.tasks_held = Gauge(
            "forewarn_tasks_held",
            "Tasks held past their rule's guard budget, waiting for an operator, by queue.",
            ["queue"],
            registry=r,
        )
        self.maintenance_windows = Gauge(
            "forewarn_maintenance_windows",
            "Maintenance windows kept by this worker's partitions, by state (planned, in_force).",
            ["state"],
            registry=r,
        )
        self.due_keys = Gauge(
            "forewarn_due_keys",
            "Keys with something due (a task's promise, a held notice), by agent.",
            ["agent"],
            registry=r,
        )
        self.escalation_delay = Timings(
            "forewarn_task_escalation_delay_seconds",
            "A task's due time to its escalation being sent.",
            buckets=ESCALATION_BUCKETS,
            registry=r,
        )
        self.dead_letters = Tally(
            "forewarn_dead_letters_total",
            "Records sent to dead-letters, by reason.",
            ["reason"],
            registry=r,
        )
        self.latency = Timings(
            "forewarn_detection_latency_seconds",
            "Event time of the triggering event to the output being produced.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.processing = Timings(
            "forewarn_event_processing_seconds",
            "Time to process one input record, sends included.",
            ["agent"],
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.rules_loaded = Gauge(
            "forewarn_rules_loaded", "Rules in the running rule set.", registry=r
        )
        self.rule_series = Gauge(
            "forewarn_rule_series",
            "Distinct series (filter, measures, window, baseline, change) of the running"
            " rule set's enabled rules: windows and baselines kept per key at most.",
            registry=r,
        )
        self.reload_success = Gauge(
            "forewarn_rules_last_reload_success",
            "1 if the last rule (re)load succeeded, 0 if it was rejected.",
            registry=r,
        )
        self.reload_timestamp = Gauge(
            "forewarn_rules_last_reload_timestamp_seconds",
            "Unix time of the last rule (re)load attempt.",
            registry=r,
        )
        self.reloads = Counter(
            "forewarn_rules_reloads_total",
            "Rule reload attempts, by result.",
            ["result"],
            registry=r,
        )
        self.build_info = Gauge(
            "forewarn_build_info",
            "The running worker's version, Python, and engine (compiled or interpreted).",
            ["version", "python", "engine"],
            registry=r,
        )
        self.rule_info = Gauge(
            "forewarn_rule_set_info",
            "The running rule set's version, as a label.",
            ["version"],
            registry=r,
        )
        self.lag = Gauge(
            "forewarn_consumer_lag_messages",
            "Messages not yet consumed, by topic and partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.gaps = Counter(
            "forewarn_input_gaps_total",
            "Records Faust failed to deliver that the worker read directly and processed.",
            ["source"],
            registry=r,
        )
        self.stalls = Counter(
            "forewarn_input_stalls_total",
            "Partitions found with records waiting that Faust did not deliver, sought back.",
            ["source"],
            registry=r,
        )
        self.inflight = Gauge(
            "forewarn_inflight_records",
            "Input records processed since the agent's last checkpoint (not acknowledged yet:"
            " their outputs and state await the broker), by agent.",
            ["agent"],
            registry=r,
        )
        self.inflight_oldest = Gauge(
            "forewarn_inflight_oldest_seconds",
            "How long the oldest such record has waited for its checkpoint, by agent.",
            ["agent"],
            registry=r,
        )
        self.broker_reachable = Gauge(
            "forewarn_broker_reachable",
            "1 if a bootstrap server accepted a connection at the last check (every 5 s).",
            registry=r,
        )
        self.state_keys = Gauge(
            "forewarn_state_keys", "Estimated keys in local state, by table.", ["table"], registry=r
        )
        self.state_bytes = Gauge(
            "forewarn_state_bytes",
            "Estimated live bytes of local state, by table.",
            ["table"],
            registry=r,
        )

    def declare(self, rule_ids: Iterable[str], suppression_reasons: Iterable[str]) -> None:
        """Export the known label values at 0 (see above)."""
        reasons = tuple(suppression_reasons)
        for source in ("usage", "billing"):
            self.without_profile.labels(source)
        for source in INPUT_SOURCES:
            self.events.labels(source)
            self.gaps.labels(source)
            self.stalls.labels(source)
            for reason in DEAD_LETTER_REASONS:
                if reason != DeadLetterReason.RULE_ERROR:
                    self.invalid.labels(source, reason)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for status in FEEDBACK_STATUSES:
            for result in FEEDBACK_RESULTS:
                self.feedback.labels(status, result)
        for queue in QUEUES:
            self.tasks_open.labels(queue)
            self.tasks_overdue.labels(queue)
            self.tasks_held.labels(queue)
        for state in ("planned", "in_force"):
            self.maintenance_windows.labels(state)
        for rule_id in rule_ids:
            self.evaluations.declare(rule_id)
            self.rule_failures.labels(rule_id)
            for reason in reasons:
                self.suppressions.labels(rule_id, reason)
            for transition in TRANSITIONS:
                self.transitions.labels(rule_id, transition)

    def serve(self, host: str, port: int) -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
