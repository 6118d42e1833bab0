"""Silences (kept after they expire, for audit) and approvals (a person's yes or no before an action)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, update
from vigil.alerting.matchers import Matcher
from vigil.alerting.model import Silence
from vigil.alerting.store.base import StoreBase, dumps
from vigil.alerting.store.schema import approvals, silences


def silence_from_row(row: Any) -> Silence:
    return Silence(
        id=row.id,
        matchers=tuple(Matcher.from_json(m) for m in json.loads(row.matchers)),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expired_by=row.expired_by,
    )


class RecordRows(StoreBase):
    # ------------------------------------------------------------------ silences

    def save_silence(self, silence: Silence) -> None:
        """Create a silence (or replace one with the same id, Alertmanager's update)."""
        values = {
            "id": silence.id,
            "matchers": dumps([m.to_json() for m in silence.matchers]),
            "starts_at": silence.starts_at,
            "ends_at": silence.ends_at,
            "created_by": silence.created_by,
            "comment": silence.comment,
            "created_at": silence.created_at,
            "updated_at": silence.updated_at or silence.created_at,
            "expired_by": silence.expired_by,
        }
        with self.transaction():
            if self.silence(silence.id) is None:
                self._write(insert(silences), values)
            else:
                self._write(update(silences).where(silences.c.id == silence.id).values(values))

    def silence(self, silence_id: str) -> Silence | None:
        rows = self._read(select(silences).where(silences.c.id == silence_id))
        return silence_from_row(rows[0]) if rows else None

    def silences(self, active_at: float | None = None) -> list[Silence]:
        """Every silence, expired ones included (audit); with ``active_at``, those not yet ended then."""
        query = select(silences).order_by(silences.c.created_at, silences.c.id)
        if active_at is not None:
            query = query.where(silences.c.ends_at > active_at)
        return [silence_from_row(r) for r in self._read(query)]

    def expire_silence(self, silence_id: str, by: str, now: float) -> bool:
        """End a silence now (it is kept, marked with who ended it); False if none was running."""
        found = self.silence(silence_id)
        if found is None or found.ends_at <= now:
            return False
        stmt = update(silences).where(silences.c.id == silence_id)
        self._write(stmt.values(ends_at=max(now, found.starts_at), expired_by=by, updated_at=now))
        return True

    # ------------------------------------------------------------------ approvals

    def request_approval(
        self,
        kind: str,
        subject: str,
        requested_by: str,
        now: float,
        incident_id: int | None = None,
        expires_at: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        values = {
            "incident_id": incident_id,
            "kind": kind,
            "subject": subject,
            "state": "pending",
            "requested_by": requested_by,
            "requested_at": now,
            "expires_at": expires_at,
            "detail": dumps(detail or {}),
        }
        return self._insert(insert(approvals), values)

    def decide_approval(self, approval_id: int, approve: bool, by: str, now: float) -> bool:
        """Approve or reject a pending, unexpired approval; False if it was not pending."""
        stmt = update(approvals).where(approvals.c.id == approval_id, approvals.c.state == "pending")
        stmt = stmt.where((approvals.c.expires_at.is_(None)) | (approvals.c.expires_at > now))
        state = "approved" if approve else "rejected"
        return bool(self._write(stmt.values(state=state, decided_by=by, decided_at=now)))

    def approvals(self, state: str | None = None) -> list[dict[str, Any]]:
        query = select(approvals).order_by(approvals.c.id)
        if state is not None:
            query = query.where(approvals.c.state == state)
        return [{**dict(r._mapping), "detail": json.loads(r.detail)} for r in self._read(query)]
