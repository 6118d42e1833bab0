"""Notifiers: where alerts go. The one interface is :class:`Notifier` (``send(payload) -> DeliveryResult``).

Notifiers are created by name from config through the registry that :func:`build_notifier_registry`
returns; building it has no side effects, so tests and the CLI each get their own.
"""

from __future__ import annotations

from typing import Any

from vigil.alerting.config import LogNotifierConfig, WebhookNotifierConfig
from vigil.alerting.notifiers.base import DeliveryResult, Notifier, Outcome
from vigil.alerting.notifiers.log import LogNotifier
from vigil.alerting.notifiers.webhook import WebhookNotifier

from vigil.registry import Registry


def _webhook(config: WebhookNotifierConfig, **_: Any) -> Notifier:
    secret = config.secret.reveal() if config.secret is not None else None
    return WebhookNotifier(config.url.reveal(), secret=secret, timeout=config.timeout)


def _log(config: LogNotifierConfig, **_: Any) -> Notifier:
    return LogNotifier()


def build_notifier_registry() -> Registry[Notifier]:
    """A fresh registry named "notifier" with the built-in notifiers; ``create(type, config=model)``."""
    registry: Registry[Notifier] = Registry("notifier")
    registry.add("webhook", _webhook)
    registry.add("log", _log)
    return registry


__all__ = [
    "DeliveryResult",
    "LogNotifier",
    "Notifier",
    "Outcome",
    "WebhookNotifier",
    "build_notifier_registry",
]
