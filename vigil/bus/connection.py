"""Reaching the brokers: the one place that turns ``KafkaConfig`` into kafka-python's connection
settings (TLS, SASL), and that says in one line why no broker answers.

Every producer, consumer and admin client (services, agent, training SDK, benchmarks, the chaos
read-back, the ``vigil up`` watcher) gets its ``bootstrap_servers``, ``security_protocol``,
``ssl_context`` and ``sasl_*`` from :func:`client_settings`, so a setting added here reaches all of
them. The TLS context is built here too, not by kafka-python, so that a missing or unreadable file
fails at start naming its key, and :func:`diagnose` can use the very same context.

:func:`diagnose` is what a person needs when nothing works: it connects to each bootstrap server
itself (TCP, the TLS handshake, one ApiVersions request) and answers with one line that names the
config key and what each server said, instead of kafka-python's retry log and a traceback.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from vigil.config import KafkaConfig, TlsConfig
from vigil.errors import ConfigError, VigilError

log = logging.getLogger(__name__)

# ApiVersions v0 (api key 18), correlation id 1, client id "vigil-probe": every Kafka broker answers
# it before authentication, so an answer proves the transport (TCP and TLS) works end to end.
_CLIENT = b"vigil-probe"
_API_VERSIONS = struct.pack(">hhih", 18, 0, 1, len(_CLIENT)) + _CLIENT
_PROBE = struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS
_NAME_MISMATCH = (62, 64)  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


class BrokerUnreachable(VigilError):
    """No bootstrap server answered; the message is one line naming the config key."""


@dataclass(frozen=True, slots=True)
class BrokerProblem:
    message: str  # one line, naming the config key
    fatal: bool  # a configuration the broker refuses (wrong CA, missing client certificate): waiting will not help


def client_settings(config: KafkaConfig) -> dict[str, Any]:
    """kafka-python keyword arguments for reaching the brokers of ``config``: servers, TLS, SASL."""
    settings: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap_servers),
        "security_protocol": config.security_protocol,
    }
    if config.tls is not None:
        settings["ssl_context"] = ssl_context(config.tls)
    if config.sasl is not None:
        settings["sasl_mechanism"] = config.sasl.mechanism
        settings["sasl_plain_username"] = config.sasl.username
        settings["sasl_plain_password"] = config.sasl.password.reveal()
    return settings


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """The client TLS context of ``kafka.tls`` (TLS 1.2 or later, the chain always verified); a file
    that cannot be used raises ``ConfigError`` naming its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = tls.check_hostname
    if tls.ca_file is None:
        context.load_default_certs()
    else:
        try:
            context.load_verify_locations(cafile=str(tls.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"kafka.tls.ca_file: {tls.ca_file}: {_reason(exc)}") from exc
    if tls.cert_file is not None:
        password = tls.key_password.reveal() if tls.key_password is not None else None
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None, password)
        except OSError as exc:
            missing = tls.key_file if tls.key_file and not tls.key_file.exists() else tls.cert_file
            key = "key_file" if missing == tls.key_file else "cert_file"
            raise ConfigError(f"kafka.tls.{key}: {missing}: {_reason(exc)}") from exc
        except ssl.SSLError as exc:
            key = "key_password" if tls.key_password is not None else "cert_file"
            raise ConfigError(
                f"kafka.tls.{key}: cannot load the client certificate and key ({_reason(exc)}; "
                "a PEM certificate, its key, and the key's password if it is encrypted)"
            ) from exc
    return context


def diagnose(config: KafkaConfig, timeout_s: float = 5.0) -> BrokerProblem | None:
    """None when some bootstrap server answers a Kafka request (over TLS with ``kafka.tls``); else
    the problem, in one line naming the key. SASL is not tried here: kafka-python reports it."""
    tls = config.tls
    context = ssl_context(tls) if tls is not None else None
    tried: list[str] = []
    for server in config.bootstrap_servers:
        host, port = split_server(server)
        try:
            _ask(host, port, context, timeout_s)
            return None
        except ssl.SSLCertVerificationError as exc:
            return BrokerProblem(_verify_failed(tls, server, exc), fatal=True)
        except ssl.SSLError as exc:
            problem = _tls_refused(tls, server, exc)
            if problem is not None:
                return problem
            tried.append(f"{server}: TLS failed ({_reason(exc)})")
        except OSError as exc:
            tried.append(f"{server}: {_socket_reason(exc, timeout_s)}")
    scheme = f", {config.security_protocol}" if config.tls is not None or config.sasl is not None else ""
    return BrokerProblem(f"kafka.bootstrap_servers: no broker answered{scheme} ({'; '.join(tried)})", fatal=False)


def check_broker(config: KafkaConfig, timeout_s: float = 5.0) -> None:
    """Raise ``BrokerUnreachable`` (one line) unless a broker answers: for commands that fail fast."""
    problem = diagnose(config, timeout_s)
    if problem is not None:
        raise BrokerUnreachable(problem.message)


def split_server(server: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too; no port: 9092)."""
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit() or (host.count(":") and not host.startswith("[")):
        return server.strip("[]"), 9092
    return host.strip("[]"), int(port)


def warn_inline_secrets(config: KafkaConfig) -> None:
    """Inline secrets work (the config file is then a secret itself) but are named once at start;
    ``{file: PATH}`` or ``{env: NAME}`` keep the password out of the file."""
    for key in config.inline_secrets():
        log.warning("%s is written in the config file itself: prefer {file: PATH} or {env: NAME}", key)


def quiet_client_logs(level: str) -> None:
    """kafka-python logs each failed connection attempt at ERROR, with tracebacks, many times a second
    while a broker is away. Vigil reports outages itself (one line per episode), so the library's
    own lines are shown only when debugging."""
    logging.getLogger("kafka").setLevel(logging.WARNING if level == "debug" else logging.CRITICAL)


def _ask(host: str, port: int, context: ssl.SSLContext | None, timeout_s: float) -> None:
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        sock: socket.socket = context.wrap_socket(raw, server_hostname=host) if context is not None else raw
        try:
            sock.sendall(_PROBE)
            header = _read(sock, 4)
            _read(sock, struct.unpack(">i", header)[0])
        finally:
            if sock is not raw:
                sock.close()


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("closed the connection without answering")
        data += chunk
    return data


def _verify_failed(tls: TlsConfig | None, server: str, exc: ssl.SSLCertVerificationError) -> str:
    detail = exc.verify_message or _reason(exc)
    if exc.verify_code in _NAME_MISMATCH:
        return f"kafka.tls.check_hostname: {server}: certificate verify failed ({detail})"
    ca_file = tls.ca_file if tls is not None else None
    source = str(ca_file) if ca_file is not None else "(not set: the system's trusted CAs)"
    return f"kafka.tls.ca_file: {source}: certificate verify failed ({detail}) for {server}"


def _tls_refused(tls: TlsConfig | None, server: str, exc: ssl.SSLError) -> BrokerProblem | None:
    """The broker refused our side of the handshake: a client certificate it requires or rejects."""
    reason = str(exc.reason or "").upper()
    has_cert = tls is not None and tls.cert_file is not None
    if "CERTIFICATE_REQUIRED" in reason or ("HANDSHAKE_FAILURE" in reason and not has_cert):
        return BrokerProblem(f"kafka.tls.cert_file: {server} requires a client certificate ({_reason(exc)})", True)
    if has_cert and any(word in reason for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return BrokerProblem(f"kafka.tls.cert_file: {server} rejected the client certificate ({_reason(exc)})", True)
    return None


def _socket_reason(exc: OSError, timeout_s: float) -> str:
    if isinstance(exc, socket.gaierror):
        return "host name not resolved"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {timeout_s:g}s"
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__


def wait_for_broker(config: KafkaConfig, stop: threading.Event, max_interval_s: float = 30.0) -> bool:
    """Block until a broker answers (True) or ``stop`` is set (False), for services that may start
    before their broker: one warning when the wait starts, one line when it ends. A problem that
    waiting cannot fix (the broker refuses our certificate or we refuse its) raises ``BrokerUnreachable``."""
    started = time.monotonic()
    delay = 1.0
    waiting = False
    while not stop.is_set():
        problem = diagnose(config, timeout_s=min(5.0, config.request_timeout))
        if problem is None:
            if waiting:
                log.info("broker answers after %.0fs of waiting", time.monotonic() - started)
            return True
        if problem.fatal:
            raise BrokerUnreachable(problem.message)
        if not waiting:
            log.warning("%s: waiting for a broker (retrying up to every %.0fs)", problem.message, max_interval_s)
            waiting = True
        stop.wait(delay)
        delay = min(delay * 2, max_interval_s)
    return False
