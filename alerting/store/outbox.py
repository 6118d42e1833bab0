"""The notification outbox, the notification log and retention's deletes.

Outbox rows are written in the same transaction as the state change that caused them; each
receiver's worker sends its due rows and marks them delivered or failed (with a log entry) only
after the receiver answered. Rows of one dedup key leave in order: a row waits while an older row
of the same key for the same receiver is pending, so a resolve never overtakes its trigger.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.orm import aliased
from vigil.alerting.store.base import StoreBase, dumps
from vigil.alerting.store.schema import alert_history, alerts, notification_log, outbox


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    key: str
    notifier: str
    reason: str
    payload: dict[str, Any]
    created_at: float
    attempts: int
    next_attempt_at: float
    state: str
    last_error: str | None
    incident_id: int | None = None


def _outbox_from_row(row: Any) -> OutboxRow:
    return OutboxRow(
        id=row.id,
        key=row.key,
        notifier=row.notifier,
        reason=row.reason,
        payload=json.loads(row.payload),
        created_at=row.created_at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        state=row.state,
        last_error=row.last_error,
        incident_id=row.incident_id,
    )


@dataclass(frozen=True, slots=True)
class Enqueue:
    key: str
    notifier: str
    reason: str
    payload: dict[str, Any]
    incident_id: int | None = None


class OutboxRows(StoreBase):
    def enqueue(
        self, key: str, notifier: str, reason: str, payload: dict[str, Any], now: float, incident_id: int | None = None
    ) -> int:
        return self._insert(insert(outbox), _row(Enqueue(key, notifier, reason, payload, incident_id), now))

    def enqueue_many(self, items: Sequence[Enqueue], now: float) -> None:
        """Queue notifications and log each as ``queued``, in the current transaction."""
        if items:
            self._write(insert(outbox), [_row(item, now) for item in items])
            self.log_many([(i.key, i.notifier, i.reason, "queued", i.incident_id) for i in items], now)

    def due(self, now: float, limit: int, notifier: str) -> list[OutboxRow]:
        """One receiver's pending rows whose time has come, fewest attempts then oldest first; a row
        waits while an older row of the same key for the same receiver is pending."""
        older = aliased(outbox)
        blocked = exists().where(
            and_(
                older.c.state == "pending",
                older.c.key == outbox.c.key,
                older.c.notifier == outbox.c.notifier,
                older.c.id < outbox.c.id,
            )
        )
        query = (
            select(outbox)
            .where(
                outbox.c.notifier == notifier, outbox.c.state == "pending", outbox.c.next_attempt_at <= now, ~blocked
            )
            .order_by(outbox.c.attempts, outbox.c.id)
            .limit(limit)
        )
        return [_outbox_from_row(r) for r in self._read(query)]

    def orphans(self, notifiers: set[str]) -> list[OutboxRow]:
        """Pending rows for a notifier not in ``notifiers`` (removed from the config since)."""
        query = select(outbox).where(outbox.c.state == "pending", outbox.c.notifier.not_in(sorted(notifiers)))
        return [_outbox_from_row(r) for r in self._read(query.order_by(outbox.c.id))]

    def outbox(self, state: str | None = None) -> list[OutboxRow]:
        query = select(outbox).order_by(outbox.c.id)
        if state is not None:
            query = query.where(outbox.c.state == state)
        return [_outbox_from_row(r) for r in self._read(query)]

    def next_due_at(self, notifier: str) -> float | None:
        query = select(func.min(outbox.c.next_attempt_at)).where(
            outbox.c.notifier == notifier, outbox.c.state == "pending"
        )
        value = self._scalar(query)
        return float(value) if value is not None else None

    def pending_count(self) -> int:
        return int(self._scalar(select(func.count()).select_from(outbox).where(outbox.c.state == "pending")) or 0)

    def pending_by_notifier(self) -> dict[str, tuple[int, float]]:
        """Notifier -> (rows pending, created_at of its oldest pending row)."""
        stmt = (
            select(outbox.c.notifier, func.count(), func.min(outbox.c.created_at))
            .where(outbox.c.state == "pending")
            .group_by(outbox.c.notifier)
        )
        return {str(name): (int(n), float(oldest)) for name, n, oldest in self._read(stmt)}

    def finish(self, row: OutboxRow, state: str, error: str | None, now: float) -> None:
        """Mark a row delivered or failed and record it in the notification log, atomically."""
        with self.transaction():
            self._write(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(state=state, attempts=outbox.c.attempts + 1, last_error=error)
            )
            self.log(row.key, row.notifier, row.reason, state, now, row.incident_id)

    def reschedule(self, row: OutboxRow, next_attempt_at: float, error: str) -> None:
        self._write(
            update(outbox)
            .where(outbox.c.id == row.id)
            .values(attempts=outbox.c.attempts + 1, next_attempt_at=next_attempt_at, last_error=error)
        )

    # ------------------------------------------------------------------ notification log

    def log(
        self, key: str, notifier: str, reason: str, status: str, now: float, incident_id: int | None = None
    ) -> None:
        self.log_many([(key, notifier, reason, status, incident_id)], now)

    def log_many(self, entries: Sequence[tuple[str, str, str, str, int | None]], now: float) -> None:
        if entries:
            rows = [
                {"key": k, "notifier": n, "reason": r, "status": s, "incident_id": i, "sent_at": now}
                for k, n, r, s, i in entries
            ]
            self._write(insert(notification_log), rows)

    def notification_log(self, key: str | None = None, incident_id: int | None = None) -> list[dict[str, Any]]:
        cols = (
            notification_log.c.key,
            notification_log.c.incident_id,
            notification_log.c.notifier,
            notification_log.c.reason,
            notification_log.c.status,
            notification_log.c.sent_at,
        )
        query = select(*cols).order_by(notification_log.c.id)
        if key is not None:
            query = query.where(notification_log.c.key == key)
        if incident_id is not None:
            query = query.where(notification_log.c.incident_id == incident_id)
        return [dict(r._mapping) for r in self._read(query)]

    # ------------------------------------------------------------------ retention

    def prune_outbox(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` delivered or failed rows created before ``before``; pending rows stay."""
        ids = select(outbox.c.id).where(outbox.c.state.in_(("delivered", "failed")), outbox.c.created_at < before)
        return int(self._write(delete(outbox).where(outbox.c.id.in_(ids.limit(limit).scalar_subquery()))))

    def prune_notification_log(self, before: float, limit: int) -> int:
        ids = select(notification_log.c.id).where(notification_log.c.sent_at < before).limit(limit)
        return int(self._write(delete(notification_log).where(notification_log.c.id.in_(ids.scalar_subquery()))))

    def prune_history(self, before: float, limit: int) -> int:
        ids = select(alert_history.c.id).where(alert_history.c.at < before).limit(limit)
        return int(self._write(delete(alert_history).where(alert_history.c.id.in_(ids.scalar_subquery()))))

    def prune_resolved(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` alerts resolved (last changed) before ``before``, except one whose
        state is not yet published or whose notification (its incident's) is still to be sent."""
        pending = exists().where(
            outbox.c.state == "pending",
            (outbox.c.key == alerts.c.fingerprint) | (outbox.c.incident_id == alerts.c.incident_id),
        )
        ids = (
            select(alerts.c.fingerprint)
            .where(
                alerts.c.status == "resolved",
                alerts.c.updated_at < before,
                alerts.c.published_version >= alerts.c.version,
                ~pending,
            )
            .limit(limit)
        )
        with self.transaction():
            deleted = int(self._write(delete(alerts).where(alerts.c.fingerprint.in_(ids.scalar_subquery()))))
            if deleted:
                self._changed()
        return deleted


def _row(item: Enqueue, now: float) -> dict[str, Any]:
    return {
        "key": item.key,
        "incident_id": item.incident_id,
        "notifier": item.notifier,
        "reason": item.reason,
        "payload": dumps(item.payload),
        "created_at": now,
        "next_attempt_at": now,
    }
