"""Retention on a fake clock: what is old and finished goes, nothing pending ever does."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig, RetentionConfig
from vigil.alerting.metrics import AlertingMetrics
from vigil.alerting.notifiers import DeliveryResult
from vigil.alerting.retention import Pruned, Pruner
from vigil.alerting.store import AlertStore

from tests.scenarios.test_alerting_service import T0, Harness, det
from vigil.clock import FakeClock
from vigil.config import validate
from vigil.events import Alert

DAY = 86400.0


def harness(tmp_path: Path, batch: int = 5000) -> Harness:
    config = validate(
        AlertingConfig,
        {
            "notifiers": [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "name": "hook"}, {"type": "log"}],
            "retry": {"jitter_seed": 1, "initial_backoff": "1h", "max_backoff": "1h"},
            "retention": {"max_age": "1d", "batch": batch},
        },
    )
    return Harness(tmp_path, config)


def test_prunes_what_is_old_and_finished_and_keeps_everything_pending(tmp_path: Path) -> None:
    h = harness(tmp_path)
    svc = h.service()
    # node-1: fired and resolved, both told. node-2: still firing. node-3: resolved, but the hook is
    # down when its resolve is told, so that is still pending when retention runs.
    h.publish(det(host="node-1"), det(host="node-2"), det(host="node-3"))
    svc.step()
    svc.dispatcher.drain_once()
    h.clock.advance(60)
    h.publish(det("resolved", ts=T0 + 60, host="node-1"), det("resolved", ts=T0 + 60, host="node-3"))
    svc.step()
    h.clock.advance(240)
    svc.step(0)  # group_interval after the pages: both resolves are told
    h.hook.results = [DeliveryResult.delivered(), DeliveryResult.retryable("HTTP 503")]
    svc.dispatcher.drain_once()
    store = h.store()
    fps = {a.labels["host"]: a.fingerprint for a in store.alerts()}
    pending = [(r.notifier, r.reason, r.payload["members"][0]["labels"]["host"]) for r in store.outbox("pending")]
    assert pending == [("hook", "resolved", "node-3")]

    assert svc.pruner.prune_once() == Pruned(0, 0, 0)  # nothing is old yet
    h.clock.advance(DAY + 1)
    pruned = svc.pruner.prune_once()

    assert (pruned.outbox, pruned.alerts) == (9, 1)  # 6 pages and 3 resolves told; node-1's alert
    assert pruned.notification_log == len(store.notification_log()) + pruned.notification_log  # every entry
    assert {a.labels["host"] for a in store.alerts()} == {"node-2", "node-3"}
    assert [(r.reason, r.state) for r in store.outbox()] == [("resolved", "pending")]
    assert h.metric("vigil_alerting_pruned_total", table="alerts") == 1
    assert h.metric("vigil_alerting_pruned_total", table="outbox") == 9

    h.clock.advance(2 * 3600)  # the hook is back: node-3's resolve leaves, and goes a day later
    svc.dispatcher.drain_once()
    assert [r.state for r in store.outbox()] == ["delivered"]
    h.clock.advance(DAY + 1)
    assert svc.pruner.prune_once().alerts == 1 and fps["node-3"] not in {a.fingerprint for a in store.alerts()}
    assert [a.labels["host"] for a in store.alerts()] == ["node-2"]  # firing alerts are never pruned


def test_a_pruned_alert_that_fires_again_pages_again(tmp_path: Path) -> None:
    h = harness(tmp_path)
    svc = h.service()
    h.publish(det())
    svc.step()
    h.clock.advance(60)
    h.publish(det("resolved", ts=T0 + 60))
    svc.step()
    h.clock.advance(2 * DAY)
    assert svc.pruner.prune_once().alerts == 0  # its resolve is still to be told
    svc.step(0)
    svc.dispatcher.drain_once()
    h.clock.advance(2 * DAY)
    assert svc.pruner.prune_once().alerts == 1
    h.publish(det(ts=T0 + 2 * DAY))
    svc.step()
    assert [r.reason for r in h.store().outbox() if r.notifier == "hook"] == ["first"]  # the old rows were pruned
    assert [i.state for i in h.store().incidents()] == ["open", "resolved"]


def test_an_unpublished_resolved_alert_is_kept_until_published(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = AlertStore(tmp_path / "alerts.db")
    resolved = Alert("ab12", "resolved", {"alertname": "X"}, {}, T0 - 60, T0, "warning", updated_at=T0)
    with store.transaction():
        version = store.upsert(resolved)
    pruner = Pruner(AlertStore(store.path), RetentionConfig(max_age=60), clock, AlertingMetrics(CollectorRegistry()))
    clock.advance(3600)
    assert pruner.prune_once().alerts == 0  # its resolve never reached the alerts topic
    store.mark_published({"ab12": version})
    assert pruner.prune_once().alerts == 1 and store.get("ab12") is None


def test_prunes_in_batches_until_done(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = AlertStore(tmp_path / "alerts.db")
    with store.transaction():
        for i in range(7):
            store.log(f"{i:04x}", "hook", "first", "delivered", T0 + i)
    pruner = Pruner(
        AlertStore(store.path), RetentionConfig(max_age=10, batch=2), clock, AlertingMetrics(CollectorRegistry())
    )
    clock.advance(14.5)  # entries older than T0 + 4.5 go: five of the seven
    assert pruner.prune_once().notification_log == 5
    assert [e["sent_at"] for e in store.notification_log()] == [T0 + 5, T0 + 6]
