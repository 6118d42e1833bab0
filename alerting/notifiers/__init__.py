"""Notifiers: where pages go. The one interface is :class:`Notifier` (``send(notification) -> DeliveryResult``).

A :class:`Notification` is one page about one incident; each notifier renders it for its receiver
(PagerDuty Events API v2, a Slack incoming webhook, email over SMTP, a signed JSON webhook, the log)
and says whether a failure is worth retrying. Notifiers are created by type from config through the
registry that :func:`build_notifier_registry` returns; building it has no side effects, so tests and
the CLI each get their own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vigil.alerting.notifiers.base import DeliveryResult, Notification, Notifier, Outcome, deliver
from vigil.alerting.notifiers.config import (
    EmailNotifierConfig,
    LogNotifierConfig,
    NotifierConfig,
    PagerDutyNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)

if TYPE_CHECKING:
    from vigil.alerting.notifiers.log import LogNotifier
    from vigil.alerting.notifiers.pagerduty import PagerDutyNotifier
    from vigil.alerting.notifiers.registry import build_notifier_registry
    from vigil.alerting.notifiers.slack import SlackNotifier
    from vigil.alerting.notifiers.smtp import EmailNotifier
    from vigil.alerting.notifiers.webhook import WebhookNotifier

# The notifiers themselves (httpx, smtplib) are imported on first use: the alerting config imports
# this package for the notifier config models, and reading a config (`vigil check-config`, building
# the command tree on a node agent's install) needs none of the server extra.
_LAZY = {
    "LogNotifier": "log",
    "PagerDutyNotifier": "pagerduty",
    "SlackNotifier": "slack",
    "EmailNotifier": "smtp",
    "WebhookNotifier": "webhook",
    "build_notifier_registry": "registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "DeliveryResult",
    "EmailNotifier",
    "EmailNotifierConfig",
    "LogNotifier",
    "LogNotifierConfig",
    "Notification",
    "Notifier",
    "NotifierConfig",
    "Outcome",
    "PagerDutyNotifier",
    "PagerDutyNotifierConfig",
    "SlackNotifier",
    "SlackNotifierConfig",
    "WebhookNotifier",
    "WebhookNotifierConfig",
    "build_notifier_registry",
    "deliver",
]
