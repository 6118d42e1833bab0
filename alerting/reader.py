"""Read-only access to the alert store for the API: pages of alerts behind a stable cursor, one alert's
stage history, and the version that says whether a cached page is still fresh.

The API's handlers run on uvicorn's thread pool, so each thread gets its own connection (SQLite
connections are not shared between threads; WAL lets them read while the service writes).
``version()`` runs on the event loop for every request, so it is one plain DBAPI query, without
SQLAlchemy's statement layer.

Pages are ordered newest change first (``updated_at`` descending, then fingerprint) and the cursor
is the position after the last alert of a page (keyset pagination): alerts that change or arrive
while a client pages move to the top and never shift or repeat the later pages.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, tuple_
from vigil.alerting.store.alerts import ALERT_COLUMNS, alert_from_row
from vigil.alerting.store.database import Database
from vigil.alerting.store.schema import alert_history, alerts

from vigil.events import Alert

_FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}$")
_VERSION_SQL = "SELECT value FROM meta WHERE key = 'alerts_version'"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends: the last alert's ``updated_at`` and fingerprint."""

    updated_at: float
    fingerprint: str

    def cursor(self) -> str:
        raw = f"{self.updated_at!r}|{self.fingerprint}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, cursor: str) -> Position:
        """Raises ``ValueError`` for anything :meth:`cursor` did not make."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            updated, fp = raw.split("|")
            position = cls(float(updated), fp)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"not a cursor this API issued: {cursor!r}") from exc
        if not _FINGERPRINT.match(position.fingerprint) or not math.isfinite(position.updated_at):
            raise ValueError(f"not a cursor this API issued: {cursor!r}")
        return position


@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: list[Alert]
    next: Position | None  # None: this is the last page


class AlertReader:
    """Read-only queries, safe to call from any number of threads."""

    def __init__(self, target: Database | Path) -> None:
        self.db = Database.sqlite(target, readonly=True) if isinstance(target, Path) else target
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[Any] = []

    def page(self, status: str | None, limit: int, after: Position | None) -> AlertPage:
        query = select(*ALERT_COLUMNS)
        if status is not None:
            query = query.where(alerts.c.status == status)
        if after is not None:
            query = query.where(
                tuple_(alerts.c.updated_at, alerts.c.fingerprint) < (after.updated_at, after.fingerprint)
            )
        query = query.order_by(alerts.c.updated_at.desc(), alerts.c.fingerprint.desc()).limit(limit + 1)
        rows = self._rows(query)  # one more than asked: is there a next page?
        found = [alert_from_row(r) for r in rows[:limit]]
        last = found[-1] if len(rows) > limit else None
        return AlertPage(found, Position(last.updated_at, last.fingerprint) if last is not None else None)

    def get(self, fp: str) -> Alert | None:
        rows = self._rows(select(*ALERT_COLUMNS).where(alerts.c.fingerprint == fp))
        return alert_from_row(rows[0]) if rows else None

    def history(self, fp: str, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` passes of one alert through the pipeline, oldest first."""
        query = select(alert_history).where(alert_history.c.fingerprint == fp).order_by(alert_history.c.id.desc())
        rows = self._rows(query.limit(limit))
        return [
            {"at": r.at, "status": r.status, "incident_id": r.incident_id, "stages": json.loads(r.trail)}
            for r in reversed(rows)
        ]

    def version(self) -> int:
        """Changes whenever an alert or incident is stored, changed or pruned (the store bumps it)."""
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raw = self.db.engine.raw_connection()
            if self.db.dialect != "sqlite":
                raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            self._local.raw = raw
            self._keep(raw)
        cursor = raw.cursor()
        try:
            cursor.execute(_VERSION_SQL)
            row = cursor.fetchone()
        finally:
            cursor.close()
        return int(row[0]) if row is not None else 0

    def close(self) -> None:
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()

    def _rows(self, query: Any) -> list[Any]:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.db.connect()
            self._local.conn = conn
            self._keep(conn)
        with conn.begin():
            return list(conn.execute(query))

    def _keep(self, conn: Any) -> None:
        with self._lock:
            self._open.append(conn)
