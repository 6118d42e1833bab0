"""Alert state, the notification outbox and the notification log, in one SQLite file.

Each :class:`AlertStore` owns one connection and is used by one thread at a time (the service
thread, each receiver's outbox worker, the retention pruner); WAL mode lets them and the API's
:class:`~vigil.alerting.reader.AlertReader` work side by side. ``version``/``published_version``
on an alert say whether its latest state reached the alerts topic, so a crash between the database
commit and the publish is repaired on restart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from vigil.events import Alert, Decision, Severity
from vigil.files import private_file, tighten

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    severity TEXT NOT NULL,
    starts_at REAL NOT NULL,
    ends_at REAL,
    updated_at REAL NOT NULL,
    recommended_action TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 1,
    published_version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status);
CREATE INDEX IF NOT EXISTS alerts_page ON alerts (updated_at, fingerprint);
CREATE INDEX IF NOT EXISTS alerts_status_page ON alerts (status, updated_at, fingerprint);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    notifier TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (notifier, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (state, created_at);
CREATE INDEX IF NOT EXISTS outbox_head ON outbox (fingerprint, notifier, state, id);
CREATE TABLE IF NOT EXISTS notification_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    notifier TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    sent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notification_log_fp ON notification_log (fingerprint);
CREATE INDEX IF NOT EXISTS notification_log_sent ON notification_log (sent_at);
-- alerts_version changes with every change an API reader can see, so a reader's cached page is
-- fresh exactly while the version it was built at is current (publishing bumps nothing).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('alerts_version', 0);
CREATE TRIGGER IF NOT EXISTS alerts_version_insert AFTER INSERT ON alerts
BEGIN UPDATE meta SET value = value + 1 WHERE key = 'alerts_version'; END;
CREATE TRIGGER IF NOT EXISTS alerts_version_update AFTER UPDATE OF
    status, labels, annotations, severity, starts_at, ends_at, updated_at, recommended_action ON alerts
BEGIN UPDATE meta SET value = value + 1 WHERE key = 'alerts_version'; END;
CREATE TRIGGER IF NOT EXISTS alerts_version_delete AFTER DELETE ON alerts
BEGIN UPDATE meta SET value = value + 1 WHERE key = 'alerts_version'; END;
"""

ALERT_COLUMNS = "fingerprint, status, labels, annotations, severity, starts_at, ends_at, updated_at, recommended_action"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    fingerprint: str
    notifier: str
    reason: str
    payload: dict[str, Any]
    created_at: float
    attempts: int
    next_attempt_at: float
    state: str
    last_error: str | None


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        # SQLite gives the WAL and SHM files the database file's mode, so a 0600 database keeps all
        # three private; files from before this rule are tightened here.
        private_file(path)
        for extra in ("-wal", "-shm", "-journal"):
            tighten(path.with_name(path.name + extra))
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so their extent reads in the code.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed page must survive a power cut
    conn.execute("PRAGMA busy_timeout=10000")
    conn.row_factory = sqlite3.Row
    return conn


def alert_from_row(row: sqlite3.Row) -> Alert:
    return Alert(
        fingerprint=row["fingerprint"],
        status=cast(Decision, row["status"]),
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        severity=cast(Severity, row["severity"]),
        recommended_action=row["recommended_action"],
        updated_at=row["updated_at"],
    )


def _outbox_from_row(row: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        id=row["id"],
        fingerprint=row["fingerprint"],
        notifier=row["notifier"],
        reason=row["reason"],
        payload=json.loads(row["payload"]),
        created_at=row["created_at"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        state=row["state"],
        last_error=row["last_error"],
    )


def _query_alerts(conn: sqlite3.Connection, status: str | None, limit: int) -> list[Alert]:
    if status is None:
        rows = conn.execute(f"SELECT {ALERT_COLUMNS} FROM alerts ORDER BY updated_at DESC LIMIT ?", (limit,)).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE status = ? ORDER BY updated_at DESC LIMIT ?",
            (status, limit),
        ).fetchall()
    return [alert_from_row(r) for r in rows]


class AlertStore:
    """Read-write access; not shared between threads (each thread opens its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT: the write lock is taken up front, so a read-then-write never
        races the other thread's write (and never fails with SQLITE_BUSY half-way)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ alerts

    def get(self, fp: str) -> Alert | None:
        row = self._conn.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE fingerprint = ?", (fp,)).fetchone()
        return alert_from_row(row) if row is not None else None

    def alerts(self, status: str | None = None, limit: int = 1000) -> list[Alert]:
        return _query_alerts(self._conn, status, limit)

    def upsert(self, alert: Alert) -> int:
        """Store an alert's new state; returns its version (bumped on every change)."""
        self._conn.execute(
            f"INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, labels = excluded.labels, "
            "annotations = excluded.annotations, severity = excluded.severity, "
            "starts_at = excluded.starts_at, "
            "ends_at = excluded.ends_at, updated_at = excluded.updated_at, "
            "recommended_action = excluded.recommended_action, version = version + 1",
            (
                alert.fingerprint,
                alert.status,
                json.dumps(dict(alert.labels), sort_keys=True),
                json.dumps(dict(alert.annotations), sort_keys=True),
                alert.severity,
                alert.starts_at,
                alert.ends_at,
                alert.updated_at,
                alert.recommended_action,
            ),
        )
        row = self._conn.execute("SELECT version FROM alerts WHERE fingerprint = ?", (alert.fingerprint,)).fetchone()
        return int(row["version"])

    def count(self, status: str) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM alerts WHERE status = ?", (status,)).fetchone()
        return int(row[0])

    def unpublished(self) -> list[tuple[Alert, int]]:
        rows = self._conn.execute(
            f"SELECT {ALERT_COLUMNS}, version FROM alerts WHERE published_version < version ORDER BY updated_at"
        ).fetchall()
        return [(alert_from_row(r), int(r["version"])) for r in rows]

    def mark_published(self, versions: dict[str, int]) -> None:
        with self.transaction():
            self._conn.executemany(
                "UPDATE alerts SET published_version = MAX(published_version, ?) WHERE fingerprint = ?",
                [(v, fp) for fp, v in versions.items()],
            )

    # ------------------------------------------------------------------ outbox

    def enqueue(self, fp: str, notifier: str, reason: str, payload: dict[str, Any], now: float) -> int:
        cur = self._conn.execute(
            "INSERT INTO outbox (fingerprint, notifier, reason, payload, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (fp, notifier, reason, json.dumps(payload, sort_keys=True), now, now),
        )
        return int(cur.lastrowid or 0)

    def due(self, now: float, limit: int, notifier: str) -> list[OutboxRow]:
        """One notifier's pending rows whose time has come, fewest attempts then oldest first; a row waits
        while an older row for the same fingerprint and notifier is still pending, so a resolve never
        overtakes its page."""
        rows = self._conn.execute(
            "SELECT * FROM outbox o WHERE o.notifier = ? AND o.state = 'pending' AND o.next_attempt_at <= ? "
            "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' AND p.fingerprint = o.fingerprint"
            "  AND p.notifier = o.notifier AND p.id < o.id) ORDER BY o.attempts, o.id LIMIT ?",
            (notifier, now, limit),
        ).fetchall()
        return [_outbox_from_row(r) for r in rows]

    def orphans(self, notifiers: set[str]) -> list[OutboxRow]:
        """Pending rows for a notifier not in ``notifiers`` (removed from the config since)."""
        marks = ",".join("?" * len(notifiers))
        rows = self._conn.execute(
            f"SELECT * FROM outbox WHERE state = 'pending' AND notifier NOT IN ({marks}) ORDER BY id",
            sorted(notifiers),
        ).fetchall()
        return [_outbox_from_row(r) for r in rows]

    def outbox(self, state: str | None = None) -> list[OutboxRow]:
        if state is None:
            rows = self._conn.execute("SELECT * FROM outbox ORDER BY id").fetchall()
        else:
            rows = self._conn.execute("SELECT * FROM outbox WHERE state = ? ORDER BY id", (state,)).fetchall()
        return [_outbox_from_row(r) for r in rows]

    def next_due_at(self, notifier: str) -> float | None:
        row = self._conn.execute(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE notifier = ? AND state = 'pending'", (notifier,)
        ).fetchone()
        return float(row[0]) if row[0] is not None else None

    def pending_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0])

    def finish(self, row: OutboxRow, state: str, error: str | None, now: float) -> None:
        """Mark a row delivered or failed and record it in the notification log, atomically."""
        with self.transaction():
            self._conn.execute(
                "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                (state, error, row.id),
            )
            self.log(row.fingerprint, row.notifier, row.reason, state, now)

    def reschedule(self, row: OutboxRow, next_attempt_at: float, error: str) -> None:
        with self.transaction():
            self._conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (next_attempt_at, error, row.id),
            )

    # ------------------------------------------------------------------ retention

    def prune_outbox(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` delivered or failed rows created before ``before``; pending rows stay."""
        return self._delete(
            "DELETE FROM outbox WHERE id IN ("
            "SELECT id FROM outbox WHERE state IN ('delivered', 'failed') AND created_at < ? LIMIT ?)",
            (before, limit),
        )

    def prune_notification_log(self, before: float, limit: int) -> int:
        return self._delete(
            "DELETE FROM notification_log WHERE id IN (SELECT id FROM notification_log WHERE sent_at < ? LIMIT ?)",
            (before, limit),
        )

    def prune_resolved(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` alerts resolved (last changed) before ``before``, except one with a
        notification still pending or a state not yet published."""
        return self._delete(
            "DELETE FROM alerts WHERE fingerprint IN (SELECT a.fingerprint FROM alerts a "
            "WHERE a.status = 'resolved' AND a.updated_at < ? AND a.published_version >= a.version "
            "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.fingerprint = a.fingerprint AND o.state = 'pending') "
            "LIMIT ?)",
            (before, limit),
        )

    def _delete(self, sql: str, args: tuple[float, int]) -> int:
        with self.transaction():
            return int(self._conn.execute(sql, args).rowcount)

    # ------------------------------------------------------------------ notification log

    def log(self, fp: str, notifier: str, reason: str, status: str, now: float) -> None:
        self._conn.execute(
            "INSERT INTO notification_log (fingerprint, notifier, reason, status, sent_at) VALUES (?, ?, ?, ?, ?)",
            (fp, notifier, reason, status, now),
        )

    def notification_log(self, fp: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT fingerprint, notifier, reason, status, sent_at FROM notification_log"
        rows = (
            self._conn.execute(sql + " ORDER BY id").fetchall()
            if fp is None
            else self._conn.execute(sql + " WHERE fingerprint = ? ORDER BY id", (fp,)).fetchall()
        )
        return [dict(r) for r in rows]
