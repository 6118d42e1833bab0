"""Every metric Vigil exports: name, type, help, label names and (histograms) buckets, in one place.

Services never build a prometheus-client metric themselves: they ask this module for one, in the
``CollectorRegistry`` they were given (``counter``, ``gauge``, ``histogram``), or for an empty
family to fill at scrape time (``counter_family``, ``gauge_family``) in a custom collector. A test
fails when code creates a metric any other way, or when an entry here is used nowhere, and
checks the Prometheus naming rules on every entry (``promtool check metrics`` on a real scrape).

Names are written as Prometheus exposes them: counters end in ``_total`` (prometheus-client
adds the suffix itself, so the factory strips it). The telemetry mirrors (the fleet's last value
of each metric of ``vigil.catalog.METRICS``, per GPU, host or training rank) are derived from that
catalog rather than listed here: ``vigil_`` + the telemetry name, its type, help and unit.

Adding a metric: one ``Family`` line in ``FAMILIES`` (keep label values bounded: per GPU, host,
job, rank, topic partition or receiver, never per sample, step or request), then create it where
it is set with ``counter(registry, "vigil_..._total")`` etc. The README's "Metrics" section lists
every family (a test checks that too).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil import catalog

Kind = Literal["counter", "gauge", "histogram"]

# Seconds, from a fast poll to a stuck one (analytics' poll), and from a live page to a replayed one.
_POLL_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_COLLECT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_DELAY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# A store write: milliseconds when healthy, up to the retries' minute when not; a sink's lag: its flush
# interval (1 s) when keeping up, minutes behind a backlog.
_WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SINK_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
# Seconds, from a small classifier on loopback to an LLM's long answer (canary golden items).
_ANSWER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

ENTITY = ("detector", "alertname", "cluster", "host", "gpu_index", "job_id", "rank")
GPU = ("cluster", "host", "gpu_index")
HOST = ("cluster", "host")
RANK = ("cluster", "job_id", "rank")


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def base(self) -> str:
        """The name prometheus-client is given (it appends ``_total`` to a counter)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


FAMILIES: tuple[Family, ...] = (
    # --- every producer and consumer (kernel: vigil.bus)
    Family("vigil_bus_up", "gauge", "1 while the broker answers, 0 during an outage"),
    Family("vigil_bus_outages_total", "counter", "Broker outages seen (episodes of failed calls)"),
    Family("vigil_bus_retries_total", "counter", "Broker calls that failed and were retried"),
    Family("vigil_producer_renewals_total", "counter", "Producers thrown away after a failure and built again"),
    Family(
        "vigil_dead_letter_records_total",
        "counter",
        "Records sent to a dead-letter topic, by source topic and reason",
        ("topic", "reason"),
    ),
    Family(
        "vigil_consumer_commits_refused_total",
        "counter",
        "Offset commits left out because they would move a partition's committed offset backwards",
        ("topic",),
    ),
    Family(
        "vigil_consumer_lag_records",
        "gauge",
        "Records between the group's committed offset and the log end, per assigned partition",
        ("group", "topic", "partition"),
    ),
    Family("vigil_consumer_last_poll_timestamp_seconds", "gauge", "When the consumer's last poll returned", ("group",)),
    # --- analytics
    Family("vigil_analytics_records_total", "counter", "Records consumed, by topic", ("topic",)),
    Family("vigil_analytics_samples_total", "counter", "Telemetry samples scored"),
    Family("vigil_analytics_training_steps_total", "counter", "Training steps (rank-steps) judged"),
    Family(
        "vigil_analytics_samples_dropped_total",
        "counter",
        "Telemetry samples dropped because their series was over a series limit, by limit",
        ("reason",),
    ),
    Family("vigil_analytics_series", "gauge", "Series with state in this process"),
    Family("vigil_analytics_detections_total", "counter", "Detections published", ("detector", "decision")),
    Family("vigil_analytics_predictions_total", "counter", "Predictions published", ("predictor",)),
    Family(
        "vigil_analytics_snapshots_restored_total",
        "counter",
        "Partitions whose stage state was restored from a snapshot when assigned (a warm start)",
        ("topic",),
    ),
    Family(
        "vigil_analytics_snapshots_discarded_total",
        "counter",
        "Restored snapshots discarded because the group never committed past them (another log)",
        ("topic",),
    ),
    Family("vigil_analytics_poll_seconds", "histogram", "Time to decode and score one poll", (), _POLL_BUCKETS),
    Family(
        "vigil_analytics_snapshot_age_seconds",
        "gauge",
        "Seconds since detector state was last snapshotted (since the start before the first)",
    ),
    Family(
        "vigil_detection_delay_seconds",
        "histogram",
        "Wall time from a detection's event time to its publication, by detector",
        ("detector",),
        _DELAY_BUCKETS,
    ),
    Family("vigil_detection_firing", "gauge", "1 while a detector fires about an entity, 0 once resolved", ENTITY),
    Family("vigil_detection_score", "gauge", "The score of the entity's latest detection", ENTITY),
    Family("vigil_telemetry_last_timestamp_seconds", "gauge", "Event time of the newest sample from the host", HOST),
    Family("vigil_training_step", "gauge", "The latest step a training rank reported", RANK),
    Family("vigil_training_hung", "gauge", "1 while a training job is judged hung", ("cluster", "job_id")),
    # --- alerting
    Family(
        "vigil_alerting_detections_total",
        "counter",
        "Detections consumed, by what they did: first, resolved, no_change, invalid",
        ("decision",),
    ),
    Family(
        "vigil_alerting_predictions_total",
        "counter",
        "Prediction alert rules evaluated, by what they did: first, escalated, resolved, no_change; "
        "and predictions that were invalid or met no rule (no_rule)",
        ("decision",),
    ),
    Family("vigil_alerts_firing", "gauge", "Alerts firing now, by severity", ("severity",)),
    Family(
        "vigil_remediation_runs",
        "gauge",
        "Remediation runs in the store, by runbook and state (planned, running, waiting_approval, verifying, "
        "succeeded, failed, ...)",
        ("runbook", "state"),
    ),
    Family(
        "vigil_remediation_steps",
        "gauge",
        "Remediation steps (actions) in the store, by action and state (pending, running, succeeded, failed, skipped)",
        ("action", "state"),
    ),
    Family(
        "vigil_incidents_open",
        "gauge",
        "Open or acknowledged incidents, by priority band of GPU-hours at risk (P1 >= 100, P2 >= 10, "
        "P3 >= 1, P4 < 1) and failure-domain kind",
        ("priority", "domain"),
    ),
    Family(
        "vigil_incidents_gpu_seconds_at_risk",
        "gauge",
        "GPU-seconds at risk (GPU-hours x 3600) summed over open or acknowledged incidents, by failure-domain kind",
        ("domain",),
    ),
    Family(
        "vigil_notifications_total",
        "counter",
        "Notification attempts, by notifier and result: delivered, retryable, permanent",
        ("notifier", "result"),
    ),
    Family("vigil_outbox_pending", "gauge", "Notifications waiting in the outbox (due or backing off)", ("notifier",)),
    Family(
        "vigil_outbox_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest notification waiting in the outbox (0 when none)",
        ("notifier",),
    ),
    Family(
        "vigil_alerting_pruned_total",
        "counter",
        "Records deleted by retention, by table: outbox, notification_log, alerts",
        ("table",),
    ),
    # --- the Influx sink (vigil.sinks)
    Family("vigil_sink_records_total", "counter", "Records the sink consumed, by topic", ("topic",)),
    Family(
        "vigil_sink_points_written_total",
        "counter",
        "Points (lines) the store confirmed, by stream; a telemetry point is one sample",
        ("stream",),
    ),
    Family(
        "vigil_sink_samples_skipped_total",
        "counter",
        "Telemetry samples line protocol cannot hold (NaN, infinities), by reason",
        ("reason",),
    ),
    Family(
        "vigil_sink_write_requests_total",
        "counter",
        "Write requests to the store, by outcome: ok, rejected (the data), failed (the store)",
        ("outcome",),
    ),
    Family("vigil_sink_write_retries_total", "counter", "Write attempts the client retried (connection, 429, 5xx)"),
    Family(
        "vigil_sink_write_seconds",
        "histogram",
        "Time for the store to confirm one write request, retries included",
        (),
        _WRITE_BUCKETS,
    ),
    Family(
        "vigil_sink_lag_seconds",
        "histogram",
        "From a record's broker timestamp to the store's confirmation of its lines",
        (),
        _SINK_LAG_BUCKETS,
    ),
    Family("vigil_sink_store_up", "gauge", "1 while the store confirms writes, 0 during an outage"),
    Family("vigil_sink_store_outages_total", "counter", "Store outages seen (episodes of writes not confirmed)"),
    Family("vigil_sink_store_retries_total", "counter", "Writes the store did not confirm, retried after a backoff"),
    # --- the canary (labels from the probe files: probe, arm; version is the one an arm answered last)
    Family(
        "vigil_canary_rounds_total",
        "counter",
        "Canary rounds by outcome (ok, failed, not_ready)",
        ("probe", "arm", "outcome"),
    ),
    Family(
        "vigil_canary_item_latency_seconds",
        "histogram",
        "Golden item request-to-answer time",
        ("probe", "arm"),
        _ANSWER_BUCKETS,
    ),
    Family(
        "vigil_canary_ttft_seconds",
        "histogram",
        "Time to first token of streamed golden items",
        ("probe", "arm"),
        _ANSWER_BUCKETS,
    ),
    Family(
        "vigil_canary_pass_ratio",
        "gauge",
        "Share of golden items that passed in the arm's last round",
        ("probe", "arm", "version"),
    ),
    Family("vigil_canary_verdict", "gauge", "The arm's last judgement: 0 pass, 1 marginal, 2 fail", ("probe", "arm")),
    Family("vigil_canary_judgements_total", "counter", "Judgements by verdict", ("probe", "verdict")),
    Family("vigil_canary_results_pending", "gauge", "Results and detections not yet on the broker"),
    Family(
        "vigil_canary_results_dropped_total",
        "counter",
        "Results dropped because the buffer was full while the broker was away",
    ),
    # --- the node agent
    Family(
        "vigil_collector_errors_total", "counter", "Collector errors, by collector and error", ("collector", "error")
    ),
    Family("vigil_collector_samples_total", "counter", "Samples collected, by collector", ("collector",)),
    Family(
        "vigil_collector_collect_seconds",
        "histogram",
        "Duration of one collect() run",
        ("collector",),
        _COLLECT_BUCKETS,
    ),
    Family(
        "vigil_collector_last_success_timestamp_seconds", "gauge", "Time of the last successful run", ("collector",)
    ),
    Family(
        "vigil_agent_published_records_total", "counter", "Records acknowledged by the broker, by stream", ("stream",)
    ),
    Family("vigil_agent_published_samples_total", "counter", "Telemetry samples in batches acknowledged by the broker"),
    Family(
        "vigil_agent_dropped_records_total",
        "counter",
        "Records the agent dropped, by stream and reason",
        ("stream", "reason"),
    ),
    Family("vigil_agent_buffer_records", "gauge", "Records waiting for the broker", ("where",)),
    Family("vigil_agent_buffer_bytes", "gauge", "Bytes waiting for the broker", ("where",)),
    # --- the training SDK (in the training job's own process)
    Family("vigil_training_reporter_published_total", "counter", "TrainingSteps confirmed by the broker"),
    Family(
        "vigil_training_reporter_dropped_total",
        "counter",
        "TrainingSteps given up, by reason (queue_full, invalid, closed, undelivered)",
        ("reason",),
    ),
    Family(
        "vigil_training_reporter_publish_errors_total", "counter", "Publish attempts that failed (the steps are kept)"
    ),
    Family("vigil_training_reporter_buffered_steps", "gauge", "TrainingSteps waiting in the queue and the outbox"),
)


def telemetry_labels(metric: str) -> tuple[str, ...] | None:
    """The identity labels of a telemetry metric's mirror, by its family; None: not mirrored."""
    if metric.startswith("gpu_"):
        return GPU
    if metric.startswith("host_"):
        return HOST
    if metric.startswith("training_"):
        return RANK
    return None


def telemetry_families() -> Iterator[tuple[str, Family]]:
    """(telemetry metric, its mirror) for every metric of ``vigil.catalog.METRICS``."""
    for spec in catalog.METRICS.values():
        labels = telemetry_labels(spec.name)
        if labels is not None:
            unit = f" ({spec.unit})" if spec.unit else ""
            text = f"Last value seen of {spec.name}: {spec.help}{unit}"
            yield spec.name, Family("vigil_" + spec.name, spec.kind, text, labels)


def families() -> Mapping[str, Family]:
    """Every exported family by name: the entries above and the telemetry mirrors."""
    out = {f.name: f for f in FAMILIES}
    out.update((f.name, f) for _, f in telemetry_families())
    return out


def lookup(name: str, kind: Kind) -> Family:
    family = families().get(name)
    if family is None:
        raise KeyError(f"metric {name!r} is not in vigil.metrics_catalog")
    if family.kind != kind:
        raise TypeError(f"metric {name!r} is a {family.kind} in vigil.metrics_catalog, not a {kind}")
    return family


def counter(registry: CollectorRegistry | None, name: str) -> Counter:
    f = lookup(name, "counter")
    return Counter(f.base, f.help, f.labels, registry=registry)


def gauge(registry: CollectorRegistry | None, name: str) -> Gauge:
    f = lookup(name, "gauge")
    return Gauge(f.base, f.help, f.labels, registry=registry)


def histogram(registry: CollectorRegistry | None, name: str) -> Histogram:
    f = lookup(name, "histogram")
    return Histogram(f.base, f.help, f.labels, registry=registry, buckets=f.buckets)


def gauge_family(name: str) -> GaugeMetricFamily:
    """An empty gauge family for a custom collector to fill (``add_metric(label values, value)``)."""
    f = lookup(name, "gauge")
    return GaugeMetricFamily(f.name, f.help, labels=f.labels)


def counter_family(name: str) -> CounterMetricFamily:
    f = lookup(name, "counter")
    return CounterMetricFamily(f.name, f.help, labels=f.labels)
