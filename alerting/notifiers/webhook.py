"""A generic JSON webhook: POST the notification, signed so that a receiver can refuse forgeries and replays.

The body is the notification's JSON (:meth:`Notification.to_json`) plus ``version`` and ``sent_at``.
With a secret, each attempt carries::

    X-Vigil-Timestamp: <unix seconds of this attempt>
    X-Vigil-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<exact body bytes>")>

The timestamp is inside the MAC, so a captured request cannot be replayed later with a fresh
timestamp; a receiver calls :func:`verify` with a tolerance (five minutes by default) and drops
requests older than that. ``X-Vigil-Dedup-Key`` names the incident, so a receiver can also drop the
rare resend of one it already has (the outbox delivers at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import quote

import httpx
from vigil.alerting.notifiers.base import NOTIFICATION_VERSION, DeliveryResult, Notification
from vigil.alerting.notifiers.http import json_client, post

from vigil.clock import Clock, SystemClock, to_iso
from vigil.secret import redact_url

SIGNATURE_HEADER = "X-Vigil-Signature"
TIMESTAMP_HEADER = "X-Vigil-Timestamp"
DEDUP_HEADER = "X-Vigil-Dedup-Key"
DEFAULT_TOLERANCE_S = 300.0


class InvalidSignature(ValueError):
    """A webhook request that must not be trusted; the message says why."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Vigil-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a received webhook: raises :class:`InvalidSignature` unless ``signature`` is the HMAC of
    exactly ``body`` at ``timestamp`` and ``timestamp`` is within ``tolerance`` seconds of ``now``
    (default: this machine's clock) in either direction, which allows for clock skew.

    Receivers pass the raw request body (not re-serialised JSON) and the two headers as received::

        verify(secret, request.headers["X-Vigil-Timestamp"], raw_body, request.headers["X-Vigil-Signature"])
    """
    try:
        sent_at = int(str(timestamp).strip())
    except ValueError:
        raise InvalidSignature(f"timestamp {timestamp!r} is not unix seconds") from None
    current = now if now is not None else SystemClock().now()
    if abs(current - sent_at) > tolerance:
        raise InvalidSignature(f"timestamp {sent_at} is {current - sent_at:.0f}s from now (tolerance {tolerance:g}s)")
    if not hmac.compare_digest(sign(secret, sent_at, body), signature.strip()):
        raise InvalidSignature("signature does not match the body and timestamp")


def webhook_body(notification: Notification, sent_at: float) -> dict[str, Any]:
    return {"version": NOTIFICATION_VERSION, **notification.to_json(), "sent_at": to_iso(sent_at)}


def _header_value(text: str) -> str:
    """HTTP headers carry ASCII only: a key with other characters is sent percent-encoded."""
    return text if text.isascii() and text.isprintable() else quote(text, safe="")


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._client = client or json_client(timeout)
        self._clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"WebhookNotifier({redact_url(self._url)})"  # the URL may carry a token

    def send(self, notification: Notification) -> DeliveryResult:
        now = self._clock.now()
        body = json.dumps(webhook_body(notification, now), separators=(",", ":"), sort_keys=True).encode()
        stamp = int(now)
        headers = {
            "Content-Type": "application/json",
            DEDUP_HEADER: _header_value(notification.dedup_key),
            TIMESTAMP_HEADER: str(stamp),
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, stamp, body)
        return post(self._client, self._url, body, headers)

    def close(self) -> None:
        self._client.close()
