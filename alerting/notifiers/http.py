"""One way to POST to a receiver and read its answer as delivered / retryable / permanent.

2xx is delivered. 408, 425, 429 and 5xx are retryable (the receiver is busy, rate-limiting or down,
and may come back), as are timeouts and connection errors. Any other status is permanent: resending
what the receiver rejected would be rejected again. The reason carries the receiver's own words
(PagerDuty's ``errors`` list, Slack's ``invalid_payload``) so the outbox row says what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from vigil.alerting.notifiers.base import DeliveryResult

from vigil.secret import redact_url

USER_AGENT = "vigil-alerting/2"
_RETRYABLE = frozenset({408, 425, 429})
_BODY_IN_REASON = 500  # characters of the receiver's answer kept in the reason


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP-date: fall back to our own backoff rather than parse calendars
        return None


def classify(response: httpx.Response) -> DeliveryResult:
    code = response.status_code
    if 200 <= code < 300:
        return DeliveryResult.delivered()
    detail = f"HTTP {code}: {response.text[:_BODY_IN_REASON]}"
    if code in _RETRYABLE or code >= 500:
        return DeliveryResult.retryable(detail, retry_after(response))
    return DeliveryResult.permanent(detail)


def post(client: httpx.Client, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
    """POST ``body`` and classify the answer. Error reasons never quote the URL's path or query (for
    Slack the path is the secret; a receiver's 404 page may echo it): they are logged and stored."""
    result = _post(client, url, body, headers)
    if result.outcome == "delivered":
        return result
    return DeliveryResult(result.outcome, scrub(result.reason, url), result.retry_after)


def scrub(text: str, url: str) -> str:
    """``text`` with ``url``, and its path and query alone, replaced by scheme and host (``redact_url``)."""
    shown = redact_url(url)
    text = text.replace(url, shown)
    tail = url.split("//", 1)[-1].partition("/")[2]  # path and query, without the host
    return text.replace("/" + tail, "/…") if len(tail) > 1 else text


def _post(client: httpx.Client, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
    try:
        response = client.post(url, content=body, headers={"User-Agent": USER_AGENT, **headers})
    except httpx.TimeoutException as exc:
        return DeliveryResult.retryable(f"timeout: {type(exc).__name__}")
    except httpx.TransportError as exc:  # connection refused/reset, DNS: the receiver may come back
        return DeliveryResult.retryable(f"transport: {type(exc).__name__}: {exc}")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # a malformed request: retrying cannot fix it
        return DeliveryResult.permanent(f"http: {type(exc).__name__}: {exc}")
    return classify(response)


def json_client(timeout: float) -> httpx.Client:
    return httpx.Client(timeout=timeout, follow_redirects=False)
