"""The email notifier against a real SMTP server on 127.0.0.1: aiosmtpd, in-process, with STARTTLS on a
certificate from a throwaway CA (trustme) and AUTH (PLAIN/LOGIN, offered only after STARTTLS).

The server's handler can be told to refuse a recipient (550) or defer the data (451), so each SMTP
reply class meets the notifier for real.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from vigil.alerting.notifiers import EmailNotifier, EmailNotifierConfig

from tests.notifier_fixtures import notification

pytestmark = pytest.mark.integration
USER, PASSWORD = "vigil", "s3cret-pw"


@dataclass
class Sink:
    """aiosmtpd handler: keeps each message with how it arrived; optional scripted refusals."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    refuse_rcpt: str = ""  # e.g. "550 5.1.1 mailbox unavailable"
    defer_data: str = ""  # e.g. "451 4.3.0 try again later"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.defer_data:
            return self.defer_data
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(envelope.content, policy=email.policy.default),
                "tls": session.ssl is not None,
                "auth": session.authenticated,
            }
        )
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    # aiosmtpd 1.4 cannot bind port 0: its start() connects to the configured port to check readiness
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SmtpServer:
    port: int
    sink: Sink
    ca_file: Path

    def config(self, **overrides: Any) -> EmailNotifierConfig:
        fields: dict[str, Any] = {
            "type": "email",
            "host": "127.0.0.1",
            "port": self.port,
            "sender": "Vigil <vigil@example.test>",
            "to": ["oncall@example.test", "Team Lead <lead@example.test>"],
            "username": USER,
            "password": PASSWORD,
            "ca_file": self.ca_file,
            "timeout": "5s",
        }
        return EmailNotifierConfig.model_validate(fields | overrides)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


def _serve(sink: Sink, ca: tuple[trustme.CA, Path], tls: bool) -> Iterator[SmtpServer]:
    authority, ca_file = ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    port = free_port()
    options: dict[str, Any] = {"tls_context": context, "require_starttls": True} if tls else {}
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=tls,
        ready_timeout=10.0,
        **options,
    )
    controller.start()
    try:
        yield SmtpServer(port, sink, ca_file)
    finally:
        controller.stop()


@pytest.fixture
def smtp(ca: tuple[trustme.CA, Path]) -> Iterator[SmtpServer]:
    yield from _serve(Sink(), ca, tls=True)


def parts(message: Message) -> dict[str, str]:
    return {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.walk() if not p.is_multipart()}


def test_delivers_over_starttls_with_auth_to_every_recipient(smtp: SmtpServer) -> None:
    n = notification(summary="node-07: GPU 3 <fell> off the bus & stalled llama-70b")
    result = EmailNotifier(smtp.config()).send(n)
    assert result.outcome == "delivered", result.reason
    (got,) = smtp.sink.messages
    assert got["tls"] and got["auth"]
    assert got["from"] == "vigil@example.test"
    assert got["to"] == ["oncall@example.test", "lead@example.test"]
    message = got["message"]
    assert message["Subject"] == "[CRITICAL] node-07: GPU 3 <fell> off the bus & stalled llama-70b"
    assert message["X-Vigil-Dedup-Key"] == n.dedup_key
    body = parts(message)
    assert set(body) == {"text/plain", "text/html"}
    assert "Affected: node node-07" in body["text/plain"] and "GpuXidFatal" in body["text/plain"]
    assert "https://runbooks.example.com/xid-79" in body["text/plain"]
    assert "GPU 3 &lt;fell&gt; off the bus &amp; stalled" in body["text/html"]  # escaped, not markup
    assert "<a href='https://vigil.example.com/incidents/inc-42'>Incident</a>" in body["text/html"]


def test_resolve_threads_with_its_trigger(smtp: SmtpServer) -> None:
    notifier = EmailNotifier(smtp.config())
    assert notifier.send(notification()).outcome == "delivered"
    assert notifier.send(notification(action="resolve", reason="resolved")).outcome == "delivered"
    trigger, resolve = (m["message"] for m in smtp.sink.messages)
    # the stdlib may fold a long Subject right after "Subject:"; unfolding leaves a space mail clients trim
    assert resolve["Subject"].strip().startswith("[RESOLVED] node-07")
    assert trigger["References"] == resolve["References"]
    assert trigger["Message-ID"] != resolve["Message-ID"]


def test_bad_password_is_permanent(smtp: SmtpServer) -> None:
    result = EmailNotifier(smtp.config(password="wrong")).send(notification())
    assert result.outcome == "permanent" and "authentication failed: 535" in result.reason
    assert smtp.sink.messages == []


def test_server_down_is_retryable(smtp: SmtpServer) -> None:
    result = EmailNotifier(smtp.config(port=free_port())).send(notification())
    assert result.outcome == "retryable" and "ConnectionRefusedError" in result.reason


def test_untrusted_certificate_is_permanent_unless_verification_is_off(smtp: SmtpServer) -> None:
    untrusted = EmailNotifier(smtp.config(ca_file=None)).send(notification())  # system CAs only
    assert untrusted.outcome == "permanent" and "certificate" in untrusted.reason
    assert EmailNotifier(smtp.config(ca_file=None, verify=False)).send(notification()).outcome == "delivered"


@pytest.mark.parametrize(
    ("script", "outcome", "code"),
    [
        ({"defer_data": "451 4.3.0 try again later"}, "retryable", "451"),
        ({"refuse_rcpt": "550 5.1.1 no such user"}, "permanent", "550"),
    ],
)
def test_smtp_reply_classes(smtp: SmtpServer, script: dict[str, str], outcome: str, code: str) -> None:
    for name, value in script.items():
        setattr(smtp.sink, name, value)
    result = EmailNotifier(smtp.config()).send(notification())
    assert result.outcome == outcome and code in result.reason
    assert smtp.sink.messages == []


def test_server_without_starttls_is_permanent_when_tls_is_required(ca: tuple[trustme.CA, Path]) -> None:
    for plain in _serve(Sink(), ca, tls=False):
        result = EmailNotifier(plain.config(username=None, password=None)).send(notification())
        assert result.outcome == "permanent" and "STARTTLS" in result.reason
        cleartext = plain.config(username=None, password=None, starttls=False)
        assert EmailNotifier(cleartext).send(notification()).outcome == "delivered"  # a relay on a trusted net
        assert not plain.sink.messages[0]["tls"]
