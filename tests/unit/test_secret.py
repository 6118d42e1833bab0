"""Secret config values: inline, from a file or the environment; redacted in repr, logs and written config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from vigil.alerting.config import AlertingConfig, WebhookNotifierConfig

from vigil.cli.settings import VigilConfig, dump_config, load_config
from vigil.cli.stack import Stack
from vigil.config import validate
from vigil.errors import ConfigError
from vigil.secret import REDACTED, Secret, redact_url

TOKEN = "xoxb-very-secret-token"
HOOK = f"https://hooks.example.com/services/T0/B0/{TOKEN}?key={TOKEN}"


def hook(**fields: object) -> WebhookNotifierConfig:
    return WebhookNotifierConfig.model_validate({"url": "http://127.0.0.1:9/hook", **fields})


def test_a_secret_is_given_inline_from_a_file_or_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hook.secret").write_text("from-a-file\n")
    monkeypatch.setenv("VIGIL_TEST_SECRET", "from-the-env")
    assert hook(secret="inline").secret == Secret("inline")
    from_file = hook(secret={"file": str(tmp_path / "hook.secret")}).secret
    assert from_file is not None and from_file.reveal() == "from-a-file"  # the trailing newline is not the key
    assert from_file.source == f"file:{tmp_path / 'hook.secret'}"
    from_env = hook(secret={"env": "VIGIL_TEST_SECRET"}).secret
    assert from_env is not None and (from_env.reveal(), from_env.source) == ("from-the-env", "env:VIGIL_TEST_SECRET")


def test_repr_str_and_a_config_model_in_a_log_line_never_show_the_value() -> None:
    config = AlertingConfig.model_validate({"notifiers": [{"type": "webhook", "url": HOOK, "secret": "s3cret"}]})
    for text in (repr(config), str(config), repr(config.notifiers[0].secret), f"{config.notifiers[0].url}"):
        assert "s3cret" not in text and TOKEN not in text
    assert str(config.notifiers[0].secret) == REDACTED


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ({"env": "VIGIL_TEST_UNSET_VARIABLE"}, "environment variable VIGIL_TEST_UNSET_VARIABLE is not set"),
        ({"file": "/nonexistent/vigil/secret"}, "cannot read secret file /nonexistent/vigil/secret"),
        (REDACTED, "this secret was redacted when the config was written"),
        ({"vault": "x"}, "a secret is a string, {file: PATH} or {env: NAME}"),
        ("", "the secret is empty"),
    ],
)
def test_a_secret_that_cannot_be_had_fails_at_start_naming_the_key(secret: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(VigilConfig, {"alerting": {"notifiers": [{"type": "webhook", "url": HOOK, "secret": secret}]}})
    assert f"alerting.notifiers[0].secret: {message}" in str(caught.value)


def test_a_bad_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        validate(AlertingConfig, {"notifiers": [{"type": "webhook", "url": f"ftp://x/{TOKEN}"}]})
    assert "notifiers[0].url: must be an http:// or https:// URL" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_a_json_dump_writes_references_and_redacts_inline_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TEST_SECRET", "from-the-env")
    config = hook(secret={"env": "VIGIL_TEST_SECRET"})
    assert config.model_dump(mode="json")["secret"] == {"env": "VIGIL_TEST_SECRET"}
    assert hook(secret="inline").model_dump(mode="json")["secret"] == REDACTED
    assert hook(secret="inline").model_dump()["secret"] == Secret("inline")  # in-process copies keep it


def test_the_written_run_config_holds_no_secret_and_the_children_read_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_TEST_SECRET", "from-the-env")
    source = tmp_path / "vigil.yaml"
    source.write_text(
        yaml.safe_dump(
            {
                "alerting": {
                    "notifiers": [
                        {"type": "webhook", "name": "a", "url": HOOK, "secret": "inline-s3cret"},
                        {
                            "type": "webhook",
                            "name": "b",
                            "url": "http://127.0.0.1:9/x",
                            "secret": {"env": "VIGIL_TEST_SECRET"},
                        },
                    ]
                }
            }
        )
    )
    run = tmp_path / "data" / "run" / "vigil.yaml"
    dump_config(load_config(source), run)
    text = run.read_text()
    assert "inline-s3cret" not in text and TOKEN not in text and "from-the-env" not in text
    assert "VIGIL_TEST_SECRET" in text  # an environment reference stays a reference
    reloaded = load_config(run).alerting.notifiers
    assert [n.url.reveal() for n in reloaded if isinstance(n, WebhookNotifierConfig)] == [HOOK, "http://127.0.0.1:9/x"]
    assert [n.secret.reveal() for n in reloaded if isinstance(n, WebhookNotifierConfig) and n.secret] == [
        "inline-s3cret",
        "from-the-env",
    ]
    dump_config(load_config(source), run)  # a second run replaces the secret files, it does not pile them up
    assert len(list((run.parent / "secrets").iterdir())) == 3  # two URLs and one secret were inline


def test_vigil_up_passes_the_configured_secrets_and_its_own_receiver_to_the_children(tmp_path: Path) -> None:
    config = VigilConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "alerting": {"notifiers": [{"type": "webhook", "url": HOOK, "secret": "s3cret"}]},
        }
    )
    stack = Stack(config)
    stack.receiver.start()
    try:
        effective = stack._effective(config.kafka)
        dump_config(effective, stack.config_path)
    finally:
        stack.receiver.stop()
    assert "s3cret" not in stack.config_path.read_text()
    hooks = [n for n in load_config(stack.config_path).alerting.notifiers if isinstance(n, WebhookNotifierConfig)]
    assert [(h.url.reveal(), h.secret.reveal() if h.secret else None) for h in hooks] == [
        (HOOK, "s3cret"),
        (stack.receiver.url, None),
    ]


def test_redact_url_keeps_scheme_and_host_only() -> None:
    assert redact_url(HOOK) == "https://hooks.example.com/…"
    assert redact_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert redact_url("http://user:pw@host:9/x?token=1") == "http://host:9/…"
