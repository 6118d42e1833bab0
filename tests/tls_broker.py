"""A real TLS endpoint on loopback: Debian's stunnel terminating TLS in front of a Tansu broker.

Tansu 0.6 has no TLS listener that works (its ``--cert`` and ``--key`` cannot be given together,
and with ``--cert`` alone it never answers a TLS handshake), so stunnel terminates TLS, as a load
balancer or a sidecar would in front of a real cluster. The catch: a Kafka client bootstraps from
the address it is given, then connects to whatever address the broker *advertises* in its metadata.
Tansu must therefore advertise stunnel's port (``--advertised-listener-url``), not its own; else a
client would bootstrap over TLS and then produce in plain TCP straight to Tansu.

Certificates are made per test run with ``trustme`` (a CA, a server certificate for the names given,
a client certificate for mutual TLS). Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

from vigil.broker import free_port, tansu_binary, wait_for_port

STUNNEL = "/usr/bin/stunnel4"


def stunnel_binary() -> str:
    found = shutil.which("stunnel4") or (STUNNEL if Path(STUNNEL).exists() else None)
    if found is None:
        raise RuntimeError("stunnel4 is not installed: `make test` installs it (apt-get install stunnel4)")
    return found


@dataclass(frozen=True)
class Pki:
    """PEM files of one test CA and what it signed."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with ``key_password``
    key_password: str
    other_ca_file: Path  # a CA that signed nothing here: the "wrong CA"


def make_pki(folder: Path, server_names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert(*server_names)
    client = ca.issue_cert("vigil-client@example.com")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    client.cert_chain_pems[0].write_to_path(str(folder / "client.pem"))
    password = "key-pass-42"
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    (folder / "client.key").write_bytes(encrypted)
    return Pki(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
        password,
        folder / "other-ca.pem",
    )


def spawn_tansu(work: Path, port: int, advertised_port: int) -> subprocess.Popen[bytes]:
    """Tansu (memory storage) listening on ``port`` and telling clients to connect to ``advertised_port``
    (the front that stands before it), ready to accept connections."""
    argv = [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}"]
    argv += ["--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port}", "--storage-engine", "memory://tansu/"]
    with (work / "tansu.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, 20, proc)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc


class TlsBroker:
    """Tansu (memory storage) on a private loopback port, reachable only through stunnel's TLS port."""

    def __init__(self, work: Path, pki: Pki, require_client_cert: bool = False) -> None:
        self.work = work
        self.pki = pki
        self.require_client_cert = require_client_cert
        self.tls_port = free_port()
        self.plain_port = free_port()
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.tls_port}"

    def start(self) -> TlsBroker:
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            # Advertising stunnel's port sends every connection through TLS.
            self._procs.append(spawn_tansu(self.work, self.plain_port, self.tls_port))
            config = self.work / "stunnel.conf"
            config.write_text(self._stunnel_config())
            self._spawn([stunnel_binary(), str(config)], "stunnel.log")
            wait_for_port(self.tls_port, 20, self._procs[-1])
        except BaseException:
            self.stop()
            raise
        return self

    def _stunnel_config(self) -> str:
        lines = [
            "foreground = yes",
            "pid =",
            "syslog = no",
            "debug = 4",
            "[kafka]",
            f"accept = 127.0.0.1:{self.tls_port}",
            f"connect = 127.0.0.1:{self.plain_port}",
            f"cert = {self.pki.server_cert}",
            f"key = {self.pki.server_key}",
            "sslVersionMin = TLSv1.2",
        ]
        if self.require_client_cert:
            lines += [f"CAfile = {self.pki.ca_file}", "verifyChain = yes", "requireCert = yes"]
        return "\n".join(lines) + "\n"

    def _spawn(self, argv: list[str], log_name: str) -> None:
        with (self.work / log_name).open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._procs.append(proc)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        self._procs.clear()
