"""The JSON shape of an alert, shared by the webhook payload and the HTTP API."""

from __future__ import annotations

from typing import Any

from vigil.clock import to_iso
from vigil.events import Alert

PAYLOAD_VERSION = "1"


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "starts_at": to_iso(alert.starts_at),
        "ends_at": to_iso(alert.ends_at) if alert.ends_at is not None else None,
        "updated_at": to_iso(alert.updated_at),
        "severity": alert.severity,
        "recommended_action": alert.recommended_action,
    }


def dedup_key(alert: Alert) -> str:
    """Stable per firing episode: a receiver that sees it twice got a resend, not a new page."""
    return f"{alert.fingerprint}:{to_iso(alert.starts_at)}"


def notification_payload(alert: Alert, reason: str) -> dict[str, Any]:
    """The webhook body without ``sent_at``, which the dispatcher stamps on each attempt."""
    body = alert_json(alert)
    body.pop("status")
    body.pop("updated_at")
    return {
        "version": PAYLOAD_VERSION,
        "reason": reason,
        "status": alert.status,
        "dedup_key": dedup_key(alert),
        "alert": body,
    }
