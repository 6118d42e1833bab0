"""Notifier config: every example of the README loads, and a bad value fails naming its key path
(``alerting.notifiers[0].routing_key``), without ever echoing a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from vigil.alerting.config import (
    AlertingConfig,
    EmailNotifierConfig,
    PagerDutyNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)

from vigil.cli.app import build_app
from vigil.cli.settings import dump_config, load_config
from vigil.config import validate
from vigil.errors import ConfigError

KEY = "0123456789abcdef0123456789ABCDEF"
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"
EMAIL: dict[str, Any] = {
    "type": "email",
    "host": "smtp.example.com",
    "sender": "vigil@example.com",
    "to": ["a@example.com"],
}


def load(*notifiers: dict[str, Any]) -> AlertingConfig:
    return validate(AlertingConfig, {"notifiers": list(notifiers)}, "alerting")


def error(*notifiers: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(*notifiers)
    return str(caught.value)


def test_every_notifier_type_loads(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = load(
        {"type": "pagerduty", "routing_key": KEY, "url": "https://events.eu.pagerduty.com/v2/enqueue"},
        {"type": "slack", "webhook_url": SLACK, "send_resolved": False},
        EMAIL | {"to": ["a@example.com", "Team <b@example.com>"], "username": "u", "password": "p", "ca_file": str(ca)},
        {"type": "webhook", "url": "https://hooks.example.com/vigil", "secret": "hmac-secret", "timeout": "3s"},
        {"type": "log"},
    )
    assert config.notifier_names() == ["pagerduty", "slack", "email", "webhook", "log"]
    pd, slack, email, hook, _ = config.notifiers
    assert isinstance(pd, PagerDutyNotifierConfig) and pd.routing_key.reveal() == KEY
    assert isinstance(slack, SlackNotifierConfig) and not slack.send_resolved
    assert isinstance(email, EmailNotifierConfig) and email.port == 587 and email.starttls and email.ca_file == ca
    assert isinstance(hook, WebhookNotifierConfig) and hook.timeout == 3.0
    assert KEY not in repr(config) and SLACK not in repr(config) and "hmac-secret" not in repr(config)


@pytest.mark.parametrize(
    ("notifier", "message"),
    [
        ({"type": "pagerduty", "routing_key": "short"}, "alerting.notifiers[0].routing_key: must be the 32-character"),
        ({"type": "pagerduty"}, "alerting.notifiers[0].routing_key: Field required"),
        ({"type": "pagerduty", "routing_key": KEY, "url": "events.pagerduty.com"}, "alerting.notifiers[0].url:"),
        ({"type": "pagerduty", "routing_key": KEY, "routng_key": KEY}, "alerting.notifiers[0].routng_key: unknown key"),
        (
            {"type": "slack", "webhook_url": "hooks.slack.com/x"},
            "alerting.notifiers[0].webhook_url: must be an http:// or https:// URL",
        ),
        ({"type": "webhook", "url": "ftp://x"}, "alerting.notifiers[0].url:"),
        ({"type": "webhook", "url": "http://x", "timeout": "3 sec"}, "alerting.notifiers[0].timeout: invalid duration"),
        (EMAIL | {"to": []}, "alerting.notifiers[0].to: List should have at least 1 item"),
        (EMAIL | {"to": ["a@example.com", "nobody"]}, "alerting.notifiers[0].to[1]: not an email address: 'nobody'"),
        (EMAIL | {"sender": "vigil"}, "alerting.notifiers[0].sender: not an email address"),
        (EMAIL | {"port": 0}, "alerting.notifiers[0].port:"),
        (
            EMAIL | {"ca_file": "/nonexistent/ca.pem"},
            "alerting.notifiers[0].ca_file: '/nonexistent/ca.pem' is not a file",
        ),
        (EMAIL | {"username": "u"}, "alerting.notifiers[0]: username and password go together"),
        (EMAIL | {"username": "u", "password": "p", "starttls": False}, "alerting.notifiers[0]: AUTH without starttls"),
        (
            {"type": "pager"},
            "alerting.notifiers[0]: type must be one of email, log, pagerduty, remediation, slack, webhook",
        ),
        ({"url": "http://x"}, "alerting.notifiers[0]: type must be one of"),
    ],
)
def test_bad_values_fail_naming_the_key(notifier: dict[str, Any], message: str) -> None:
    assert message in error(notifier)


def test_second_entry_is_named_by_index_and_secrets_are_not_echoed() -> None:
    text = error({"type": "log"}, {"type": "pagerduty", "routing_key": "secret-routing-key"})
    assert text.startswith("alerting.notifiers[1].routing_key:") and "secret-routing-key" not in text
    assert "hooks.slack" not in error({"type": "slack", "webhook_url": "hooks.slack.com/services/SECRET"})


def test_check_config_names_the_notifier_key(tmp_path: Path) -> None:
    path = tmp_path / "vigil.yaml"
    path.write_text(
        "alerting:\n  notifiers:\n"
        f"    - {{type: pagerduty, routing_key: '{KEY}'}}\n"
        "    - {type: email, host: smtp.example.com, sender: vigil@example.com, to: [oncall]}\n"
    )
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(path)])
    assert result.exit_code == 2
    assert "alerting.notifiers[1].to[0]: not an email address: 'oncall'" in result.output


def test_secrets_survive_the_effective_config_that_vigil_up_hands_its_children(tmp_path: Path) -> None:
    """`vigil up` writes the config its child processes read: each inline secret goes to its own private
    file that the config refers to (a masked one there would page PagerDuty with "**********" as the
    routing key), so the children read the same values and the config holds none in clear."""
    config = load_config(
        None,
        {
            "alerting": {
                "notifiers": [
                    {"type": "pagerduty", "routing_key": KEY},
                    {"type": "slack", "webhook_url": SLACK},
                    EMAIL | {"username": "u", "password": "smtp-pw"},
                    {"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": "hmac-secret"},
                ]
            }
        },
    )
    path = tmp_path / "run" / "vigil.yaml"
    dump_config(config, path)
    child = load_config(path)
    written = path.read_text()
    assert all(v not in written for v in (KEY, SLACK, "smtp-pw", "hmac-secret"))  # each in its own 0600 file
    pd, slack, email, hook = child.alerting.notifiers
    assert isinstance(pd, PagerDutyNotifierConfig) and pd.routing_key.reveal() == KEY
    assert isinstance(slack, SlackNotifierConfig) and slack.webhook_url.reveal() == SLACK
    assert isinstance(email, EmailNotifierConfig) and email.password is not None
    assert email.password.reveal() == "smtp-pw"
    assert isinstance(hook, WebhookNotifierConfig) and hook.secret is not None
    assert hook.secret.reveal() == "hmac-secret"
    assert KEY not in repr(child) and KEY not in str(pd)  # still masked wherever it is shown
