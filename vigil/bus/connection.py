"""Reaching the brokers: the one place that turns ``KafkaConfig`` into kafka-python's connection
settings (TLS, SASL), and that says in one line why no broker answers.

Every producer, consumer and admin client (services, agent, training SDK, benchmarks, the chaos
read-back, the ``vigil up`` watcher) gets its ``bootstrap_servers``, ``security_protocol``,
``ssl_context`` and ``sasl_*`` from :func:`client_settings`, so a setting added here reaches all of
them. The TLS context is built here too, not by kafka-python, so that a missing or unreadable file
fails at start naming its key, and :func:`diagnose` can use the very same context.

:func:`diagnose` is what a person needs when nothing works: it connects to each bootstrap server
itself (TCP, the TLS handshake, one ApiVersions request, the SASL login) and answers with one line
that names the config key and what each server said, instead of kafka-python's retry log and a
traceback.
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

from kafka.net.sasl import get_sasl_mechanism
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse
from kafka.protocol.sasl import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

from vigil.config import KafkaConfig, TlsConfig
from vigil.errors import ConfigError, VigilError

log = logging.getLogger(__name__)

_NAME_MISMATCH = (62, 64)  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


class _Refused(Exception):
    """The broker answered but refused the login: not a transport problem, and not retried here."""


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
    settings.update(_sasl_settings(config))
    return settings


def _sasl_settings(config: KafkaConfig) -> dict[str, Any]:
    if config.sasl is None:
        return {}
    return {
        "sasl_mechanism": config.sasl.mechanism,
        "sasl_plain_username": config.sasl.username,
        "sasl_plain_password": config.sasl.password.reveal(),
    }


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
        except ssl.SSLError as exc:  # before OSError, of which it is a kind: the files were read
            key = "key_password" if tls.key_password is not None else "cert_file"
            raise ConfigError(
                f"kafka.tls.{key}: cannot load the client certificate and key ({_reason(exc)}; "
                "a PEM certificate, its key, and the key's password if it is encrypted)"
            ) from exc
        except OSError as exc:
            missing = tls.key_file if tls.key_file and not tls.key_file.exists() else tls.cert_file
            key = "key_file" if missing == tls.key_file else "cert_file"
            raise ConfigError(f"kafka.tls.{key}: {missing}: {_reason(exc)}") from exc
    return context


def diagnose(config: KafkaConfig, timeout_s: float = 5.0) -> BrokerProblem | None:
    """None when some bootstrap server answers a Kafka request (over TLS with ``kafka.tls``) and accepts
    the login of ``kafka.sasl``; else the problem, in one line naming the key."""
    tls = config.tls
    context = ssl_context(tls) if tls is not None else None
    tried: list[str] = []
    for server in config.bootstrap_servers:
        try:
            _ask(server, config, context, timeout_s)
            return None
        except _Refused as exc:
            return BrokerProblem(str(exc), fatal=True)
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


def _ask(server: str, config: KafkaConfig, context: ssl.SSLContext | None, timeout_s: float) -> None:
    """ApiVersions, then (with ``kafka.sasl``) the SASL exchange kafka-python would make; raises
    ``OSError``/``ssl.SSLError`` for the transport and ``_Refused`` for a login the broker refuses."""
    host, port = split_server(server)
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        sock: socket.socket = context.wrap_socket(raw, server_hostname=host) if context is not None else raw
        try:
            try:
                _call(sock, ApiVersionsRequest[0](), ApiVersionsResponse, 0, 1)
            except (ssl.SSLError, ConnectionResetError) as exc:
                if context is not None:  # the handshake passed: the broker ended the session after it
                    _after_handshake(config.tls, server, exc)
                raise
            if config.sasl is not None:
                _login(sock, server, host, config)
        finally:
            if sock is not raw:
                sock.close()


def _after_handshake(tls: TlsConfig | None, server: str, exc: OSError) -> None:
    """With TLS 1.3 the server checks our certificate after the handshake has completed on our side:
    its refusal arrives as an alert (or, in a race, a bare end of the session) on the first read."""
    problem = _tls_refused(tls, server, exc) if isinstance(exc, ssl.SSLError) else None
    if problem is not None:
        raise _Refused(problem.message)
    if tls is not None and tls.cert_file is None:
        raise _Refused(
            f"kafka.tls.cert_file: {server} requires a client certificate (it ended the TLS session "
            f"without answering: {_reason(exc)})"
        )


def _login(sock: socket.socket, server: str, host: str, config: KafkaConfig) -> None:
    sasl = config.sasl
    if sasl is None:
        return
    offered = _call(sock, SaslHandshakeRequest[1](mechanism=sasl.mechanism), SaslHandshakeResponse, 1, 2)
    if offered.error_code:
        mechanisms = ", ".join(offered.mechanisms) or "none"
        raise _Refused(f"kafka.sasl.mechanism: {server} does not offer {sasl.mechanism} (it offers {mechanisms})")
    # kafka-python's own mechanism code, so the probe sends exactly what the clients will.
    settings = _sasl_settings(config) | {"security_protocol": config.security_protocol}
    mechanism = get_sasl_mechanism(sasl.mechanism)(host=host, **settings)
    refused = f"kafka.sasl: {server} refused {sasl.username!r} ({sasl.mechanism})"
    for correlation in range(3, 10):
        if mechanism.is_done():
            return
        request = SaslAuthenticateRequest[1](auth_bytes=mechanism.auth_bytes())
        answer = _call(sock, request, SaslAuthenticateResponse, 1, correlation)
        if answer.error_code:
            raise _Refused(f"{refused}: {answer.error_message or 'authentication failed'}")
        try:
            mechanism.receive(answer.auth_bytes)
        except (ValueError, KeyError) as exc:  # a server-final message without a valid signature
            raise _Refused(f"{refused}: the broker's answer does not prove it knows the password ({exc})") from exc
    raise _Refused(f"{refused}: the exchange did not finish")


def _call(sock: socket.socket, request: Any, response: Any, version: int, correlation: int) -> Any:
    request.with_header(correlation_id=correlation, client_id="vigil-probe")
    sock.sendall(bytes(request.encode(framed=True, header=True)))
    size = struct.unpack(">i", _read(sock, 4))[0]
    return response.decode(_read(sock, size), version=version, header=True)


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
