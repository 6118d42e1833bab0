"""``kafka.tls`` and ``kafka.sasl``: validation naming the key, the settings every client gets, secrets
kept out of dumps, and the training SDK's ``VIGIL_KAFKA_*`` variables making the same config."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from vigil.collectors.training.connection import kafka_config_from_env

from tests.tls_broker import Pki, make_pki
from vigil.bus.connection import client_settings, split_server, ssl_context
from vigil.config import KafkaConfig, TlsConfig, validate
from vigil.errors import ConfigError

SERVERS = ["kafka-0:9093"]


def kafka(**data: Any) -> KafkaConfig:
    return validate(KafkaConfig, {"bootstrap_servers": SERVERS, **data}, prefix="kafka")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize(
    ("data", "protocol"),
    [
        ({}, "PLAINTEXT"),
        ({"tls": {}}, "SSL"),
        ({"sasl": {"username": "u", "password": "p"}}, "SASL_PLAINTEXT"),
        ({"tls": {}, "sasl": {"username": "u", "password": "p"}}, "SASL_SSL"),
    ],
)
def test_the_transport_follows_from_tls_and_sasl(data: dict[str, Any], protocol: str) -> None:
    assert kafka(**data).security_protocol == protocol


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"bootstrap_servers": [], "tls": {}}, "kafka.tls: needs bootstrap_servers"),
        ({"tls": {"key_file": "k.pem"}}, "kafka.tls.key_file: needs cert_file"),
        ({"tls": {"check_hostname": "maybe"}}, "kafka.tls.check_hostname: Input should be a valid boolean"),
        ({"sasl": {"username": "u", "password": "p", "mechanism": "GSSAPI"}}, "kafka.sasl.mechanism: Input should be"),
        ({"sasl": {"password": "p"}}, "kafka.sasl.username: Field required"),
        ({"sasl": {"username": "u", "password": {"env": "VIGIL_TEST_UNSET"}}}, "kafka.sasl.password: environment "),
        ({"replication_factor": 0}, "kafka.replication_factor: Input should be greater than or equal to 1"),
    ],
)
def test_bad_security_config_names_the_key(data: dict[str, Any], error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError) as caught:
        kafka(**data)
    assert error in str(caught.value)


def test_inline_passwords_are_named_and_references_are_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TEST_KAFKA_PW", "from-env")
    (tmp_path / "pw").write_text("from-file\n")
    inline = kafka(sasl={"username": "u", "password": "hunter2"}, tls={"cert_file": "c", "key_password": "kp-hunter3"})
    assert inline.inline_secrets() == ["kafka.sasl.password", "kafka.tls.key_password"]
    referenced = kafka(
        sasl={"username": "u", "password": {"env": "VIGIL_TEST_KAFKA_PW"}},
        tls={"cert_file": "c", "key_password": {"file": str(tmp_path / "pw")}},
    )
    assert referenced.inline_secrets() == []
    assert referenced.sasl is not None and referenced.sasl.password.reveal() == "from-env"
    dumped = referenced.model_dump(mode="json")
    assert dumped["sasl"]["password"] == {"env": "VIGIL_TEST_KAFKA_PW"}
    assert dumped["tls"]["key_password"] == {"file": str(tmp_path / "pw")}
    for shown in (str(inline.model_dump(mode="json")), repr(inline), str(inline)):
        assert "hunter2" not in shown and "hunter3" not in shown


def test_client_settings_carry_sasl_and_a_verifying_tls_context(pki: Pki) -> None:
    config = kafka(
        tls={"ca_file": str(pki.ca_file), "check_hostname": False},
        sasl={"mechanism": "SCRAM-SHA-256", "username": "vigil", "password": "pw"},
    )
    settings = client_settings(config)
    assert settings["bootstrap_servers"] == SERVERS and settings["security_protocol"] == "SASL_SSL"
    assert (settings["sasl_mechanism"], settings["sasl_plain_username"], settings["sasl_plain_password"]) == (
        "SCRAM-SHA-256",
        "vigil",
        "pw",
    )
    context = settings["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname  # the chain is still checked
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client_settings(kafka()) == {"bootstrap_servers": SERVERS, "security_protocol": "PLAINTEXT"}


def test_unusable_tls_files_fail_at_start_naming_the_key(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^kafka.tls.ca_file: .*missing.pem: no such file or directory"):
        ssl_context(TlsConfig(ca_file=tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^kafka.tls.ca_file: .*junk.pem: "):
        ssl_context(TlsConfig(ca_file=tmp_path / "junk.pem"))
    with pytest.raises(ConfigError, match=r"^kafka.tls.key_password: cannot load the client certificate and key"):
        ssl_context(
            TlsConfig.model_validate({"cert_file": pki.client_cert, "key_file": pki.client_key, "key_password": "no"})
        )
    with pytest.raises(ConfigError, match=r"^kafka.tls.key_file: .*absent.key: no such file"):
        ssl_context(TlsConfig(cert_file=pki.client_cert, key_file=tmp_path / "absent.key"))
    loaded = TlsConfig.model_validate(
        {
            "ca_file": pki.ca_file,
            "cert_file": pki.client_cert,
            "key_file": pki.client_key,
            "key_password": pki.key_password,
        }
    )
    assert ssl_context(loaded).verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("server", "expected"),
    [("kafka-0:9093", ("kafka-0", 9093)), ("kafka-0", ("kafka-0", 9092)), ("[::1]:9094", ("::1", 9094))],
)
def test_bootstrap_server_addresses(server: str, expected: tuple[str, int]) -> None:
    assert split_server(server) == expected


def test_the_sdk_environment_makes_the_same_config(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("job-secret\n")
    env = {
        "VIGIL_KAFKA_BOOTSTRAP_SERVERS": "k0:9093, k1:9093",
        "VIGIL_KAFKA_TLS_CA_FILE": "/etc/ca.pem",
        "VIGIL_KAFKA_TLS_CHECK_HOSTNAME": "false",
        "VIGIL_KAFKA_SASL_USERNAME": "trainer",
        "VIGIL_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "pw"),
        "VIGIL_KAFKA_IDEMPOTENCE": "true",
    }
    config = kafka_config_from_env(env, client_id="vigil-training")
    assert config.bootstrap_servers == ["k0:9093", "k1:9093"] and config.client_id == "vigil-training"
    assert config.tls == TlsConfig(ca_file=Path("/etc/ca.pem"), check_hostname=False)
    assert config.sasl is not None and config.sasl.mechanism == "SCRAM-SHA-512" and config.sasl.username == "trainer"
    assert config.sasl.password.reveal() == "job-secret" and config.idempotence
    assert config.security_protocol == "SASL_SSL"
    plain = kafka_config_from_env({"VIGIL_KAFKA_BOOTSTRAP_SERVERS": "k0:9092"})
    assert plain.tls is None and plain.sasl is None
    on = kafka_config_from_env({"VIGIL_KAFKA_BOOTSTRAP_SERVERS": "k0:9093", "VIGIL_KAFKA_TLS": "yes"})
    assert on.tls == TlsConfig()
    direct = {"VIGIL_KAFKA_BOOTSTRAP_SERVERS": "k", "VIGIL_KAFKA_SASL_USERNAME": "u", "VIGIL_KAFKA_SASL_PASSWORD": "p"}
    assert kafka_config_from_env(direct).sasl.password.reveal() == "p"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"VIGIL_KAFKA_TLS": "perhaps"}, "VIGIL_KAFKA_TLS='perhaps' is not one of"),
        ({"VIGIL_KAFKA_SASL_PASSWORD": "p"}, "VIGIL_KAFKA_SASL_PASSWORD given without VIGIL_KAFKA_SASL_USERNAME"),
        ({"VIGIL_KAFKA_SASL_USERNAME": "u"}, "kafka.sasl.password: Field required"),
        (
            {"VIGIL_KAFKA_SASL_USERNAME": "u", "VIGIL_KAFKA_SASL_MECHANISM": "MD5", "VIGIL_KAFKA_SASL_PASSWORD": "p"},
            "kafka.sasl.mechanism",
        ),
        (
            {"VIGIL_KAFKA_SASL_USERNAME": "u", "VIGIL_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
            "kafka.sasl.password: cannot read secret file /nonexistent/pw",
        ),
    ],
)
def test_bad_sdk_variables_fail_at_start_naming_them(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        kafka_config_from_env({"VIGIL_KAFKA_BOOTSTRAP_SERVERS": "k0:9092", **env})
    assert str(caught.value).startswith("training reporter") and error in str(caught.value)
