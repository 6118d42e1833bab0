"""Contract test: the PagerDuty notifier against a loopback server that plays the Events API v2.

No PagerDuty can run here, so the server checks every request against the published contract
(PagerDuty developer docs, "Send an Alert Event" and "Events API v2 Overview"):

- POST /v2/enqueue, ``Content-Type: application/json``, the whole event at most 512 KB;
- ``routing_key`` a 32-character string; ``event_action`` trigger | acknowledge | resolve;
  ``dedup_key`` at most 255 characters;
- trigger: ``payload.summary`` (non-empty, at most 1024 characters), ``payload.source`` (non-empty),
  ``payload.severity`` critical | error | warning | info; optional ``payload.timestamp`` (ISO-8601),
  ``component``, ``group``, ``class`` (strings), ``custom_details`` (an object); optional top-level
  ``links`` (``href`` required, ``text``), ``images`` (``src`` over HTTPS required, ``href``, ``alt``),
  ``client``, ``client_url``; no other keys;
- acknowledge and resolve: exactly ``routing_key``, ``event_action``, ``dedup_key``.

It answers as PagerDuty does: 202 ``{"status": "success", ...}``; a request breaking the contract
gets 400 ``{"status": "invalid event", "errors": [...]}``; scripted 429 and 5xx exercise the retries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from vigil.alerting.notifiers import PagerDutyNotifier
from vigil.alerting.notifiers.text import utf16_len

from tests.notifier_fixtures import Answer, ContractServer, Seen, closed_port_url, notification

KEY = "R0UTINGKEY0123456789abcdefABCDEF"  # 32 characters
ACCEPTED = Answer(202, json.dumps({"status": "success", "message": "Event processed", "dedup_key": "k"}))
TOP_KEYS = {"routing_key", "event_action", "dedup_key", "payload", "links", "images", "client", "client_url"}
PAYLOAD_KEYS = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


def _text(value: Any, name: str, limit: int | None = None, required: bool = False) -> list[str]:
    if value is None:
        return [f"'{name}' is missing"] if required else []
    if not isinstance(value, str) or (required and not value):
        return [f"'{name}' must be a non-empty string"]
    if limit is not None and max(len(value), utf16_len(value)) > limit:
        return [f"Length of '{name}' is too long (limit {limit})"]
    return []


def _timestamp(value: Any) -> list[str]:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return [f"'payload.timestamp' {value!r} is not ISO-8601"]
    return [] if parsed.tzinfo is not None else ["'payload.timestamp' has no offset"]


def _objects(event: dict[str, Any], name: str, required: str, https: bool = False) -> list[str]:
    items = event.get(name, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return [f"'{name}' must be an array of objects"]
    errors = [f"'{name}[].{required}' is required" for i in items if not i.get(required)]
    if https:
        errors += [
            f"'{name}[].src' must be served over HTTPS"
            for i in items
            if not str(i.get(required)).startswith("https://")
        ]
    return errors


def _payload(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = [f"'payload.{k}' is not a field" for k in set(payload) - PAYLOAD_KEYS]
    errors += _text(payload.get("summary"), "payload.summary", 1024, required=True)
    errors += _text(payload.get("source"), "payload.source", required=True)
    if payload.get("severity") not in ("critical", "error", "warning", "info"):
        errors.append(f"'payload.severity' {payload.get('severity')!r} is invalid")
    if "timestamp" in payload:
        errors += _timestamp(payload["timestamp"])
    for key in ("component", "group", "class"):
        errors += _text(payload.get(key), f"payload.{key}")
    if not isinstance(payload.get("custom_details", {}), dict):
        errors.append("'payload.custom_details' must be an object")
    return errors


def events_v2(seen: Seen) -> list[str]:
    """Every rule of the Events API v2 alert-event contract this request breaks."""
    if not seen.headers.get("Content-Type", "").startswith("application/json"):
        return ["Content-Type must be application/json"]
    if len(seen.body) > 512 * 1024:
        return ["event exceeds 512 KB"]
    try:
        event = seen.json()
    except ValueError:
        return ["body is not JSON"]
    if not isinstance(event, dict):
        return ["event must be an object"]
    key = event.get("routing_key")
    errors = [] if isinstance(key, str) and len(key) == 32 else ["Length of 'routing_key' is incorrect (should be 32)"]
    errors += _text(event.get("dedup_key"), "dedup_key", 255)
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        return [*errors, f"'event_action' {action!r} is invalid"]
    if action != "trigger":
        extra = set(event) - {"routing_key", "event_action", "dedup_key"}
        return errors + (
            [f"{action} carries only routing_key, event_action, dedup_key: {sorted(extra)}"] if extra else []
        )
    errors += [f"'{k}' is not a field" for k in set(event) - TOP_KEYS]
    errors += _payload(event.get("payload"))
    errors += _objects(event, "links", "href") + _objects(event, "images", "src", https=True)
    return errors + _text(event.get("client"), "client") + _text(event.get("client_url"), "client_url")


@pytest.fixture
def pd() -> Iterator[ContractServer]:
    with ContractServer(events_v2, ACCEPTED, path="/v2/enqueue").running() as server:
        yield server


def notifier(server: ContractServer, key: str = KEY, timeout: float = 5.0) -> PagerDutyNotifier:
    return PagerDutyNotifier(key, url=server.url, client_url="https://vigil.example.com", timeout=timeout)


def test_trigger_carries_every_field_and_is_accepted(pd: ContractServer) -> None:
    result = notifier(pd).send(notification())
    assert result.outcome == "delivered", result.reason
    (seen,) = pd.seen
    assert seen.violations == []
    event = seen.json()
    assert (event["routing_key"], event["event_action"]) == (KEY, "trigger")
    assert event["dedup_key"] == "incident:node-07:2026-01-01T00:00:00+00:00"
    payload = event["payload"]
    assert payload["summary"].startswith("node-07: GPU 3 fell off the bus")
    assert (payload["source"], payload["severity"], payload["component"]) == ("node-07", "critical", "gpu3")
    assert (payload["group"], payload["class"]) == ("rack-12", "GpuFellOffBus")
    assert payload["timestamp"] == "2026-01-01T00:00:00+00:00"
    details = payload["custom_details"]
    assert details["recommended_action"] == "drain node-07 and reset GPU 3"
    incident = details["incident"]
    assert incident["id"] == "inc-42" and incident["gpu_hours_at_risk"] == 512.0
    assert incident["domain"] == "node node-07" and incident["members_total"] == 2
    assert [m["alertname"] for m in incident["members"]] == ["GpuXidFatal", "TrainingHang"]
    assert [link["text"] for link in event["links"]] == ["Incident", "Runbook"]
    assert (event["client"], event["client_url"]) == ("Vigil", "https://vigil.example.com")


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_acknowledge_and_resolve_carry_only_the_three_keys(pd: ContractServer, action: str) -> None:
    assert notifier(pd).send(notification(action=action, reason=action + "d")).outcome == "delivered"
    (seen,) = pd.seen
    assert seen.violations == []
    assert seen.json() == {
        "routing_key": KEY,
        "event_action": action,
        "dedup_key": "incident:node-07:2026-01-01T00:00:00+00:00",
    }


def test_long_unicode_summary_is_cut_to_1024_without_breaking_a_character(pd: ContractServer) -> None:
    summary = "GPU 🔥 thermal runaway on node-07 " + "é" * 600 + "👩‍👩‍👧" * 200
    assert notifier(pd).send(notification(summary=summary)).outcome == "delivered"
    sent = pd.seen[0].json()["payload"]["summary"]
    assert pd.seen[0].violations == [] and utf16_len(sent) <= 1024 and sent.endswith("…")
    assert summary.startswith(sent[:-1].rstrip())  # a prefix of what we had, never a mangled one
    assert not sent[:-1].endswith("\u200d")  # no half of a joined emoji


def test_huge_incident_stays_under_512_kb(pd: ContractServer) -> None:
    members = [
        {
            "alertname": "NodeLinkDown",
            "labels": {"host": f"node-{i:03d}", "note": "x" * 4000},
            "starts_at": "2026-01-01T00:00:00Z",
        }
        for i in range(150)
    ]
    details = {f"k{i}": "y" * 4000 for i in range(150)}
    result = notifier(pd).send(notification(members=members, custom_details=details))
    assert result.outcome == "delivered" and pd.seen[0].violations == []
    incident = pd.seen[0].json()["payload"]["custom_details"]["incident"]
    assert incident["members_total"] == 150 and "members" not in incident


def test_400_is_permanent_and_keeps_pagerdutys_errors(pd: ContractServer) -> None:
    result = notifier(pd, key="too-short").send(notification())
    assert result.outcome == "permanent"
    assert "HTTP 400" in result.reason and "Length of 'routing_key' is incorrect" in result.reason


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        (
            Answer(
                429,
                '{"status":"throttle event","message":"Requests for this service are arriving too quickly."}',
                {"Retry-After": "30"},
            ),
            30.0,
        ),
        (Answer(429, "{}"), None),
        (Answer(500, "internal error"), None),
        (Answer(502, "bad gateway"), None),
        (Answer(503, "unavailable", {"Retry-After": "5"}), 5.0),
    ],
)
def test_429_and_5xx_are_retryable(pd: ContractServer, answer: Answer, retry_after: float | None) -> None:
    pd.script = [answer]
    result = notifier(pd).send(notification())
    assert (result.outcome, result.retry_after) == ("retryable", retry_after)
    assert f"HTTP {answer.status}" in result.reason
    assert notifier(pd).send(notification()).outcome == "delivered"  # and the resend goes through


@pytest.mark.parametrize("status", [401, 403, 404, 413])
def test_other_client_errors_are_permanent(pd: ContractServer, status: int) -> None:
    pd.script = [Answer(status, "no")]
    assert notifier(pd).send(notification()).outcome == "permanent"


def test_connection_refused_and_timeout_are_retryable(pd: ContractServer) -> None:
    refused = PagerDutyNotifier(KEY, url=closed_port_url("/v2/enqueue")).send(notification())
    assert refused.outcome == "retryable" and "transport" in refused.reason
    pd.script = [Answer(202, "{}", delay_s=1.0)]
    slow = notifier(pd, timeout=0.2).send(notification())
    assert slow.outcome == "retryable" and "timeout" in slow.reason


def test_the_contract_check_itself_catches_violations() -> None:
    """The server is only as good as its check: known-bad events must be refused."""

    def check(event: dict[str, Any]) -> list[str]:
        return events_v2(
            Seen("POST", "/v2/enqueue", {"Content-Type": "application/json"}, json.dumps(event).encode(), [])
        )

    good = {
        "routing_key": KEY,
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "h", "severity": "info"},
    }
    assert check(good) == []
    assert check({**good, "routing_key": "k" * 31})
    assert check({**good, "dedup_key": "d" * 256})
    assert check({**good, "event_action": "escalate"})
    assert check({**good, "payload": {**good["payload"], "summary": "s" * 1025}})
    assert check({**good, "payload": {**good["payload"], "severity": "fatal"}})
    assert check({**good, "payload": {**good["payload"], "timestamp": "yesterday"}})
    assert check({**good, "links": [{"text": "no href"}]})
    assert check({**good, "images": [{"src": "http://insecure.example/x.png"}]})
    assert check({"routing_key": KEY, "event_action": "resolve", "dedup_key": "d", "payload": good["payload"]})
