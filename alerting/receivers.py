"""Receivers: a name the routing tree sends to, and the notifiers (integrations) behind it.

A receiver names entries of ``alerting.notifiers`` (``notifiers: [pd, slack]``) or carries
Alertmanager's own integration blocks, translated to Vigil notifiers where they map cleanly:

- ``pagerduty_configs``: ``routing_key`` / ``routing_key_file``, ``url``, ``client``, ``client_url``,
  ``send_resolved``. (``service_key``, the Events API v1, is refused.)
- ``slack_configs``: ``api_url`` / ``api_url_file``, ``send_resolved``.
- ``webhook_configs``: ``url`` / ``url_file``, ``send_resolved``.
- ``email_configs``: ``to`` (comma-separated, as Alertmanager writes it), ``from``, ``smarthost``
  (``host:port``), ``auth_username``, ``auth_password`` / ``auth_password_file``, ``require_tls``,
  ``send_resolved``.

Vigil writes the message from the incident itself, so Alertmanager's message fields (``description``,
``details``, ``severity``, ``title``, ``text``, ``html``, ``headers``, ``channel``, ``max_alerts``...)
are accepted and not used; anything else (``http_config``, ``tls_config``...) fails at start naming
the key. A translated integration is named ``<receiver>/<type>-<n>``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, TypeAdapter, ValidationError, model_validator
from vigil.alerting.notifiers.config import NotifierConfig

from vigil.config import FrozenModel

_MESSAGE_FIELDS = {
    "description",
    "details",
    "severity",
    "class",
    "component",
    "group",
    "links",
    "images",
    "title",
    "title_link",
    "text",
    "pretext",
    "fallback",
    "footer",
    "color",
    "channel",
    "username",
    "icon_emoji",
    "icon_url",
    "fields",
    "actions",
    "short_fields",
    "link_names",
    "mrkdwn_in",
    "callback_id",
    "html",
    "headers",
    "hello",
    "max_alerts",
    "source",
    "require_tls_verify",
}
_SUPPORTED = {
    "pagerduty_configs": {"routing_key", "routing_key_file", "url", "client", "client_url", "send_resolved"},
    "slack_configs": {"api_url", "api_url_file", "send_resolved"},
    "webhook_configs": {"url", "url_file", "send_resolved"},
    "email_configs": {
        "to",
        "from",
        "smarthost",
        "auth_username",
        "auth_password",
        "auth_password_file",
        "require_tls",
        "send_resolved",
        "auth_identity",
    },
}


class ReceiverConfig(FrozenModel):
    name: str = Field(min_length=1)
    notifiers: list[str] = Field(default_factory=list)  # names of alerting.notifiers entries
    # The *_configs blocks, translated: Vigil notifiers named <receiver>/<type>-<n>. The blocks themselves
    # are not kept (they may hold keys in clear; the notifier models hold them as secrets).
    integrations: list[NotifierConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _translate(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("integrations"):
            return data
        name = str(data.get("name", "receiver"))
        made: list[dict[str, Any]] = []
        for block, supported in _SUPPORTED.items():
            for index, entry in enumerate(data.get(block) or []):
                if not isinstance(entry, dict):
                    continue  # pydantic names the wrong type at the block's own key
                unknown = sorted(set(entry) - supported - _MESSAGE_FIELDS)
                if unknown:
                    raise ValueError(f"{block}[{index}].{unknown[0]}: not supported by Vigil's {block}")
                translated = {"name": f"{name}/{block.split('_')[0]}-{index}", **_translate(block, entry)}
                _check(block, index, translated)
                made.append(translated)
        rest = {k: v for k, v in data.items() if k not in _SUPPORTED}
        return {**rest, "integrations": made}


# Vigil's field -> the Alertmanager key a user wrote, so an error names the key in their file.
_THEIRS = {
    "webhook_url": "api_url",
    "sender": "from",
    "host": "smarthost",
    "port": "smarthost",
    "starttls": "require_tls",
    "username": "auth_username",
    "password": "auth_password",
}


def _check(block: str, index: int, translated: dict[str, Any]) -> None:
    """Validate a translation with the notifier's own model, naming the Alertmanager key on error."""
    try:
        TypeAdapter(NotifierConfig).validate_python(translated)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = next((str(p) for p in first["loc"] if isinstance(p, str) and not p.startswith("function")), "")
        where = f"{block}[{index}]" + (f".{_THEIRS.get(field, field)}" if field else "")
        raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def _file(entry: dict[str, Any], key: str) -> Any:
    return entry[key] if key in entry else ({"file": entry[f"{key}_file"]} if f"{key}_file" in entry else None)


def _translate(block: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One Alertmanager integration as a Vigil notifier config (validated by the notifier's own model)."""
    resolved = {"send_resolved": entry["send_resolved"]} if "send_resolved" in entry else {}
    if block == "pagerduty_configs":
        keep: dict[str, Any] = {k: entry[k] for k in ("url", "client", "client_url") if k in entry}
        return {"type": "pagerduty", "routing_key": _file(entry, "routing_key"), **keep, **resolved}
    if block == "slack_configs":
        return {"type": "slack", "webhook_url": _file(entry, "api_url"), **resolved}
    if block == "webhook_configs":
        return {"type": "webhook", "url": _file(entry, "url"), **resolved}
    host, _, port = str(entry.get("smarthost", "")).rpartition(":")
    out: dict[str, Any] = {
        "type": "email",
        "host": host or entry.get("smarthost"),
        "sender": entry.get("from"),
        "to": [t.strip() for t in str(entry.get("to", "")).split(",") if t.strip()],
        "starttls": bool(entry.get("require_tls", True)),
        **resolved,
    }
    if port.isdigit():
        out["port"] = int(port)
    if "auth_username" in entry:
        out["username"] = entry["auth_username"]
        out["password"] = _file(entry, "auth_password")
    return out
