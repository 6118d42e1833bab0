"""Config of each notifier: one frozen model per ``type`` in the ``alerting.notifiers`` list.

Secrets (PagerDuty's routing key, the Slack webhook URL, the SMTP password, the webhook URL and its
HMAC secret) are kernel :class:`~vigil.secret.Secret` values (inline, ``{file: PATH}`` or
``{env: NAME}``), each in one field, so they never appear in a repr, a log line, an error message or a
written config file; checks on them (a 32-character routing key, an http(s) URL) run on the resolved
value and never quote it.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from vigil.config import FrozenModel, PositiveDuration
from vigil.secret import Secret

_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$")
HttpUrl = Annotated[str, Field(pattern=_URL.pattern)]
Timeout = Annotated[PositiveDuration, Field(le=300)]


def _http_url(url: Secret) -> Secret:
    if not _URL.match(url.reveal()):
        raise ValueError("must be an http:// or https:// URL")  # not echoed: a URL may carry a token
    return url


def _routing_key(key: Secret) -> Secret:
    length = len(key.reveal())
    if length != 32:
        raise ValueError(f"must be the 32-character integration key (got {length} characters)")
    return key


SecretUrl = Annotated[Secret, AfterValidator(_http_url)]


class _Notifier(FrozenModel):
    name: str | None = None  # how outbox rows name this notifier; default: its type
    send_resolved: bool = True


class WebhookNotifierConfig(_Notifier):
    """A generic JSON webhook; with ``secret`` every request is signed with a timestamp (see webhook.py)."""

    type: Literal["webhook"] = "webhook"
    url: SecretUrl  # a webhook URL often carries its token in the path or the query string
    secret: Secret | None = None
    timeout: Timeout = 5.0


class LogNotifierConfig(_Notifier):
    """Writes every notification to the ``vigil.alerting.notify`` logger."""

    type: Literal["log"] = "log"


class PagerDutyNotifierConfig(_Notifier):
    """PagerDuty Events API v2; ``url`` is the EU endpoint for EU accounts, or a test server."""

    type: Literal["pagerduty"] = "pagerduty"
    routing_key: Annotated[Secret, AfterValidator(_routing_key)]
    url: HttpUrl = "https://events.pagerduty.com/v2/enqueue"
    client: str = "Vigil"
    client_url: HttpUrl | None = None  # Vigil's web UI, linked from PagerDuty as the event's client
    timeout: Timeout = 10.0


class SlackNotifierConfig(_Notifier):
    """A Slack incoming webhook (``https://hooks.slack.com/services/...``)."""

    type: Literal["slack"] = "slack"
    webhook_url: SecretUrl
    timeout: Timeout = 10.0


def _address(value: str) -> str:
    _, address = parseaddr(value)
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise ValueError(f"not an email address: {value!r}")
    return value


Address = Annotated[str, BeforeValidator(lambda v: _address(str(v)))]


class EmailNotifierConfig(_Notifier):
    """Email over SMTP: STARTTLS by default (verified against the system CAs or ``ca_file``), AUTH when
    ``username`` is set."""

    type: Literal["email"] = "email"
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    sender: Address  # the From header and envelope sender, e.g. "Vigil <vigil@example.com>"
    to: Annotated[list[Address], Field(min_length=1)]
    username: str | None = None
    password: Secret | None = None
    starttls: bool = True
    ca_file: Path | None = None  # trust this CA (a private one) instead of the system's
    verify: bool = True  # false: accept any certificate (a lab relay); the link is encrypted, not authenticated
    timeout: Timeout = 10.0

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{str(value)!r} is not a file")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> EmailNotifierConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and not self.starttls:
            raise ValueError("AUTH without starttls would send the password in clear; set starttls: true")
        return self


class RemediationNotifierConfig(_Notifier):
    """The remediation receiver: incidents routed here are planned (and, in execute mode, run) by the
    runbooks of ``alerting.remediation``, which must be enabled."""

    type: Literal["remediation"] = "remediation"
    send_resolved: bool = False


_BY_TYPE: dict[str, type[_Notifier]] = {
    "remediation": RemediationNotifierConfig,
    "webhook": WebhookNotifierConfig,
    "log": LogNotifierConfig,
    "pagerduty": PagerDutyNotifierConfig,
    "slack": SlackNotifierConfig,
    "email": EmailNotifierConfig,
}


def _by_type(value: Any) -> Any:
    """Validate a list entry as the model its ``type`` names. Done here rather than with pydantic's
    discriminated union so that an error names the YAML key (``notifiers[0].routing_key``) instead of
    inserting the tag (``notifiers[0].pagerduty.routing_key``)."""
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    if kind not in _BY_TYPE:
        raise ValueError(f"type must be one of {', '.join(sorted(_BY_TYPE))} (got {kind!r})")
    return _BY_TYPE[kind].model_validate(value)


NotifierConfig = Annotated[
    WebhookNotifierConfig
    | LogNotifierConfig
    | PagerDutyNotifierConfig
    | SlackNotifierConfig
    | EmailNotifierConfig
    | RemediationNotifierConfig,
    BeforeValidator(_by_type),
]
