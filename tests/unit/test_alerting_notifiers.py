"""Notifiers classify outcomes (delivered / retryable / permanent) and the webhook signs its body."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import httpx
import pytest
from vigil.alerting.config import LogNotifierConfig, WebhookNotifierConfig
from vigil.alerting.notifiers import LogNotifier, WebhookNotifier, build_notifier_registry

from vigil.errors import ConfigError

PAYLOAD = {
    "version": "1",
    "reason": "first",
    "status": "firing",
    "dedup_key": "abc:2026-01-01T00:00:00+00:00",
    "alert": {"labels": {"alertname": "GpuHot"}, "annotations": {"summary": "hot"}, "severity": "critical"},
}


def webhook_answering(
    status: int, seen: list[httpx.Request], secret: str | None = None, headers: dict[str, str] | None = None
) -> WebhookNotifier:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text="body", headers=headers)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    return WebhookNotifier("http://receiver.test/hook", secret=secret, client=client)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (429, "retryable"),
        (500, "retryable"),
        (503, "retryable"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
    ],
)
def test_webhook_classifies_status(status: int, outcome: str) -> None:
    seen: list[httpx.Request] = []
    assert webhook_answering(status, seen).send(PAYLOAD).outcome == outcome
    assert len(seen) == 1 and json.loads(seen[0].content) == PAYLOAD


def test_webhook_signs_body_and_sends_dedup_key() -> None:
    seen: list[httpx.Request] = []
    assert webhook_answering(200, seen, secret="s3cret").send(PAYLOAD).outcome == "delivered"
    request = seen[0]
    expected = hmac.new(b"s3cret", request.content, hashlib.sha256).hexdigest()
    assert request.headers["X-Vigil-Signature"] == f"sha256={expected}"
    assert request.headers["X-Vigil-Dedup-Key"] == PAYLOAD["dedup_key"]
    assert request.headers["Content-Type"] == "application/json"


def test_webhook_unsigned_without_secret_and_honours_retry_after() -> None:
    seen: list[httpx.Request] = []
    result = webhook_answering(429, seen, headers={"Retry-After": "7"}).send(PAYLOAD)
    assert "X-Vigil-Signature" not in seen[0].headers
    assert result.outcome == "retryable" and result.retry_after == 7.0 and "429" in result.reason


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_webhook_transport_errors_are_retryable(error: Exception) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise error

    client = httpx.Client(transport=httpx.MockTransport(handle))
    notifier = WebhookNotifier("http://receiver.test/hook", client=client)
    assert notifier.send(PAYLOAD).outcome == "retryable"


def test_log_notifier_logs_and_delivers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vigil.alerting.notify"):
        assert LogNotifier().send(PAYLOAD).outcome == "delivered"
    assert "GpuHot" in caplog.text and "firing" in caplog.text
    assert caplog.records[0].levelno == logging.ERROR  # critical alerts log at error level


def test_registry_builds_notifiers_by_type() -> None:
    registry = build_notifier_registry()
    assert registry.kind == "notifier" and registry.names() == ["log", "webhook"]
    assert isinstance(registry.create("log", config=LogNotifierConfig()), LogNotifier)
    hook = registry.create("webhook", config=WebhookNotifierConfig(url="http://127.0.0.1:1/x"))
    assert isinstance(hook, WebhookNotifier)
    hook.close()
    assert build_notifier_registry() is not registry  # no shared module-level state
    with pytest.raises(ConfigError, match="unknown notifier 'pager'"):
        registry.create("pager")
