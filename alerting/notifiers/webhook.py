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
        self._secret = secret
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)

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
            return DeliveryResult.retryable(f"timeout: {exc!r}")
        except httpx.TransportError as exc:  # connection refused/reset, DNS: the receiver may come back
            return DeliveryResult.retryable(f"transport: {exc!r}")
        except httpx.HTTPError as exc:  # a malformed URL and the like: retrying cannot fix it
            return DeliveryResult.permanent(f"http: {exc!r}")
        return self._classify(response)

    @staticmethod
    def _classify(response: httpx.Response) -> DeliveryResult:
        code = response.status_code
        if 200 <= code < 300:
            return DeliveryResult.delivered()
        detail = f"HTTP {code}: {response.text[:200]}"
        if code == 429 or code >= 500:
            return DeliveryResult.retryable(detail, _retry_after(response))
        return DeliveryResult.permanent(detail)

    def close(self) -> None:
        self._client.close()
