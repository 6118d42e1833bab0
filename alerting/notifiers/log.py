"""A notifier that writes to Python logging: the default, and a trail when nothing else is configured."""

from __future__ import annotations

import logging

from vigil.alerting.notifiers.base import DeliveryResult, Notification

_LEVELS = {"critical": logging.ERROR, "error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}


class LogNotifier:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("vigil.alerting.notify")

    def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        level = _LEVELS.get(n.severity, logging.WARNING) if n.action == "trigger" else logging.INFO
        domain = f"{n.domain.kind} {n.domain.id}" if n.domain else n.source
        self._logger.log(
            level,
            "notification %s %s (%s) on %s: %s [%d alerts, incident %s]",
            n.action,
            n.class_ or "incident",
            n.reason,
            domain,
            n.summary,
            len(n.members),
            n.incident_id or n.dedup_key,
        )
        return DeliveryResult.delivered()

    def close(self) -> None:
        return None
