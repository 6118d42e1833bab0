"""The JSON shape of an alert for the HTTP API, and the dedup key of its firing episode."""

from __future__ import annotations

from typing import Any

from vigil.clock import to_iso
from vigil.events import Alert


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
