"""Notifiers: where pages go. The one interface is :class:`Notifier` (``send(notification) -> DeliveryResult``).

A :class:`Notification` is one page about one incident; each notifier renders it for its receiver
(PagerDuty Events API v2, a Slack incoming webhook, email over SMTP, a signed JSON webhook, the log)
and says whether a failure is worth retrying. Notifiers are created by type from config through the
registry that :func:`build_notifier_registry` returns; building it has no side effects, so tests and
the CLI each get their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vigil.alerting.notifiers.base import DeliveryResult, Notification, Notifier, Outcome, deliver
from vigil.alerting.notifiers.config import (
    EmailNotifierConfig,
    LogNotifierConfig,
    NotifierConfig,
    PagerDutyNotifierConfig,
    RemediationNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)

from vigil.clock import Clock
from vigil.errors import ConfigError
from vigil.registry import Registry

if TYPE_CHECKING:
    from vigil.alerting.notifiers.log import LogNotifier
    from vigil.alerting.notifiers.pagerduty import PagerDutyNotifier
    from vigil.alerting.notifiers.slack import SlackNotifier
    from vigil.alerting.notifiers.smtp import EmailNotifier
    from vigil.alerting.notifiers.webhook import WebhookNotifier

# The notifier classes need httpx (server extra): imported when first used, so the config models
# (``vigil.alerting.notifiers.config``, read by every command's config) import without it.
_LAZY = {
    "LogNotifier": "log",
    "PagerDutyNotifier": "pagerduty",
    "SlackNotifier": "slack",
    "EmailNotifier": "smtp",
    "WebhookNotifier": "webhook",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"vigil.alerting.notifiers.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _webhook(config: WebhookNotifierConfig, clock: Clock | None = None, **_: Any) -> Notifier:
    from vigil.alerting.notifiers.webhook import WebhookNotifier

    secret = config.secret.reveal() if config.secret is not None else None
    return WebhookNotifier(config.url.reveal(), secret=secret, timeout=config.timeout, clock=clock)


def _log(config: LogNotifierConfig, **_: Any) -> Notifier:
    from vigil.alerting.notifiers.log import LogNotifier

    return LogNotifier()


def _pagerduty(config: PagerDutyNotifierConfig, **_: Any) -> Notifier:
    from vigil.alerting.notifiers.pagerduty import PagerDutyNotifier

    return PagerDutyNotifier(
        config.routing_key.reveal(),
        url=config.url,
        client_name=config.client,
        client_url=config.client_url,
        timeout=config.timeout,
    )


def _slack(config: SlackNotifierConfig, **_: Any) -> Notifier:
    from vigil.alerting.notifiers.slack import SlackNotifier

    return SlackNotifier(config.webhook_url.reveal(), timeout=config.timeout)


def _email(config: EmailNotifierConfig, clock: Clock | None = None, **_: Any) -> Notifier:
    from vigil.alerting.notifiers.smtp import EmailNotifier

    return EmailNotifier(config, clock=clock)


def _remediation(config: RemediationNotifierConfig, remediation: Notifier | None = None, **_: Any) -> Notifier:
    if remediation is None:
        raise ConfigError("a notifier of type remediation needs alerting.remediation.enabled: true")
    return remediation


def build_notifier_registry() -> Registry[Notifier]:
    """A fresh registry named "notifier" with the built-in notifiers; ``create(type, config=model, clock=...)``."""
    registry: Registry[Notifier] = Registry("notifier")
    registry.add("webhook", _webhook)
    registry.add("log", _log)
    registry.add("pagerduty", _pagerduty)
    registry.add("slack", _slack)
    registry.add("email", _email)
    registry.add("remediation", _remediation)
    return registry


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
