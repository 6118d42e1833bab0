"""Alerting timelines on the in-memory bus with a fake clock: dedup, replays, dead letters, retries
and crashes. Nothing here sleeps; time moves only when a test advances the clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.metrics import priority_band
from vigil.alerting.notifiers import DeliveryResult, Notification
from vigil.alerting.service import AlertingService
from vigil.alerting.store import AlertStore

from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode, encode
from vigil.config import validate
from vigil.events import Alert, Detection, LogEvent
from vigil.topics import Topics

T0 = 1_767_225_600.0


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the service swallows it."""


class FakeNotifier:
    def __init__(self, *results: DeliveryResult) -> None:
        self.results = list(results)
        self.sent: list[Notification] = []
        self.crash_after_send = False

    def send(self, notification: Notification) -> DeliveryResult:
        self.sent.append(notification)
        if self.crash_after_send:
            raise Crash
        return self.results.pop(0) if self.results else DeliveryResult.delivered()

    def close(self) -> None:
        return None


def det(decision: str = "firing", ts: float = T0, host: str = "node-1", gpu: str = "0") -> Detection:
    return Detection(
        ts=ts,
        detector="gpu_thermal",
        series=f'gpu_temperature_celsius{{gpu_index="{gpu}",host="{host}"}}',
        labels={"cluster": "c1", "host": host, "gpu_index": gpu},
        score=5.0,
        decision=decision,
        severity="critical",
        reason={"action": "drain"},  # type: ignore[arg-type]
        window_start=ts - 60,
        window_end=ts,
        summary=f"GPU {gpu} on {host} runs hot",
    )


class Harness:
    def __init__(self, tmp_path: Path, config: AlertingConfig | None = None) -> None:
        self.bus = MemoryBus()
        self.topics = Topics()
        self.clock = FakeClock(T0)
        self.config = config or validate(
            AlertingConfig,
            {
                "notifiers": [
                    {"type": "webhook", "url": "http://127.0.0.1:9/hook", "name": "hook", "send_resolved": True},
                    {"type": "log", "send_resolved": False},
                ],
                "retry": {"jitter_seed": 1, "max_attempts": 3},
            },
        )
        self.db = tmp_path / "alerting" / "alerts.db"
        self.hook = FakeNotifier()
        self.log = FakeNotifier()

    def service(self, registry: CollectorRegistry | None = None) -> AlertingService:
        self.registry = registry or CollectorRegistry()
        return AlertingService(
            self.bus,
            self.topics,
            self.config,
            self.clock,
            self.registry,
            self.db,
            notifiers={"hook": self.hook, "log": self.log},
        )

    def publish(self, *detections: Detection) -> None:
        producer = self.bus.producer()
        for d in detections:
            producer.send(self.topics.detections, encode(d), key=d.series.encode())

    def alerts_on_topic(self) -> list[Alert]:
        events = [decode(r.value) for r in self.bus.records(self.topics.alerts)]
        return [a for a in events if isinstance(a, Alert)]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def store(self) -> AlertStore:
        return AlertStore(self.db)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    yield Harness(tmp_path)


def test_first_no_change_resolved_and_refire(h: Harness) -> None:
    svc = h.service()
    h.publish(det(), det(ts=T0 + 10))
    assert svc.step() == 2
    fp = h.alerts_on_topic()[0].fingerprint
    h.clock.advance(60)
    h.publish(det("resolved", ts=T0 + 60))
    svc.step()
    h.clock.advance(240)  # the group looks again group_interval (5 min) after its page: it tells the resolve
    h.publish(det(ts=T0 + 300))
    svc.step()
    store = h.store()
    assert [(r.notifier, r.reason) for r in store.outbox()] == [
        ("hook", "first"),
        ("log", "first"),
        ("hook", "resolved"),  # log has send_resolved: false
        ("hook", "first"),  # a new episode is a new incident, paged at once (critical)
        ("log", "first"),
    ]
    first_key, resolved_key, refire_key = (store.outbox()[i].key for i in (0, 2, 3))
    assert first_key == resolved_key != refire_key
    assert [(a.status, a.starts_at) for a in h.alerts_on_topic()] == [
        ("firing", T0),
        ("resolved", T0),
        ("firing", T0 + 300),
    ]
    alert = store.get(fp)
    assert alert is not None and alert.status == "firing" and alert.ends_at is None
    assert [i.state for i in store.incidents()] == ["open", "resolved"]
    assert h.metric("vigil_alerting_detections_total", decision="first") == 2
    assert h.metric("vigil_alerting_detections_total", decision="no_change") == 1
    assert h.metric("vigil_alerting_detections_total", decision="resolved") == 1
    assert h.metric("vigil_alerts_firing", severity="critical") == 1
    assert h.metric("vigil_alerts_firing", severity="warning") == 0
    (opened,) = [i for i in store.incidents() if i.state == "open"]
    band, kind = priority_band(opened.priority), opened.domain.kind
    assert h.metric("vigil_incidents_open", priority=band, domain=kind) == 1  # the resolved one is not counted
    assert h.metric("vigil_incidents_gpu_seconds_at_risk", domain=kind) == pytest.approx(opened.priority * 3600)


def test_dispatch_delivers_in_order_with_dedup_key(h: Harness) -> None:
    svc = h.service()
    h.publish(det())
    svc.step()
    h.clock.advance(60)
    h.publish(det("resolved", ts=T0 + 60))
    svc.step()
    h.clock.advance(300)
    svc.step(0)  # the timer: group_interval after the page, the resolve is told
    assert h.metric("vigil_outbox_pending", notifier="hook") == 2
    assert h.metric("vigil_outbox_pending", notifier="log") == 1
    svc.dispatcher.drain_once()
    sent = [(n.reason, n.action) for n in h.hook.sent]
    assert sent == [("first", "trigger"), ("resolved", "resolve")]
    assert [n.reason for n in h.log.sent] == ["first"]  # log has send_resolved: false
    first, resolved = h.hook.sent
    assert first.dedup_key == resolved.dedup_key and (first.receiver, h.log.sent[0].receiver) == ("hook", "log")
    assert first.domain is not None and (first.domain.kind, first.domain.id) == ("gpu", "node-1/gpu0")
    assert {r.state for r in h.store().outbox()} == {"delivered"}
    assert h.metric("vigil_outbox_pending", notifier="hook") == 0
    assert h.metric("vigil_outbox_oldest_pending_age_seconds", notifier="hook") == 0
    assert h.metric("vigil_notifications_total", notifier="hook", result="delivered") == 2


def test_replaying_detections_twice_pages_once_per_incident(h: Harness) -> None:
    timeline = [det(), det("resolved", ts=T0 + 60), det(ts=T0 + 120), det(host="node-2"), det("resolved", ts=T0 + 180)]
    svc = h.service()
    h.publish(*timeline)
    svc.step()
    h.publish(*timeline)  # analytics crashed and re-sent everything
    svc.step()
    hook = [r for r in h.store().outbox() if r.notifier == "hook"]
    # The first poll is a backlog, handled as it happened live: node-1's two episodes (fired, resolved,
    # fired again, resolved) are two incidents paged once each, node-2 one; the replay tells nothing.
    told = [(r.reason, r.payload["members"][0]["labels"]["host"]) for r in hook]
    assert told == [("first", "node-1"), ("first", "node-1"), ("first", "node-2")]
    assert len({r.key for r in hook}) == 3
    assert sorted(i.state for i in h.store().incidents()) == ["open", "resolved", "resolved"]
    assert h.metric("vigil_alerting_detections_total", decision="no_change") == 5
    assert len(h.alerts_on_topic()) == 5  # each transition once (node-1: 2 x fired, resolved; node-2 fired)


def test_malformed_records_go_to_dlq_and_are_counted(h: Harness) -> None:
    svc = h.service()
    producer = h.bus.producer()
    producer.send(h.topics.detections, b"{not json", key=b"k")
    xid = LogEvent(ts=T0, host="n", cluster="c", kind="xid", code=79, raw="x")
    producer.send(h.topics.detections, encode(xid))
    h.publish(det())
    assert svc.step() == 3
    dlq = h.bus.records(h.topics["detections"].dlq)
    assert dlq[0].value == b"{not json" and dlq[0].key == b"k"
    assert [dict(r.headers)["vigil.error.reason"] for r in dlq] == [b"invalid_event", b"unexpected_type"]
    assert h.metric("vigil_alerting_detections_total", decision="invalid") == 2
    assert h.metric("vigil_dead_letter_records_total", topic=h.topics.detections, reason="invalid_event") == 1
    assert h.metric("vigil_alerting_detections_total", decision="first") == 1
    assert svc.step() == 0  # offsets past the bad records were committed: nothing is redelivered


def test_retry_with_backoff_then_permanent_failure(h: Harness) -> None:
    h.hook.results = [
        DeliveryResult.retryable("HTTP 503"),
        DeliveryResult.permanent("HTTP 400"),
        DeliveryResult.delivered(),
    ]
    svc = h.service()
    h.publish(det(), det(host="node-2"))
    svc.step()
    svc.dispatcher.drain_once()
    assert len(h.hook.sent) == 1  # the receiver failed: it is held, node-2's page waits untried
    row = next(r for r in h.store().outbox() if r.notifier == "hook")
    assert row.attempts == 1 and row.last_error == "HTTP 503" and row.state == "pending"
    assert T0 + 0.25 <= row.next_attempt_at <= T0 + 0.5  # first backoff: initial 0.5s with equal jitter
    assert T0 + 0.25 <= svc.dispatcher.workers["hook"].held_until <= T0 + 0.5
    assert [p.reason for p in h.log.sent] == ["first", "first"]  # another receiver is not held
    svc.dispatcher.drain_once()
    assert len(h.hook.sent) == 1  # not due yet
    h.clock.advance(0.5)
    svc.dispatcher.drain_once()
    # node-2's page, never tried, goes before node-1's retry: a row that keeps failing blocks nobody
    assert [p.source for p in h.hook.sent] == ["node-1", "node-2", "node-1"]
    hook_rows = [r for r in h.store().outbox() if r.notifier == "hook"]
    assert [(r.state, r.attempts) for r in hook_rows] == [("delivered", 2), ("failed", 1)]
    assert hook_rows[1].last_error == "HTTP 400"
    assert h.metric("vigil_notifications_total", notifier="hook", result="retryable") == 1
    assert h.metric("vigil_notifications_total", notifier="hook", result="permanent") == 1


def test_gives_up_after_max_attempts(h: Harness) -> None:
    h.hook.results = [DeliveryResult.retryable("HTTP 503")] * 3
    svc = h.service()
    h.publish(det())
    svc.step()
    for _ in range(3):
        svc.dispatcher.drain_once()
        h.clock.advance(60)
    row = next(r for r in h.store().outbox() if r.notifier == "hook")
    assert (row.state, row.attempts) == ("failed", 3) and "gave up after 3 attempts" in (row.last_error or "")
    assert [e["status"] for e in h.store().notification_log() if e["notifier"] == "hook"] == ["queued", "failed"]


def test_crash_before_offset_commit_resumes_and_does_not_repage(h: Harness) -> None:
    first = h.service()
    h.publish(det(), det(host="node-2"))

    def die(offsets: object = None) -> None:
        raise Crash

    first._consumer.commit = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.step()
    first._consumer.crash()  # the broker evicts the dead member when its session times out
    second = h.service(CollectorRegistry())
    assert second.step() == 2  # the uncommitted batch is replayed ...
    assert h.metric("vigil_alerting_detections_total", decision="no_change") == 2  # ... and recognised
    second.dispatcher.drain_once()
    assert sorted(n.members[0].labels["host"] for n in h.hook.sent) == ["node-1", "node-2"]
    assert len(h.store().outbox()) == 4 and len(h.alerts_on_topic()) == 2
    assert len(h.store().incidents()) == 2


def test_crash_before_publish_republishes_on_start(h: Harness) -> None:
    first = h.service()
    h.publish(det())

    def die(timeout_s: float | None = None) -> None:
        raise Crash

    first._producer.flush = die  # type: ignore[method-assign]
    first._producer.send = lambda *a, **k: None  # type: ignore[method-assign]  # lost with the process
    with pytest.raises(Crash):
        first.step()
    first._consumer.crash()
    assert h.alerts_on_topic() == []
    second = h.service(CollectorRegistry())
    second.step(0)  # publishes what was stored before the crash, before it consumes anything
    assert [a.status for a in h.alerts_on_topic()] == ["firing"]
    second.step()
    assert len(h.alerts_on_topic()) == 1 and len(h.store().outbox()) == 2


def test_crash_mid_send_resends_same_dedup_key_after_restart(h: Harness) -> None:
    first = h.service()
    h.publish(det())
    first.step()
    h.hook.crash_after_send = True
    with pytest.raises(Crash):
        first.dispatcher.drain_once()  # the webhook got it, but the process died before marking it
    h.hook.crash_after_send = False
    first._consumer.crash()
    second = h.service(CollectorRegistry())
    assert second.step() == 0
    second.dispatcher.drain_once()
    assert [n.dedup_key for n in h.hook.sent] == [h.hook.sent[0].dedup_key] * 2
    assert [r.state for r in h.store().outbox()] == ["delivered", "delivered"]
    assert len(h.log.sent) == 1


def test_rows_for_a_notifier_removed_from_config_fail_permanently(h: Harness) -> None:
    svc = h.service()
    h.publish(det())
    svc.step()
    svc.close()
    config = validate(AlertingConfig, {"notifiers": [{"type": "log"}]})
    restarted = AlertingService(h.bus, h.topics, config, h.clock, CollectorRegistry(), h.db, notifiers={"log": h.log})
    restarted.dispatcher.drain_once()
    failed = [r for r in h.store().outbox() if r.state == "failed"]
    assert [(r.notifier, r.last_error) for r in failed] == [("hook", "notifier 'hook' is not configured")]
