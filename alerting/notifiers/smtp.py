"""Email over SMTP with the standard library: one message per notification, plain text and HTML.

The session is EHLO, STARTTLS (unless turned off; verified against the system CAs or ``ca_file``),
EHLO again, AUTH when a username is set, then the message to every recipient. Outcomes follow SMTP's
own reply classes: 4xx is transient and a dropped or refused connection may come back (retryable);
5xx is permanent, and so is a failed login or a server that lacks STARTTLS or AUTH, since retrying
cannot fix configuration. Every message about one incident carries the same ``References`` header,
so mail clients thread the trigger, the acknowledge and the resolve together.
"""

from __future__ import annotations

import hashlib
import html
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from vigil.alerting.notifiers.base import DeliveryResult, Notification
from vigil.alerting.notifiers.config import EmailNotifierConfig
from vigil.alerting.notifiers.text import fit

from vigil.clock import Clock, SystemClock

log = logging.getLogger(__name__)
SUBJECT_LIMIT = 200
_WORD = {"acknowledge": "ACKNOWLEDGED", "resolve": "RESOLVED"}


def _message_id(key: str, domain: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def _rows(n: Notification) -> list[tuple[str, str]]:
    rows = [("Severity", n.severity), ("Source", n.source), ("Reason", n.reason), ("Time", n.timestamp.isoformat())]
    if n.domain is not None:
        rows.append(("Affected", f"{n.domain.kind} {n.domain.id}"))
    if n.priority is not None:
        rows.append(("Priority", f"{n.priority:.1f} GPU-hours at risk"))
    rows += [(k, v) for k, v in (("Class", n.class_), ("Component", n.component), ("Group", n.group)) if v]
    rows.append(("Incident", n.incident_id or n.dedup_key))
    rows += [(str(k), str(v)) for k, v in n.custom_details.items() if isinstance(v, str | int | float)]
    return rows


def _members(n: Notification) -> list[str]:
    return [
        f"{m.alertname} ({m.severity}) since {m.starts_at.isoformat()}: "
        + ", ".join(f"{k}={v}" for k, v in sorted(m.labels.items()))
        for m in n.members
    ]


def text_body(n: Notification) -> str:
    lines = [n.summary, ""] + [f"{name}: {value}" for name, value in _rows(n)]
    if n.members:
        lines += ["", f"Alerts ({len(n.members)}):"] + [f"  - {line}" for line in _members(n)]
    if n.links:
        lines += [""] + [f"{link.text or 'Link'}: {link.href}" for link in n.links]
    return "\n".join(lines) + "\n"


def html_body(n: Notification) -> str:
    e = html.escape
    rows = "".join(f"<tr><th align='left'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _rows(n))
    members = "".join(f"<li>{e(line)}</li>" for line in _members(n))
    links = " | ".join(f"<a href='{e(link.href)}'>{e(link.text or link.href)}</a>" for link in n.links)
    return (
        f"<html><body><h2>{e(n.summary)}</h2><table>{rows}</table>"
        + (f"<h3>Alerts ({len(n.members)})</h3><ul>{members}</ul>" if members else "")
        + (f"<p>{links}</p>" if links else "")
        + "</body></html>"
    )


class EmailNotifier:
    def __init__(self, config: EmailNotifierConfig, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        self._domain = parseaddr(config.sender)[1].rpartition("@")[2] or "vigil.local"

    def message(self, n: Notification) -> EmailMessage:
        msg = EmailMessage()
        word = _WORD.get(n.action, n.severity.upper())
        msg["Subject"] = fit(f"[{word}] {n.summary}", SUBJECT_LIMIT)
        msg["From"] = self._config.sender
        msg["To"] = ", ".join(self._config.to)
        msg["Date"] = formatdate(self._clock.now(), usegmt=True)
        # The same notification keeps one Message-ID across retries, so a resend after a lost reply
        # can be recognised as a duplicate; every message of one incident references the same thread.
        identity = "\n".join((n.dedup_key, n.action, n.reason, n.timestamp.isoformat(), n.receiver))
        msg["Message-ID"] = _message_id(identity, self._domain)
        msg["References"] = _message_id(n.dedup_key, self._domain)
        msg["X-Vigil-Dedup-Key"] = n.dedup_key
        msg.set_content(text_body(n))
        msg.add_alternative(html_body(n), subtype="html")
        return msg

    def send(self, notification: Notification) -> DeliveryResult:
        msg = self.message(notification)
        try:
            refused = self._deliver(msg)
        except smtplib.SMTPAuthenticationError as exc:
            return DeliveryResult.permanent(f"SMTP authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}")
        except smtplib.SMTPRecipientsRefused as exc:
            return _refused(exc.recipients)
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, bad greeting
            return _by_code(exc.smtp_code, f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}")
        except smtplib.SMTPNotSupportedError as exc:
            return DeliveryResult.permanent(f"SMTP server lacks a required extension: {exc}")
        except ssl.SSLCertVerificationError as exc:
            return DeliveryResult.permanent(f"SMTP server certificate refused: {exc.verify_message}")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:  # refused, reset, timed out, TLS dropped
            return DeliveryResult.retryable(f"SMTP connection: {type(exc).__name__}: {exc}")
        except smtplib.SMTPException as exc:  # e.g. no AUTH mechanism in common: configuration
            return DeliveryResult.permanent(f"SMTP: {exc}")
        if refused:  # some recipients took it; resending would page those twice
            log.warning("email for %s refused by some recipients: %s", notification.dedup_key, refused)
        return DeliveryResult.delivered()

    def _deliver(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        smtp = self._session()
        try:
            return smtp.send_message(msg)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):  # the message was accepted before QUIT failed
                smtp.close()

    def _session(self) -> smtplib.SMTP:
        config = self._config
        smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        try:
            smtp.ehlo()
            if config.starttls:
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if config.username is not None and config.password is not None:
                smtp.login(config.username, config.password.reveal())
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self._config.ca_file) if self._config.ca_file else None)
        if not self._config.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def close(self) -> None:
        return None  # one SMTP session per message: nothing stays open between notifications


def _text(error: bytes | str) -> str:
    return error.decode(errors="replace") if isinstance(error, bytes) else str(error)


def _by_code(code: int, reason: str) -> DeliveryResult:
    return DeliveryResult.retryable(reason) if 400 <= code < 500 else DeliveryResult.permanent(reason)


def _refused(recipients: dict[str, tuple[int, bytes]]) -> DeliveryResult:
    """Every recipient refused: retry if any refusal was transient (4xx), else give up."""
    reason = "recipients refused: " + "; ".join(f"{to}: {code} {_text(msg)}" for to, (code, msg) in recipients.items())
    if any(400 <= code < 500 for code, _ in recipients.values()):
        return DeliveryResult.retryable(reason)
    return DeliveryResult.permanent(reason)
