"""The alerting service's self-metrics, registered in the registry the caller injects."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AlertingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.detections = Counter(
            "vigil_alerting_detections",
            "Detections consumed, by what they did: first, resolved, no_change, invalid",
            ["decision"],
            registry=registry,
        )
        self.predictions = Counter(
            "vigil_alerting_predictions",
            "Prediction alert rules evaluated, by what they did: first, escalated, resolved, no_change; "
            "and predictions that were invalid or met no rule (no_rule)",
            ["decision"],
            registry=registry,
        )
        self.firing = Gauge("vigil_alerts_firing", "Alerts firing now", registry=registry)
        self.notifications = Counter(
            "vigil_notifications",
            "Notification attempts, by notifier and result: delivered, retryable, permanent",
            ["notifier", "result"],
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "vigil_outbox_pending",
            "Notifications waiting in the outbox (due or backing off)",
            registry=registry,
        )
        self.pruned = Counter(
            "vigil_alerting_pruned",
            "Records deleted by retention, by table: outbox, notification_log, alerts",
            ["table"],
            registry=registry,
        )
