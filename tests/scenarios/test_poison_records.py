"""The three poison records of issue 14 through analytics and alerting on the in-memory bus.

Before the codec range-checked them, the year-10000 detection and the 1e12 s forecast raised in
alerting's step (so the offset was never committed and every restart crashed again), and XID 79 on
GPU 2**63 paged. Now each is dead-lettered with its reason and counted, and the next valid record
still pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.notifiers import DeliveryResult, Notification
from vigil.alerting.service import AlertingService
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.service import AnalyticsService

from tests import poison
from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode, encode
from vigil.events import Detection
from vigil.topics import Topics


class Pager:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, notification: Notification) -> DeliveryResult:
        self.sent.append(notification.to_json())
        return DeliveryResult.delivered()

    def close(self) -> None:
        return None


def dlq_reasons(bus: MemoryBus, topic: str) -> list[tuple[bytes, bytes]]:
    return [
        (dict(r.headers)["vigil.error.reason"], dict(r.headers)["vigil.error.detail"])
        for r in bus.records(topic + ".dlq")
    ]


def test_poison_detection_and_prediction_are_dead_lettered_and_the_next_detection_pages(tmp_path: Path) -> None:
    bus, topics, clock, registry, pager = MemoryBus(), Topics(), FakeClock(poison.T0), CollectorRegistry(), Pager()
    config = AlertingConfig.model_validate({"notifiers": [{"type": "log", "name": "pager"}]})
    service = AlertingService(bus, topics, config, clock, registry, tmp_path / "alerts.db", notifiers={"pager": pager})
    producer = bus.producer()
    producer.send(topics.detections, poison.detection_year_10000(), key=b"a")
    producer.send(topics.predictions, poison.prediction_far_horizon(), key=b"b")
    producer.send(topics.detections, encode(poison.detection()), key=b"c")

    assert service.step(0) == 3  # no exception: the batch is consumed and committed
    service.dispatcher.drain_once()

    assert [p["members"][0]["labels"]["alertname"] for p in pager.sent] == ["gpu_thermal"]
    assert dlq_reasons(bus, topics.detections) == [
        (b"invalid_event", b"InvalidEvent: Detection.ts '9999-12-31T23:59:59-14:00' is outside 2000-01-01..2100-01-01")
    ]
    assert dlq_reasons(bus, topics.predictions) == [
        (b"invalid_event", b"InvalidEvent: Prediction.horizon_s: 1000000000000.0 is outside 0..315360000")
    ]
    for topic in (topics.detections, topics.predictions):
        assert (
            registry.get_sample_value("vigil_dead_letter_records_total", {"topic": topic, "reason": "invalid_event"})
            == 1
        )
    service.close()


def test_xid_on_gpu_2_to_the_63_is_dead_lettered_and_does_not_page(tmp_path: Path) -> None:
    bus, topics, clock, registry = MemoryBus(), Topics(), FakeClock(poison.T0), CollectorRegistry()
    analytics = AnalyticsService(bus, topics, AnalyticsConfig(), clock, registry, tmp_path / "state")
    producer = bus.producer()
    producer.send(topics.logs, poison.log_event_huge_gpu(), key=b"node-1")
    producer.send(topics.logs, encode(poison.log_event(gpu_index=3)), key=b"node-1")
    while analytics.step(0):
        pass

    found = [d for d in (decode(r.value) for r in bus.records(topics.detections)) if isinstance(d, Detection)]
    assert [(d.labels["alertname"], d.labels["gpu_index"]) for d in found] == [("GpuXidFatal", "3")]
    assert dlq_reasons(bus, topics.logs) == [
        (b"invalid_event", b"InvalidEvent: LogEvent.gpu_index: 9223372036854775808 is outside 0..255")
    ]
    assert (
        registry.get_sample_value("vigil_dead_letter_records_total", {"topic": topics.logs, "reason": "invalid_event"})
        == 1
    )
    analytics.close()
