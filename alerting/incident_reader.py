"""Read-only queries behind the incident API and the web UI: incidents by priority behind a cursor, one
incident's members and timeline, silences, tokens, and each receiver's outbox figures.

Same rules as :class:`~vigil.alerting.reader.AlertReader` (which this extends): one connection per
thread of the API's pool, reads that never wait for the service's writes.

Incidents come most urgent first: priority (GPU-hours at risk) descending, then newest (id
descending); the cursor is the position after a page's last incident, so incidents that open while
a client pages never shift or repeat the later pages (one whose priority changes may move).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from vigil.alerting.model import Incident, Member, Silence, TimelineEntry
from vigil.alerting.reader import AlertReader
from vigil.alerting.store.alerts import ALERT_COLUMNS, alert_from_row
from vigil.alerting.store.incidents import incident_from_row
from vigil.alerting.store.records import silence_from_row
from vigil.alerting.store.schema import (
    alerts,
    api_tokens,
    incident_events,
    incident_members,
    incidents,
    notification_log,
    outbox,
    silences,
)
from vigil.alerting.store.tokens import token_from_row
from vigil.alerting.tokens import ApiToken

from vigil.events import Alert


@dataclass(frozen=True, slots=True)
class IncidentPosition:
    """Where a page of incidents ends: the last one's priority and id."""

    priority: float
    id: int

    def cursor(self) -> str:
        return base64.urlsafe_b64encode(f"{self.priority!r}|{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, cursor: str) -> IncidentPosition:
        """Raises ``ValueError`` for anything :meth:`cursor` did not make."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            priority, ident = raw.split("|")
            position = cls(float(priority), int(ident))
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"not a cursor this API issued: {cursor!r}") from exc
        if not math.isfinite(position.priority) or position.id < 0:
            raise ValueError(f"not a cursor this API issued: {cursor!r}")
        return position


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    states: tuple[str, ...] = ()  # none: every state
    min_priority: float | None = None
    domain: str | None = None  # a kind ("node") or one domain ("node:node-07")
    severity: str | None = None


@dataclass(frozen=True, slots=True)
class IncidentPage:
    incidents: list[Incident]
    next: IncidentPosition | None  # None: this is the last page


@dataclass(frozen=True, slots=True)
class MemberView:
    """An incident's member and its alert as stored now (None once retention pruned it)."""

    member: Member
    alert: Alert | None
    muted: str | None


@dataclass(frozen=True, slots=True)
class ReceiverFigures:
    """One notifier's outbox, as the store has it."""

    pending: int = 0
    oldest_pending_at: float | None = None
    next_attempt_at: float | None = None
    last_delivered_at: float | None = None
    last_error: str | None = None
    last_error_state: str | None = None  # pending (being retried) or failed


class IncidentReader(AlertReader):
    def incidents_page(self, where: IncidentFilter, limit: int, after: IncidentPosition | None) -> IncidentPage:
        query = select(incidents)
        if where.states:
            query = query.where(incidents.c.state.in_(where.states))
        if where.min_priority is not None:
            query = query.where(incidents.c.priority >= where.min_priority)
        if where.severity is not None:
            query = query.where(incidents.c.severity == where.severity)
        if where.domain:
            if ":" in where.domain:
                query = query.where(incidents.c.domain == where.domain)
            else:  # a kind: every domain key "kind:..." (a range, so the index serves it)
                query = query.where(incidents.c.domain >= f"{where.domain}:", incidents.c.domain < f"{where.domain};")
        if after is not None:
            query = query.where(
                or_(
                    incidents.c.priority < after.priority,
                    and_(incidents.c.priority == after.priority, incidents.c.id < after.id),
                )
            )
        query = query.order_by(incidents.c.priority.desc(), incidents.c.id.desc()).limit(limit + 1)
        rows = self._rows(query)  # one more than asked: is there a next page?
        found = [incident_from_row(r) for r in rows[:limit]]
        last = found[-1] if len(rows) > limit else None
        return IncidentPage(found, IncidentPosition(last.priority, last.id) if last is not None else None)

    def incident(self, incident_id: int) -> Incident | None:
        rows = self._rows(select(incidents).where(incidents.c.id == incident_id))
        return incident_from_row(rows[0]) if rows else None

    def members(self, incident_id: int) -> list[MemberView]:
        joined = incident_members.outerjoin(alerts, alerts.c.fingerprint == incident_members.c.fingerprint)
        query = (
            select(
                incident_members.c.fingerprint.label("member_fp"),
                incident_members.c.joined_at,
                incident_members.c.role.label("member_role"),
                alerts.c.muted,
                *ALERT_COLUMNS,
            )
            .select_from(joined)
            .where(incident_members.c.incident_id == incident_id)
            .order_by(incident_members.c.joined_at, incident_members.c.fingerprint)
        )
        out = []
        for row in self._rows(query):
            member = Member(incident_id, row.member_fp, row.joined_at, row.member_role)
            alert = alert_from_row(row) if row.fingerprint is not None else None
            out.append(MemberView(member, alert, row.muted))
        return out

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        query = select(incident_events).where(incident_events.c.incident_id == incident_id)
        rows = self._rows(query.order_by(incident_events.c.id))
        return [TimelineEntry(r.incident_id, r.at, r.kind, r.actor, json.loads(r.detail), r.id) for r in rows]

    def silences(self) -> list[Silence]:
        """Every silence, expired ones included (kept for audit), newest first."""
        return [silence_from_row(r) for r in self._rows(select(silences).order_by(silences.c.created_at.desc()))]

    def silence(self, silence_id: str) -> Silence | None:
        rows = self._rows(select(silences).where(silences.c.id == silence_id))
        return silence_from_row(rows[0]) if rows else None

    def tokens(self) -> list[ApiToken]:
        rows = self._rows(select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.prefix))
        return [token_from_row(r) for r in rows]

    def receiver_figures(self, names: Sequence[str]) -> dict[str, ReceiverFigures]:
        """Pending rows, last delivery and last error of each notifier: a few grouped queries."""
        pending = select(
            outbox.c.notifier, func.count(), func.min(outbox.c.created_at), func.min(outbox.c.next_attempt_at)
        ).where(outbox.c.state == "pending")
        counts = {r[0]: (int(r[1]), r[2], r[3]) for r in self._rows(pending.group_by(outbox.c.notifier))}
        delivered = select(notification_log.c.notifier, func.max(notification_log.c.sent_at))
        delivered = delivered.where(notification_log.c.status == "delivered").group_by(notification_log.c.notifier)
        last_ok = {r[0]: r[1] for r in self._rows(delivered)}
        out: dict[str, ReceiverFigures] = {}
        for name in names:
            error = self._last_error(name)
            count, oldest, due = counts.get(name, (0, None, None))
            out[name] = ReceiverFigures(count, oldest, due, last_ok.get(name), *error)
        return out

    def _last_error(self, notifier: str) -> tuple[str | None, str | None]:
        query = (
            select(outbox.c.last_error, outbox.c.state)
            .where(outbox.c.notifier == notifier, outbox.c.last_error.is_not(None))
            .order_by(outbox.c.id.desc())
            .limit(1)
        )
        rows: list[Any] = self._rows(query)
        return (rows[0].last_error, rows[0].state) if rows else (None, None)
