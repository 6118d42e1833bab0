"""The notification every notifier receives, the registry, the log notifier, text fitting, and the
outbox adapter that rebuilds notifications (old rows included) from their stored JSON."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pydantic
import pytest
from vigil.alerting.config import (
    EmailNotifierConfig,
    LogNotifierConfig,
    PagerDutyNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)
from vigil.alerting.notifiers import (
    DeliveryResult,
    EmailNotifier,
    LogNotifier,
    Notification,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    build_notifier_registry,
    deliver,
)
from vigil.alerting.notifiers.base import legacy_notification
from vigil.alerting.notifiers.text import fit, utf16_len

from tests.notifier_fixtures import notification
from vigil.errors import ConfigError
from vigil.events import Alert

T0 = 1_767_225_600.0


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> DeliveryResult:
        self.sent.append(notification)
        return DeliveryResult.delivered()

    def close(self) -> None:
        return None


def alert(status: str = "firing", **annotations: str) -> Alert:
    return Alert(
        fingerprint="ab12cd34ef56ab78",
        status=status,  # type: ignore[arg-type]
        labels={
            "alertname": "GpuXidFatal",
            "cluster": "c1",
            "host": "node-07",
            "gpu_index": "3",
            "severity": "critical",
        },
        annotations={"summary": "GPU 3 on node-07: XID 79", "detector": "xid", **annotations},
        starts_at=T0,
        ends_at=T0 + 90 if status == "resolved" else None,
        severity="critical",
        recommended_action="drain node-07",
        updated_at=T0,
    )


def test_notification_round_trips_through_json_text() -> None:
    original = notification()
    stored = json.dumps(original.to_json())  # what the outbox writes
    data = json.loads(stored)
    assert data["class"] == "GpuFellOffBus" and "class_" not in data
    assert data["timestamp"] == "2026-01-01T00:00:00Z" and data["members"][0]["starts_at"] == "2026-01-01T00:00:00Z"
    assert Notification.from_json(data) == original


def test_notification_is_frozen_and_validated() -> None:
    page = notification()
    with pytest.raises(pydantic.ValidationError):
        page.summary = "changed"  # type: ignore[misc]
    bad: list[dict[str, Any]] = [
        {"dedup_key": "k" * 256},
        {"dedup_key": ""},
        {"action": "escalate"},
        {"severity": "fatal"},
        {"timestamp": datetime(2026, 1, 1)},  # naive: refused at the edge
        {"links": [{"href": "javascript:alert(1)"}]},
        {"images": [{"src": "http://insecure.example/graph.png"}]},
        {"unknown": 1},
    ]
    for override in bad:
        with pytest.raises(pydantic.ValidationError):
            notification(**override)
    assert len(notification(dedup_key="k" * 255).dedup_key) == 255


def test_timestamps_are_normalised_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    page = notification(timestamp=datetime(2026, 1, 1, 1, 0, tzinfo=cet))
    assert page.timestamp == datetime(2026, 1, 1, tzinfo=UTC) and page.timestamp.tzinfo == UTC


def test_a_legacy_outbox_alert_is_delivered_as_a_one_member_incident() -> None:
    page = legacy_notification(alert(runbook_url="https://runbooks.example.com/xid"), "first", receiver="pd")
    assert (page.action, page.reason, page.severity, page.receiver) == ("trigger", "first", "critical", "pd")
    assert page.dedup_key == "ab12cd34ef56ab78:2026-01-01T00:00:00+00:00"
    assert (page.source, page.component, page.group, page.class_) == ("node-07", "gpu3", "c1", "GpuXidFatal")
    assert page.domain is not None and (page.domain.kind, page.domain.id) == ("gpu", "node-07/gpu3")
    assert page.summary == "GPU 3 on node-07: XID 79" and page.incident_id == "ab12cd34ef56ab78"
    assert [m.alertname for m in page.members] == ["GpuXidFatal"]
    assert page.custom_details["recommended_action"] == "drain node-07"
    assert page.custom_details["detector"] == "xid" and "summary" not in page.custom_details
    assert [(link.text, link.href) for link in page.links] == [("Runbook", "https://runbooks.example.com/xid")]
    resolved = legacy_notification(alert("resolved"), "resolved")
    assert resolved.action == "resolve" and resolved.timestamp == datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)
    assert resolved.dedup_key == page.dedup_key and resolved.links == ()
    odd = legacy_notification(alert(runbook_url="see wiki page 7", summary=""), "first")
    assert odd.links == () and odd.summary == "GpuXidFatal on node-07/gpu3"  # never a crash in the service


def test_deliver_rebuilds_stored_rows_including_version_1_rows() -> None:
    recorder = Recorder()
    page = notification()
    assert deliver(recorder, page.to_json()).outcome == "delivered" and recorder.sent == [page]
    legacy = {  # a row enqueued by the alert-per-fingerprint service before this change
        "version": "1",
        "reason": "first",
        "status": "firing",
        "dedup_key": "ab12cd34ef56ab78:2026-01-01T00:00:00+00:00",
        "alert": {
            "fingerprint": "ab12cd34ef56ab78",
            "labels": {"alertname": "GpuHot", "host": "node-1"},
            "annotations": {"summary": "hot"},
            "starts_at": "2026-01-01T00:00:00+00:00",
            "ends_at": None,
            "severity": "warning",
            "recommended_action": "",
        },
    }
    assert deliver(recorder, legacy).outcome == "delivered"
    old = recorder.sent[1]
    assert (old.dedup_key, old.class_, old.summary, old.source) == (legacy["dedup_key"], "GpuHot", "hot", "node-1")


def test_deliver_turns_a_corrupt_row_into_a_permanent_failure() -> None:
    recorder = Recorder()
    result = deliver(recorder, {"dedup_key": "x", "action": "page-everyone"})
    assert result.outcome == "permanent" and "stored notification is invalid" in result.reason
    assert deliver(recorder, {"version": "1", "alert": {}}).outcome == "permanent"
    assert recorder.sent == []


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("abcdefghij", 10, "abcdefghij"),
        ("abcdefghijk", 10, "abcdefghi…"),
        ("word word word", 8, "word wo…"),
        ("ab👍cd", 4, "ab…"),  # the emoji counts as two UTF-16 units: it does not fit in the 3 left
        ("aé\u0301bc", 3, "a…"),  # never split a letter from its combining accent
        ("aé\u0301bc", 4, "aé\u0301…"),
        ("x👩\u200d👩\u200d👧yz", 6, "x…"),  # nor a joined family emoji
        ("a🇫🇷🇩🇪🇮🇹", 8, "a🇫🇷…"),  # nor a flag (a pair of regional indicators)
        ("anything", 0, ""),
    ],
)
def test_fit_cuts_safely(text: str, limit: int, expected: str) -> None:
    cut = fit(text, limit)
    assert cut == expected and utf16_len(cut) <= max(limit, 0)


def test_log_notifier_logs_and_delivers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vigil.alerting.notify"):
        assert LogNotifier().send(notification()).outcome == "delivered"
        assert LogNotifier().send(notification(action="resolve", reason="resolved")).outcome == "delivered"
    first, resolved = caplog.records
    assert "trigger GpuFellOffBus (first) on node node-07" in first.getMessage()
    assert "[2 alerts, incident inc-42]" in first.getMessage()
    assert first.levelno == logging.ERROR and resolved.levelno == logging.INFO


def test_registry_builds_every_notifier_by_type(tmp_path: Any) -> None:
    registry = build_notifier_registry()
    assert registry.kind == "notifier"
    # "remediation" is the remediation receiver, built by the service (see test_remediation_engine.py)
    assert registry.names() == ["email", "log", "pagerduty", "remediation", "slack", "webhook"]
    configs = {
        "log": (LogNotifierConfig(), LogNotifier),
        "webhook": (WebhookNotifierConfig(url="http://127.0.0.1:1/x", secret="s"), WebhookNotifier),  # type: ignore[arg-type]
        "pagerduty": (PagerDutyNotifierConfig(routing_key="k" * 32), PagerDutyNotifier),  # type: ignore[arg-type]
        "slack": (SlackNotifierConfig(webhook_url="https://hooks.slack.com/services/T/B/X"), SlackNotifier),  # type: ignore[arg-type]
        "email": (EmailNotifierConfig(host="127.0.0.1", sender="v@example.test", to=["o@example.test"]), EmailNotifier),
    }
    for name, (config, kind) in configs.items():
        built = registry.create(name, config=config)
        assert isinstance(built, kind)
        built.close()
    assert build_notifier_registry() is not registry  # no shared module-level state
    with pytest.raises(ConfigError, match="unknown notifier 'pager'"):
        registry.create("pager")


def test_webhook_body_and_headers_without_a_secret() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    page = notification(dedup_key="incident:nœud-07")
    assert WebhookNotifier("http://receiver.test/hook", client=client).send(page).outcome == "delivered"
    request = seen[0]
    assert "X-Vigil-Signature" not in request.headers and request.headers["X-Vigil-Timestamp"].isdigit()
    assert request.headers["X-Vigil-Dedup-Key"] == "incident%3An%C5%93ud-07"  # headers are ASCII
    assert json.loads(request.content)["dedup_key"] == "incident:nœud-07"
