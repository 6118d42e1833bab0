"""Vigil's own health: the broker as its clients see it, consumer lag and polls, dead letters, the
alerting outbox, analytics' throughput and delays, the Influx sink, and the node agents."""

from __future__ import annotations

from vigil.dashboards.grafana import Board, Panel, Target

T = Target
RATE = "[$__rate_interval]"


def p95(histogram: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile(0.95, sum by ({group}) (rate({histogram}_bucket{RATE})))"


def _consumers() -> tuple[Panel, ...]:
    return (
        Panel("Broker reachable", (T("min(vigil_bus_up)"),), "stat", width=4, height=4, thresholds=((1, "green"),)),
        Panel(
            "Dead letters (total)",
            (T("sum(vigil_dead_letter_records_total)"),),
            "stat",
            width=4,
            height=4,
            thresholds=((1, "orange"),),
            no_value="0",
        ),
        Panel("Outbox pending", (T("sum(vigil_outbox_pending)"),), "stat", width=4, height=4),
        Panel("Consumer lag (total)", (T("sum(vigil_consumer_lag_records)"),), "stat", width=4, height=4),
        Panel("Series held by analytics", (T("sum(vigil_analytics_series)"),), "stat", width=4, height=4),
        Panel("Detector snapshot age", (T("max(vigil_analytics_snapshot_age_seconds)"),), "stat", "s", 4, 4),
        Panel(
            "Consumer lag by group and topic",
            (T("sum by (group, topic) (vigil_consumer_lag_records)", "{{group}} {{topic}}"),),
            description="Records between each group's committed offset and the log end",
        ),
        Panel(
            "Since the last poll",
            (T("time() - vigil_consumer_last_poll_timestamp_seconds", "{{group}}"),),
            unit="s",
            description="A consumer that stops polling is judged stalled after 30 poll timeouts",
        ),
        Panel(
            "Dead letters by topic and reason",
            (T(f"sum by (topic, reason) (increase(vigil_dead_letter_records_total{RATE}))", "{{topic}} {{reason}}"),),
            description="Records that could not be decoded or processed, sent to <topic>.dlq",
        ),
        Panel(
            "Outbox depth and oldest notification",
            (
                T("vigil_outbox_pending", "{{notifier}} pending"),
                T("vigil_outbox_oldest_pending_age_seconds", "{{notifier}} oldest (s)"),
            ),
            description="Notifications waiting (a notifier's outage shows here)",
        ),
        Panel(
            "Broker retries and producer renewals",
            (
                T(f"sum(rate(vigil_bus_retries_total{RATE}))", "retries"),
                T(f"sum(rate(vigil_producer_renewals_total{RATE}))", "producer renewals"),
            ),
            unit="ops",
        ),
    )


def _analytics() -> tuple[Panel, ...]:
    return (
        Panel(
            "Analytics: samples scored",
            (T(f"sum(rate(vigil_analytics_samples_total{RATE}))", "samples/s"),),
            unit="ops",
        ),
        Panel(
            "Analytics: poll time p95",
            (T(p95("vigil_analytics_poll_seconds"), "p95"),),
            unit="s",
            description="Time to decode and score one poll",
        ),
        Panel(
            "Detection delay p95 by detector",
            (T(p95("vigil_detection_delay_seconds", "detector"), "{{detector}}"),),
            unit="s",
            description="From a detection's event time to its publication",
        ),
        Panel(
            "Detections published",
            (
                T(
                    f"sum by (detector, decision) (rate(vigil_analytics_detections_total{RATE}))",
                    "{{detector}} {{decision}}",
                ),
            ),
            unit="ops",
        ),
    )


def _sink() -> tuple[Panel, ...]:
    return (
        Panel(
            "Sink: points written",
            (T(f"sum by (stream) (rate(vigil_sink_points_written_total{RATE}))", "{{stream}}"),),
            unit="ops",
        ),
        Panel(
            "Sink: store write and end-to-end lag p95",
            (T(p95("vigil_sink_write_seconds"), "write"), T(p95("vigil_sink_lag_seconds"), "lag")),
            unit="s",
        ),
    )


def _agents() -> tuple[Panel, ...]:
    return (
        Panel(
            "Agents: collector errors",
            (T(f"sum by (collector, error) (rate(vigil_collector_errors_total{RATE}))", "{{collector}} {{error}}"),),
            unit="ops",
        ),
        Panel(
            "Agents: records waiting for the broker",
            (T("sum by (instance, where) (vigil_agent_buffer_records)", "{{instance}} {{where}}"),),
            description="The spill buffer: memory and file, while the broker is away",
        ),
    )


def health() -> Board:
    return Board(
        "vigil-health",
        "Vigil / Vigil's own health",
        "Is Vigil itself keeping up: broker, consumer lag, dead letters, outbox, analytics, sink and agents.",
        (*_consumers(), *_analytics(), *_sink(), *_agents()),
    )
