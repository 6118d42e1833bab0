"""Contract test: the signed webhook against a loopback receiver that uses the documented ``verify`` helper.

The contract (alerting/notifiers/webhook.py): POST JSON; ``X-Vigil-Timestamp`` (unix seconds) and
``X-Vigil-Signature: sha256=HMAC(secret, "<timestamp>.<body>")``; ``X-Vigil-Dedup-Key``; the body is
the notification's JSON plus ``version`` "2" and ``sent_at``. The receiver refuses, with 401, any
request whose signature does not verify; the tests then replay a captured request after the
tolerance and tamper with a body, and check that both are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from vigil.alerting.notifiers import Notification, WebhookNotifier
from vigil.alerting.notifiers.webhook import InvalidSignature, sign, verify

from tests.notifier_fixtures import Answer, ContractServer, Seen, closed_port_url, notification
from vigil.clock import FakeClock

SECRET = "hook-secret"
NOW = 1_767_225_600.0


class Receiver:
    """Verifies each request the way a receiver would, against the receiver's own clock."""

    def __init__(self) -> None:
        self.clock = FakeClock(NOW)

    def check(self, seen: Seen) -> list[str]:
        try:
            verify(
                SECRET,
                seen.headers.get("X-Vigil-Timestamp", ""),
                seen.body,
                seen.headers.get("X-Vigil-Signature", ""),
                tolerance=300,
                now=self.clock.now(),
            )
        except InvalidSignature as exc:
            return [str(exc)]
        return [] if seen.headers.get("Content-Type") == "application/json" else ["not JSON"]


@pytest.fixture
def receiver() -> Iterator[tuple[ContractServer, Receiver]]:
    checker = Receiver()
    with ContractServer(checker.check, Answer(204), path="/hook").running() as server:
        yield server, checker


def test_signed_request_verifies_and_carries_the_notification(receiver: tuple[ContractServer, Receiver]) -> None:
    server, _ = receiver
    sent = notification()
    assert WebhookNotifier(server.url, secret=SECRET, clock=FakeClock(NOW)).send(sent).outcome == "delivered"
    (seen,) = server.seen
    assert seen.violations == []
    assert seen.headers["X-Vigil-Timestamp"] == str(int(NOW))
    assert seen.headers["X-Vigil-Dedup-Key"] == sent.dedup_key
    body = seen.json()
    assert (body.pop("version"), body.pop("sent_at")) == ("2", "2026-01-01T00:00:00+00:00")
    assert Notification.from_json(body) == sent  # nothing lost on the way


def resend(server: ContractServer, captured: Seen, body: bytes | None = None, **headers: str) -> httpx.Response:
    """What an attacker who captured the request would send: the same headers (or some changed) and body."""
    names = ("Content-Type", "X-Vigil-Timestamp", "X-Vigil-Signature", "X-Vigil-Dedup-Key")
    sent = {name: captured.headers[name] for name in names} | {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.post(server.url, content=captured.body if body is None else body, headers=sent, timeout=5.0)


def test_replay_after_the_tolerance_is_refused(receiver: tuple[ContractServer, Receiver]) -> None:
    server, checker = receiver
    WebhookNotifier(server.url, secret=SECRET, clock=FakeClock(NOW)).send(notification())
    captured = server.seen[0]
    checker.clock.advance(299)
    assert resend(server, captured).status_code == 204  # within the tolerance: a resend, accepted
    checker.clock.advance(2)  # 301 s after it was signed
    refused = resend(server, captured)
    assert refused.status_code == 400 and "301s from now (tolerance 300s)" in refused.text


def test_tampered_body_or_timestamp_is_refused(receiver: tuple[ContractServer, Receiver]) -> None:
    server, checker = receiver
    WebhookNotifier(server.url, secret=SECRET, clock=FakeClock(NOW)).send(notification())
    captured = server.seen[0]
    tampered = resend(server, captured, body=captured.body.replace(b"node-07", b"node-08"))
    assert tampered.status_code == 400 and "signature does not match" in tampered.text
    # moving the timestamp forward to dodge the tolerance breaks the MAC instead
    checker.clock.advance(500)
    moved = resend(server, captured, X_Vigil_Timestamp=str(int(NOW) + 450))
    assert moved.status_code == 400 and "signature does not match" in moved.text
    assert [s.violations == [] for s in server.seen] == [True, False, False]


def test_receiver_refusing_a_forgery_is_a_permanent_failure(receiver: tuple[ContractServer, Receiver]) -> None:
    server, _ = receiver
    result = WebhookNotifier(server.url, secret="wrong-secret", clock=FakeClock(NOW)).send(notification())
    assert result.outcome == "permanent" and "HTTP 400" in result.reason
    unsigned = WebhookNotifier(server.url, clock=FakeClock(NOW)).send(notification())
    assert unsigned.outcome == "permanent" and "X-Vigil-Signature" not in server.seen[1].headers


@pytest.mark.parametrize(("status", "outcome"), [(200, "delivered"), (429, "retryable"), (503, "retryable")])
def test_status_classes(receiver: tuple[ContractServer, Receiver], status: int, outcome: str) -> None:
    server, _ = receiver
    server.script = [Answer(status, "{}")]
    assert WebhookNotifier(server.url, secret=SECRET, clock=FakeClock(NOW)).send(notification()).outcome == outcome


def test_unreachable_receiver_is_retryable() -> None:
    assert WebhookNotifier(closed_port_url("/hook")).send(notification()).outcome == "retryable"


def test_verify_refuses_malformed_headers() -> None:
    body = json.dumps({"a": 1}).encode()
    good = sign(SECRET, int(NOW), body)
    verify(SECRET, str(int(NOW)), body, good, now=NOW)
    with pytest.raises(InvalidSignature, match="not unix seconds"):
        verify(SECRET, "yesterday", body, good, now=NOW)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(SECRET, int(NOW), body, "sha256=" + "0" * 64, now=NOW)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify("other", int(NOW), body, good, now=NOW)
    with pytest.raises(InvalidSignature, match="from now"):
        verify(SECRET, int(NOW), body, good, now=NOW - 301)  # from the future beyond the skew allowed
