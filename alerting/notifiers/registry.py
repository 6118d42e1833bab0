"""The notifier registry: each built-in notifier created by type from its config model."""

from __future__ import annotations

from typing import Any

from vigil.alerting.notifiers.base import Notifier
from vigil.alerting.notifiers.config import (
    EmailNotifierConfig,
    LogNotifierConfig,
    PagerDutyNotifierConfig,
    RemediationNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)
from vigil.alerting.notifiers.log import LogNotifier
from vigil.alerting.notifiers.pagerduty import PagerDutyNotifier
from vigil.alerting.notifiers.slack import SlackNotifier
from vigil.alerting.notifiers.smtp import EmailNotifier
from vigil.alerting.notifiers.webhook import WebhookNotifier

from vigil.clock import Clock
from vigil.errors import ConfigError
from vigil.registry import Registry


def _webhook(config: WebhookNotifierConfig, clock: Clock | None = None, **_: Any) -> Notifier:
    secret = config.secret.reveal() if config.secret is not None else None
    return WebhookNotifier(config.url.reveal(), secret=secret, timeout=config.timeout, clock=clock)


def _log(config: LogNotifierConfig, **_: Any) -> Notifier:
    return LogNotifier()


def _pagerduty(config: PagerDutyNotifierConfig, **_: Any) -> Notifier:
    return PagerDutyNotifier(
        config.routing_key.reveal(),
        url=config.url,
        client_name=config.client,
        client_url=config.client_url,
        timeout=config.timeout,
    )


def _slack(config: SlackNotifierConfig, **_: Any) -> Notifier:
    return SlackNotifier(config.webhook_url.reveal(), timeout=config.timeout)


def _email(config: EmailNotifierConfig, clock: Clock | None = None, **_: Any) -> Notifier:
    return EmailNotifier(config, clock=clock)


def _remediation(config: RemediationNotifierConfig, remediation: Notifier | None = None, **_: Any) -> Notifier:
    """The remediation receiver is built by the service (it needs the store and the runner); the
    registry hands it out under its type so a route can name it like any other receiver."""
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
