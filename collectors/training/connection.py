"""The training SDK's broker settings, from ``VIGIL_KAFKA_*`` environment variables.

A training job has no Vigil config file; its launcher (a Slurm script, a Kubernetes Job) sets:

==================================== =================================================================
``VIGIL_KAFKA_BOOTSTRAP_SERVERS``     ``host:port,host:port`` (required)
``VIGIL_KAFKA_IDEMPOTENCE``           ``true`` against Apache Kafka, Redpanda or MSK (``kafka.idempotence``)
``VIGIL_KAFKA_TLS``                   ``true``: TLS with the system's trusted CAs (implied by any ``_TLS_`` file)
``VIGIL_KAFKA_TLS_CA_FILE``           ``kafka.tls.ca_file``
``VIGIL_KAFKA_TLS_CERT_FILE``         ``kafka.tls.cert_file`` (mutual TLS); ``..._KEY_FILE`` its key
``VIGIL_KAFKA_TLS_KEY_PASSWORD_FILE`` a file holding the key's password (``kafka.tls.key_password``)
``VIGIL_KAFKA_TLS_CHECK_HOSTNAME``    ``false`` to skip the host name check (``kafka.tls.check_hostname``)
``VIGIL_KAFKA_SASL_MECHANISM``        ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` (default with a user)
``VIGIL_KAFKA_SASL_USERNAME``         turns SASL on
``VIGIL_KAFKA_SASL_PASSWORD``         the password itself, or ``VIGIL_KAFKA_SASL_PASSWORD_FILE``: a file holding it
==================================== =================================================================

They make the same :class:`~vigil.config.KafkaConfig` as the services' ``kafka:`` section, so the
connection is built by the same function (:func:`vigil.bus.connection.client_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.config import KafkaConfig, validate
from vigil.errors import ConfigError
from vigil.secret import Secret

PREFIX = "VIGIL_KAFKA_"
BOOTSTRAP_VAR = PREFIX + "BOOTSTRAP_SERVERS"
IDEMPOTENCE_VAR = PREFIX + "IDEMPOTENCE"
_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}
_TLS_FILES = {"CA_FILE": "ca_file", "CERT_FILE": "cert_file", "KEY_FILE": "key_file"}


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    text = value.strip().lower()
    if text not in _FLAGS:
        raise ConfigError(f"training reporter: {name}={value!r} is not one of {', '.join(sorted(_FLAGS))}")
    return _FLAGS[text]


def kafka_config_from_env(env: Mapping[str, str], **settings: Any) -> KafkaConfig:
    """The ``KafkaConfig`` the variables describe, with ``settings`` (client id, linger) added."""
    servers = [s.strip() for s in env.get(BOOTSTRAP_VAR, "").split(",") if s.strip()]
    if not servers:
        raise ConfigError(f"training reporter: no broker (pass bus= or set {BOOTSTRAP_VAR}=host:port,...)")
    data: dict[str, Any] = {
        **settings,
        "bootstrap_servers": servers,
        "idempotence": flag(env, IDEMPOTENCE_VAR, False),
        "tls": _tls(env),
        "sasl": _sasl(env),
    }
    try:
        return validate(KafkaConfig, data, prefix="kafka")
    except ConfigError as exc:
        raise ConfigError(f"training reporter ({PREFIX}* variables): {exc}") from exc


def _tls(env: Mapping[str, str]) -> dict[str, Any] | None:
    files = {key: env[PREFIX + "TLS_" + var] for var, key in _TLS_FILES.items() if env.get(PREFIX + "TLS_" + var)}
    password_file = env.get(PREFIX + "TLS_KEY_PASSWORD_FILE")
    if not (flag(env, PREFIX + "TLS", bool(files)) or password_file):
        return None
    tls: dict[str, Any] = {**files, "check_hostname": flag(env, PREFIX + "TLS_CHECK_HOSTNAME", True)}
    if password_file:
        tls["key_password"] = {"file": password_file}
    return tls


def _sasl(env: Mapping[str, str]) -> dict[str, Any] | None:
    username = env.get(PREFIX + "SASL_USERNAME")
    if not username:
        given = [PREFIX + n for n in ("SASL_MECHANISM", "SASL_PASSWORD", "SASL_PASSWORD_FILE") if env.get(PREFIX + n)]
        if given:
            raise ConfigError(f"training reporter: {', '.join(given)} given without {PREFIX}SASL_USERNAME")
        return None
    sasl: dict[str, Any] = {"username": username, "mechanism": env.get(PREFIX + "SASL_MECHANISM", "SCRAM-SHA-512")}
    password_file = env.get(PREFIX + "SASL_PASSWORD_FILE")
    if password_file:
        sasl["password"] = {"file": password_file}
    elif env.get(PREFIX + "SASL_PASSWORD"):
        # From the given mapping, not os.environ (tests and launchers pass their own).
        sasl["password"] = Secret(env[PREFIX + "SASL_PASSWORD"], f"env:{PREFIX}SASL_PASSWORD")
    return sasl
