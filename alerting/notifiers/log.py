"""A notifier that writes to Python logging: the default, and a trail when nothing else is configured."""

from __future__ import annotations

import json
import logging
from typing import Any

from vigil.alerting.notifiers.base import DeliveryResult

_LEVELS = {"critical": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}


class LogNotifier:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("vigil.alerting.notify")

    def send(self, payload: dict[str, Any]) -> DeliveryResult:
        alert = payload.get("alert", {})
        level = _LEVELS.get(str(alert.get("severity")), logging.WARNING)
        if payload.get("status") == "resolved":
            level = logging.INFO
        self._logger.log(
            level,
            "alert %s %s (%s): %s %s",
            payload.get("status"),
            alert.get("labels", {}).get("alertname"),
            payload.get("reason"),
            alert.get("annotations", {}).get("summary", ""),
            json.dumps(alert.get("labels", {}), sort_keys=True),
        )
        return DeliveryResult.delivered()

    def close(self) -> None:
        return None
