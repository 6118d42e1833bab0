"""Alerting: turns detections and predictions into alerts a person acts on, and tells them exactly once.

It consumes ``Detection`` events, keeps one alert per fingerprint (sha256 of the alert name and
identity labels) while it fires, resolves it when a "resolved" detection arrives, and turns
``Prediction`` events into early-warning alerts through per-predictor rules with hysteresis
(``predictions.py``). It stores alerts in SQLite, publishes ``Alert`` events, and notifies
(webhook, log) through a durable outbox so replays never page twice and a receiver outage delays
pages but loses none.

The one interface is :class:`~vigil.alerting.service.AlertingService` (``step``, ``run(stop)``,
``health``), configured by :class:`~vigil.alerting.config.AlertingConfig`.
"""

from typing import TYPE_CHECKING, Any

from vigil.alerting.config import AlertingConfig

if TYPE_CHECKING:
    from vigil.alerting.service import AlertingService

__all__ = ["AlertingConfig", "AlertingService"]


def __getattr__(name: str) -> Any:
    # The service (FastAPI, the store) is imported on first use only: reading the config section,
    # as `vigil check-config` and the node agent's installs do, needs none of the server extra.
    if name == "AlertingService":
        from vigil.alerting.service import AlertingService

        return AlertingService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
