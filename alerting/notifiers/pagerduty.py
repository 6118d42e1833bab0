"""PagerDuty Events API v2 (alert events), to the letter of PagerDuty's "Send an Alert Event" page.

POST ``https://events.pagerduty.com/v2/enqueue`` (``https://events.eu.pagerduty.com/v2/enqueue`` for
EU accounts) with a JSON body:

- ``routing_key`` (the 32-character integration key), ``event_action`` (``trigger`` | ``acknowledge``
  | ``resolve``) and ``dedup_key`` (at most 255 characters: the incident's key, so the trigger, the
  acknowledge and the resolve of one incident land on one PagerDuty alert);
- a trigger also carries ``payload`` (``summary`` at most 1024 characters, ``source``, ``severity``
  one of critical/error/warning/info, ``timestamp`` ISO-8601, and the optional ``component``,
  ``group``, ``class``, ``custom_details``), the top-level ``links``, ``images``, ``client`` and
  ``client_url``;
- an acknowledge or resolve carries only the three keys above;
- the whole event must stay under 512 KB.

Answers: 202 accepted; 400 invalid event (permanent: PagerDuty's ``errors`` list is kept in the
reason); 429 and 5xx, timeouts and connection errors are retried by the outbox with backoff, honouring
``Retry-After``.

Rate: PagerDuty accepts about 120 events a minute per routing key (a 60 s sliding window) and drops
the rest with 429. A switch failure raises thousands of alerts in seconds, so one event per alert
would be throttled for minutes exactly when the page matters, and retries would only lengthen the
queue. That is why notifications are per incident, not per alert: grouping by failure domain must
keep a storm to a handful of events a minute per key, well under the limit, with room left for the
acknowledge and resolve events that follow.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from vigil.alerting.notifiers.base import DeliveryResult, Notification
from vigil.alerting.notifiers.http import json_client, post
from vigil.alerting.notifiers.text import fit

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
EVENTS_URL_EU = "https://events.eu.pagerduty.com/v2/enqueue"
ROUTING_KEY_LENGTH = 32
DEDUP_KEY_LIMIT = 255
SUMMARY_LIMIT = 1024
EVENT_BYTES_LIMIT = 512 * 1024
MEMBERS_LISTED = 50  # members named in custom_details; the count says how many there are


class PagerDutyNotifier:
    def __init__(
        self,
        routing_key: str,
        url: str = EVENTS_URL,
        client_name: str = "Vigil",
        client_url: str | None = None,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self._routing_key = routing_key
        self._url = url
        self._client_name = client_name
        self._client_url = client_url
        self._client = client or json_client(timeout)

    def event(self, notification: Notification) -> dict[str, Any]:
        """The Events API v2 body for ``notification``."""
        head = {
            "routing_key": self._routing_key,
            "event_action": notification.action,
            "dedup_key": notification.dedup_key,
        }
        if notification.action != "trigger":
            return head  # acknowledge and resolve carry nothing else
        event: dict[str, Any] = {**head, "payload": _payload(notification), "client": self._client_name}
        if self._client_url:
            event["client_url"] = self._client_url
        if notification.links:
            event["links"] = [{"href": link.href, "text": link.text} for link in notification.links]
        if notification.images:
            event["images"] = [_image(i.src, i.href, i.alt) for i in notification.images]
        return _within_size_limit(event)

    def send(self, notification: Notification) -> DeliveryResult:
        body = _encode(self.event(notification))
        return post(self._client, self._url, body, {"Content-Type": "application/json"})

    def close(self) -> None:
        self._client.close()


def _payload(n: Notification) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "summary": fit(n.summary, SUMMARY_LIMIT),
        "source": n.source,
        "severity": n.severity,
        "timestamp": n.timestamp.isoformat(),
    }
    for key, value in (("component", n.component), ("group", n.group), ("class", n.class_)):
        if value:
            payload[key] = value
    payload["custom_details"] = {**n.custom_details, "incident": _incident(n, MEMBERS_LISTED)}
    return payload


def _incident(n: Notification, members: int) -> dict[str, Any]:
    """What Vigil knows about the incident, for the responder reading PagerDuty's alert details."""
    incident: dict[str, Any] = {"id": n.incident_id, "reason": n.reason, "members_total": len(n.members)}
    if n.priority is not None:
        incident["gpu_hours_at_risk"] = n.priority
    if n.domain is not None:
        incident["domain"] = f"{n.domain.kind} {n.domain.id}"
    if members:
        incident["members"] = [
            {"alertname": m.alertname, "severity": m.severity, "starts_at": m.starts_at.isoformat(), **m.labels}
            for m in n.members[:members]
        ]
    return incident


def _image(src: str, href: str, alt: str) -> dict[str, str]:
    image = {"src": src}
    if href:
        image["href"] = href
    if alt:
        image["alt"] = alt
    return image


def _encode(event: dict[str, Any]) -> bytes:
    # default=str: custom details are the caller's; an odd value is shown as text, never a crash
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _within_size_limit(event: dict[str, Any]) -> dict[str, Any]:
    """PagerDuty refuses events over 512 KB with a 400 that no retry can fix: shed the custom details
    (the incident page has them all) rather than lose the page."""
    if len(_encode(event)) <= EVENT_BYTES_LIMIT:
        return event
    payload = dict(event["payload"])
    incident = dict(payload["custom_details"]["incident"])
    incident.pop("members", None)
    payload["custom_details"] = {"incident": incident, "truncated": "custom details exceeded 512 KB"}
    return {**event, "payload": payload}
