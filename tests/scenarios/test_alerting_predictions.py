"""Early-warning timelines on the in-memory bus with a fake clock: predictions and detections in one
consumer group, hysteresis, escalation, dead letters, and a crash between the database and the offset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.service import AlertingService
from vigil.alerting.store import AlertStore

from tests.scenarios.test_alerting_service import T0, Crash, Harness, det
from vigil.bus.base import TopicPartition
from vigil.codec import encode
from vigil.config import validate
from vigil.events import Prediction

DAY = 86400.0


def gpu(p: float, ts: float = T0, lemon: bool = False, host: str = "node-1") -> Prediction:
    evidence: dict[str, Any] = {"remap_pending": 2.0, "sbe_rate": 1.1, "lemon_score": 0.4, "repeat_offender": lemon}
    labels = {"cluster": "c1", "host": host, "gpu_index": "3", "gpu_serial": "S-3"}
    return Prediction(ts, "gpu_risk", f"gpu:{host}/3", "gpu", p, 7 * DAY, labels, evidence)


def fs(p: float, eta_s: float, ts: float) -> Prediction:
    labels = {"cluster": "c1", "host": "node-1", "mountpoint": "/scratch"}
    return Prediction(ts, "time_to_disk_full", "fs:node-1:/scratch", "filesystem", p, eta_s, labels, {})


class PredictionHarness(Harness):
    def predict(self, *predictions: Prediction) -> None:
        producer = self.bus.producer()
        for p in predictions:
            producer.send(self.topics.predictions, encode(p), key=p.entity.encode())

    def outbox(self, notifier: str = "hook") -> list[tuple[str, str, str]]:
        rows = [r for r in self.store().outbox() if r.notifier == notifier]
        return [(r.payload["class"], r.reason, r.payload["severity"]) for r in rows]


# Early warnings go to the quiet receiver by default; these timelines route everything to both receivers.
ROUTED = {
    "notifiers": [
        {"type": "webhook", "url": "http://127.0.0.1:9/hook", "name": "hook", "send_resolved": True},
        {"type": "log", "send_resolved": False},
    ],
    "receivers": [{"name": "both", "notifiers": ["hook", "log"]}],
    "route": {"receiver": "both"},
    "retry": {"jitter_seed": 1, "max_attempts": 3},
}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[PredictionHarness]:
    yield PredictionHarness(tmp_path, validate(AlertingConfig, ROUTED))


def timeline(h: PredictionHarness, svc: AlertingService, *predictions: Prediction, every: float = 600.0) -> None:
    """One prediction per poll, ``every`` seconds apart (the timers run at each step)."""
    for p in predictions:
        h.clock.advance(max(0.0, p.ts - h.clock.now()))
        h.predict(p)
        svc.step()
    h.clock.advance(every)
    svc.step(0)


def test_predictions_and_detections_share_one_group_and_one_commit(h: PredictionHarness) -> None:
    svc = h.service()
    h.publish(det())
    h.predict(gpu(0.6))
    assert svc.step() == 2
    assert [a.labels["alertname"] for a in h.alerts_on_topic()] == ["gpu_thermal", "GpuFailureRisk"]
    committed = h.bus._committed[h.config.group]
    assert committed[TopicPartition(h.topics.detections, 0)] == 1
    assert committed[TopicPartition(h.topics.predictions, 0)] == 1
    assert h.metric("vigil_alerting_predictions_total", decision="first") == 1
    assert h.metric("vigil_alerting_predictions_total", decision="no_change") == 1  # repeat_offender: false
    assert h.metric("vigil_alerting_detections_total", decision="first") == 1
    assert sum(h.metric("vigil_alerts_firing", severity=s) for s in ("critical", "warning", "info")) == 2


def test_hysteresis_timeline_pages_once_and_resolves_once(h: PredictionHarness) -> None:
    svc = h.service()
    probabilities = [0.2, 0.45, 0.55, 0.9, 0.4, 0.31, 0.25, 0.35, 0.45]
    timeline(h, svc, *[gpu(p, ts=T0 + 600 * i) for i, p in enumerate(probabilities)])
    assert h.outbox() == [("GpuFailureRisk", "first", "warning"), ("GpuFailureRisk", "resolved", "warning")]
    assert [(a.status, a.starts_at, a.ends_at) for a in h.alerts_on_topic()] == [
        ("firing", T0 + 1200, None),
        ("resolved", T0 + 1200, T0 + 3600),
    ]
    # A resolve for a fingerprint that never fired (0.2 at the start) is no page and no history.
    svc.dispatcher.drain_once()
    first, resolved = h.hook.sent
    assert first.summary == "[gpu node-1/gpu3] GPU 3 on node-1: 55% chance of failure within 7 days"
    assert first.custom_details["top_evidence"] == "remap_pending=2, sbe_rate=1.1"
    assert first.custom_details["recommended_action"].startswith("drain the node (node-1) at the next job boundary")
    assert resolved.action == "resolve" and resolved.dedup_key == first.dedup_key


def test_filesystem_warning_escalates_to_critical_then_resolves(h: PredictionHarness) -> None:
    svc = h.service()
    timeline(h, svc, fs(1.0, 6 * 3600, T0), fs(1.0, 3 * 3600, T0 + 600), fs(1.0, 1500, T0 + 1200))
    timeline(h, svc, fs(0.0, 0.0, T0 + 1900))  # the forecast no longer holds (a job cleaned up)
    assert h.outbox() == [
        ("FilesystemFillingUp", "first", "warning"),
        ("FilesystemFillingUp", "escalated", "critical"),
        ("FilesystemFillingUp", "resolved", "critical"),
    ]
    assert h.outbox("log") == [  # send_resolved: false, but an escalation is a page
        ("FilesystemFillingUp", "first", "warning"),
        ("FilesystemFillingUp", "escalated", "critical"),
    ]
    assert h.metric("vigil_alerting_predictions_total", decision="escalated") == 1
    svc.dispatcher.drain_once()
    warning, critical, resolved = h.hook.sent
    assert warning.dedup_key == critical.dedup_key == resolved.dedup_key  # one incident
    assert critical.custom_details["eta"] == "in about 25 minutes"
    assert critical.severity == critical.members[0].severity == "critical"
    assert [a.severity for a in h.alerts_on_topic()] == ["warning", "critical", "critical"]


def test_early_warnings_go_to_the_quiet_receiver_by_default(tmp_path: Path) -> None:
    h = PredictionHarness(tmp_path)  # the default route: predictions to "quiet" (the log notifiers)
    svc = h.service()
    timeline(h, svc, gpu(0.9))
    assert h.outbox("hook") == [] and h.outbox("log") == [("GpuFailureRisk", "first", "warning")]


def test_malformed_predictions_go_to_their_dlq_and_are_counted(h: PredictionHarness) -> None:
    svc = h.service()
    producer = h.bus.producer()
    producer.send(h.topics.predictions, b"\x00garbage", key=b"gpu:x/0")
    producer.send(h.topics.predictions, encode(gpu(1.7)), key=b"gpu:node-1/3")
    producer.send(h.topics.predictions, encode(det()), key=b"k")  # a Detection on the predictions topic
    h.predict(gpu(0.8))
    assert svc.step() == 4
    dlq = h.bus.records(h.topics["predictions"].dlq)
    reasons = [dict(r.headers)["vigil.error.reason"] for r in dlq]
    assert reasons == [b"invalid_event", b"invalid_event", b"unexpected_type"]
    assert b"probability 1.7" in dict(dlq[1].headers)["vigil.error.detail"]
    assert dlq[0].value == b"\x00garbage" and dlq[0].key == b"gpu:x/0"
    topic = h.topics.predictions
    assert h.metric("vigil_dead_letter_records_total", topic=topic, reason="invalid_event") == 2
    assert h.metric("vigil_dead_letter_records_total", topic=topic, reason="unexpected_type") == 1
    assert h.metric("vigil_alerting_predictions_total", decision="invalid") == 3
    assert h.metric("vigil_alerting_detections_total", decision="invalid") == 0
    assert h.metric("vigil_alerting_predictions_total", decision="first") == 1
    assert svc.step() == 0  # offsets past the bad records were committed


def test_unknown_predictor_is_counted_not_dead_lettered(h: PredictionHarness) -> None:
    svc = h.service()
    h.predict(Prediction(T0, "psu_risk", "psu:node-1/0", "node", 0.99, DAY, {"host": "node-1"}, {}))
    assert svc.step() == 1
    assert h.metric("vigil_alerting_predictions_total", decision="no_rule") == 1
    assert h.bus.records(h.topics["predictions"].dlq) == [] and h.store().alerts() == []


def test_repeat_offender_pages_once_per_board_across_hosts(h: PredictionHarness) -> None:
    svc = h.service()
    timeline(h, svc, gpu(0.1, lemon=True), gpu(0.1, ts=T0 + DAY, lemon=True, host="node-7"))
    assert h.outbox() == [("GpuRepeatOffender", "first", "warning")]
    svc.dispatcher.drain_once()
    assert h.hook.sent[0].custom_details["recommended_action"] == "open an RMA case for serial S-3"


def test_crash_before_offset_commit_replays_predictions_without_a_second_page(h: PredictionHarness) -> None:
    first = h.service()
    h.predict(gpu(0.7), fs(1.0, 1200, T0))

    def die(offsets: object = None) -> None:
        raise Crash

    first._consumer.commit = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.step()
    first._consumer.crash()
    second = h.service(CollectorRegistry())
    assert second.step() == 2  # replayed ...
    assert h.metric("vigil_alerting_predictions_total", decision="no_change") == 3  # ... recognised (+ lemon)
    h.clock.advance(30)  # warnings wait group_wait
    second.step(0)
    second.dispatcher.drain_once()
    assert sorted(n.class_ for n in h.hook.sent) == ["FilesystemFillingUp", "GpuFailureRisk"]
    assert len(h.alerts_on_topic()) == 2


def test_predictions_can_be_switched_off(tmp_path: Path) -> None:
    config = validate(AlertingConfig, {"notifiers": [{"type": "log"}], "predictions": {"enabled": False}})
    h = PredictionHarness(tmp_path, config)
    svc = AlertingService(h.bus, h.topics, config, h.clock, CollectorRegistry(), h.db, notifiers={"log": h.log})
    h.predict(gpu(0.9))
    assert svc.step() == 0
    assert TopicPartition(h.topics.predictions, 0) not in svc._consumer.assignment()
    assert AlertStore(h.db).alerts() == []
