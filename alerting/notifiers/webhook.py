"""A generic JSON webhook: POST the payload, optionally signed with HMAC-SHA256 over the exact body.

2xx is delivered; 429, 5xx, timeouts and connection errors are retryable; any other status is
permanent, since resending a payload the receiver rejected would be rejected again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
from vigil.alerting.notifiers.base import DeliveryResult

from vigil.secret import redact_url

SIGNATURE_HEADER = "X-Vigil-Signature"
DEDUP_HEADER = "X-Vigil-Dedup-Key"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP-date: fall back to our own backoff rather than parse calendars
        return None


class WebhookNotifier:
    def __init__(
        self, url: str, secret: str | None = None, timeout: float = 5.0, client: httpx.Client | None = None
    ) -> None:
        self._url = url
        self._shown = redact_url(url)  # what logs and the notification log may say about the URL
        self._secret = secret
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._shown})"

    def send(self, payload: dict[str, Any]) -> DeliveryResult:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "vigil-alerting/1"}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        if "dedup_key" in payload:
            headers[DEDUP_HEADER] = str(payload["dedup_key"])
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return DeliveryResult.retryable(f"timeout: {self._scrub(exc)}")
        except httpx.TransportError as exc:  # connection refused/reset, DNS: the receiver may come back
            return DeliveryResult.retryable(f"transport: {self._scrub(exc)}")
        except httpx.HTTPError as exc:  # a malformed URL and the like: retrying cannot fix it
            return DeliveryResult.permanent(f"http: {self._scrub(exc)}")
        return self._classify(response)

    def _scrub(self, error: Exception | str) -> str:
        """An error as text without the URL or its path and query (a receiver's 404 page may echo
        them): it is logged and kept in the notification log."""
        text = error if isinstance(error, str) else repr(error)
        text = text.replace(self._url, self._shown)
        tail = self._url.split("//", 1)[-1].partition("/")[2]  # path and query, without the host
        return text.replace("/" + tail, "/…") if len(tail) > 1 else text

    def _classify(self, response: httpx.Response) -> DeliveryResult:
        code = response.status_code
        if 200 <= code < 300:
            return DeliveryResult.delivered()
        detail = f"HTTP {code}: {self._scrub(response.text)[:200]}"
        if code == 429 or code >= 500:
            return DeliveryResult.retryable(detail, _retry_after(response))
        return DeliveryResult.permanent(detail)

    def close(self) -> None:
        self._client.close()
