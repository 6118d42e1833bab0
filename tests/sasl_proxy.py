"""A SASL front for the embedded broker, for contract tests of what kafka-python sends.

Tansu 0.6 answers SaslHandshake for SCRAM-SHA-256/512, but cannot authenticate anyone: its
``tansu user create`` needs an unauthenticated broker and the S3 and memory storage engines do not
keep the credentials (only PostgreSQL storage would, and this build refuses it); PLAIN it does not
offer at all. So this proxy plays the broker's side of SASL by the Kafka protocol (KIP-43/KIP-152:
SaslHandshake v1, then SaslAuthenticate frames; SCRAM per RFC 5802/7677 checked by ``scramp``, PLAIN
per RFC 4616) and forwards every other request to a real Tansu, which advertises the proxy's port.
A client that sends anything but ApiVersions before authenticating is disconnected, as a real
broker does. It records each exchange so tests can check what the client sent.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field

import scramp
from kafka.protocol.sasl import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58


@dataclass
class Exchange:
    """What one client connection sent and how it ended."""

    mechanism: str = ""
    messages: list[bytes] = field(default_factory=list)  # the client's SASL tokens, in order
    user: str = ""
    authenticated: bool = False
    refused: str = ""  # why the proxy ended the connection, if it did


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> bytes | None:
    size = _read_exact(sock, 4)
    return None if size is None else _read_exact(sock, struct.unpack(">i", size)[0])


class SaslProxy:
    def __init__(self, port: int, upstream_port: int, users: dict[str, str]) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.users = users
        self.exchanges: list[Exchange] = []
        self._scram = {m: scramp.ScramMechanism(m) for m in MECHANISMS if m.startswith("SCRAM")}
        self._server = socket.create_server(("127.0.0.1", port))
        self._server.settimeout(0.2)  # accept() wakes to see stop()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="sasl-proxy", daemon=True)

    def start(self) -> SaslProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._thread.join(5)
        self._server.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        exchange = Exchange()
        self.exchanges.append(exchange)
        upstream: socket.socket | None = None
        lock = threading.Lock()
        scram: scramp.ScramMechanism | None = None
        server: object = None
        try:
            while (frame := _read_frame(client)) is not None:
                api_key, version = struct.unpack(">hh", frame[:4])
                if api_key == SASL_HANDSHAKE:
                    request = SaslHandshakeRequest.decode(frame, version=version, header=True)
                    exchange.mechanism = request.mechanism
                    ok = request.mechanism in MECHANISMS
                    scram = self._scram.get(request.mechanism)
                    reply = SaslHandshakeResponse[version](
                        error_code=0 if ok else UNSUPPORTED_SASL_MECHANISM, mechanisms=list(MECHANISMS)
                    )
                    self._send(client, lock, reply, request.header.correlation_id)
                elif api_key == SASL_AUTHENTICATE:
                    request = SaslAuthenticateRequest.decode(frame, version=version, header=True)
                    exchange.messages.append(bytes(request.auth_bytes))
                    answer, error, server = self._authenticate(exchange, scram, server, bytes(request.auth_bytes))
                    fields = {"error_code": SASL_AUTHENTICATION_FAILED if error else 0, "error_message": error or None}
                    if version >= 1:
                        fields["session_lifetime_ms"] = 0
                    reply = SaslAuthenticateResponse[version](auth_bytes=answer, **fields)
                    self._send(client, lock, reply, request.header.correlation_id)
                    if error:
                        exchange.refused = error
                        return
                elif api_key != API_VERSIONS and not exchange.authenticated:
                    exchange.refused = f"api key {api_key} before authentication"
                    return
                else:
                    if upstream is None:
                        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                        threading.Thread(target=self._relay, args=(upstream, client, lock), daemon=True).start()
                    upstream.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def _authenticate(
        self, exchange: Exchange, scram: scramp.ScramMechanism | None, server: object, token: bytes
    ) -> tuple[bytes, str, object]:
        """(answer, error or "", SCRAM server state) for one SaslAuthenticate token."""
        if scram is None:  # PLAIN: authzid NUL authcid NUL password
            _, user, password = token.decode().split("\0")
            exchange.user = user
            exchange.authenticated = self.users.get(user) == password
            return b"", "" if exchange.authenticated else "Authentication failed: invalid credentials", None
        try:
            if server is None:
                exchange.user = token.decode().split("n=", 1)[1].split(",", 1)[0]
                password = self.users.get(exchange.user, "")
                info = scram.make_auth_info(password, iteration_count=4096)
                server = scram.make_server(lambda _user: info)
                server.set_client_first(token.decode())  # type: ignore[attr-defined]
                return server.get_server_first().encode(), "", server  # type: ignore[attr-defined]
            server.set_client_final(token.decode())  # type: ignore[attr-defined]  # checks the proof
            exchange.authenticated = exchange.user in self.users
            return server.get_server_final().encode(), "", server  # type: ignore[attr-defined]
        except scramp.ScramException as exc:
            # Apache Kafka's own wording for a failed SCRAM login
            error = "Authentication failed during authentication due to invalid credentials with SASL mechanism"
            error += f" {exchange.mechanism}"
            return b"", f"{error} ({exc})", server

    def _send(self, client: socket.socket, lock: threading.Lock, reply: object, correlation_id: int) -> None:
        reply.with_header(correlation_id=correlation_id)  # type: ignore[attr-defined]
        data = bytes(reply.encode(framed=True, header=True))  # type: ignore[attr-defined]
        with lock:
            client.sendall(data)

    def _relay(self, upstream: socket.socket, client: socket.socket, lock: threading.Lock) -> None:
        try:
            while chunk := upstream.recv(65536):
                with lock:
                    client.sendall(chunk)
        except OSError:
            pass
