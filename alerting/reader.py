"""Read-only access to the alert store for the API: pages of alerts behind a stable cursor.

The API's handlers run on uvicorn's thread pool, so each thread gets its own read-only connection
(SQLite connections are not shared between threads; WAL lets them read while the service writes).

Pages are ordered newest change first (``updated_at`` descending, then fingerprint) and the cursor
is the position after the last alert of a page (keyset pagination): alerts that change or arrive
while a client pages move to the top and never shift or repeat the later pages.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from vigil.alerting.store import ALERT_COLUMNS, alert_from_row, connect

from vigil.events import Alert

_FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}$")


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

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []

    def page(self, status: str | None, limit: int, after: Position | None) -> AlertPage:
        where: list[str] = []
        args: list[str | float] = []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if after is not None:
            where.append("(updated_at, fingerprint) < (?, ?)")
            args += [after.updated_at, after.fingerprint]
        sql = f"SELECT {ALERT_COLUMNS} FROM alerts"
        sql += f" WHERE {' AND '.join(where)}" if where else ""
        sql += " ORDER BY updated_at DESC, fingerprint DESC LIMIT ?"
        rows = self._conn().execute(sql, [*args, limit + 1]).fetchall()  # one more: is there a next page?
        alerts = [alert_from_row(r) for r in rows[:limit]]
        last = alerts[-1] if len(rows) > limit else None
        return AlertPage(alerts, Position(last.updated_at, last.fingerprint) if last is not None else None)

    def get(self, fp: str) -> Alert | None:
        row = self._conn().execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE fingerprint = ?", (fp,)).fetchone()
        return alert_from_row(row) if row is not None else None

    def version(self) -> int:
        """Changes whenever an alert is stored, changed or pruned (a trigger keeps it, see store.py)."""
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'alerts_version'").fetchone()
        return int(row[0]) if row is not None else 0

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn
