"""Where the alerting state lives: a SQLite file under the data dir, or PostgreSQL (``alerting.store.url``).

One :class:`Database` per process holds the SQLAlchemy engine; each thread that writes (the service,
every receiver's outbox worker, retention) checks out its own connection through an ``AlertStore``.

Writes are serialised, on purpose: the engine reads a batch's state (open incidents, firing alerts)
and writes its decisions in one transaction, and two writers interleaving could open two incidents
for one failure domain. SQLite takes its write lock up front (``BEGIN IMMEDIATE``: never a
``SQLITE_BUSY`` half-way); PostgreSQL takes one transaction-scoped advisory lock, so several
replicas behind one database queue for the same lock instead of racing. Readers never wait (WAL on
SQLite, MVCC on PostgreSQL).

Migrations (Alembic, ``migrations/versions``) run at open, on both databases from the same files.
Alembic rather than a hand-rolled version table: its batch mode rebuilds a SQLite table to rename or
retype a column (SQLite's ALTER cannot), and ``compare_metadata`` lets a test prove the migrated
schema equals ``schema.py`` on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

from vigil.files import private_dir, private_file, tighten

MIGRATIONS = Path(__file__).with_name("migrations")
WRITE_LOCK = 7_301_001  # PostgreSQL advisory lock id of the alerting writers


class Database:
    def __init__(self, url: str, readonly: bool = False) -> None:
        self.url = url
        self.readonly = readonly
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.engine = _engine(url, readonly)
        self._migrated = threading.Event()

    @classmethod
    def sqlite(cls, path: Path, readonly: bool = False) -> Database:
        if not readonly:
            # SQLite gives the WAL and SHM files the database file's mode: a 0600 database keeps all
            # three private; files from before this rule are tightened here.
            private_dir(path.parent)
            private_file(path)
            for extra in ("-wal", "-shm", "-journal"):
                tighten(path.with_name(path.name + extra))
            return cls(f"sqlite+pysqlite:///{path}")
        return cls(f"sqlite+pysqlite:///file:{path}?mode=ro&uri=true", readonly=True)

    @classmethod
    def open(cls, target: Database | Path | str) -> Database:
        """A path is a SQLite file; a string a SQLAlchemy URL (``postgresql+psycopg://...``)."""
        if isinstance(target, Database):
            return target
        if isinstance(target, Path):
            return cls.sqlite(target).migrate()
        return cls(target).migrate()

    def migrate(self) -> Database:
        """Bring the schema to the newest version (idempotent; once per process and database)."""
        if self._migrated.is_set() or self.readonly:
            return self
        with self.engine.connect() as conn, self.write(conn):
            _upgrade(conn)
        self._migrated.set()
        return self

    @contextmanager
    def write(self, conn: Connection) -> Iterator[Connection]:
        """One write transaction on ``conn``, holding the write lock (see the module docstring)."""
        conn.info["write"] = True  # read by the SQLite begin hook: BEGIN IMMEDIATE, not BEGIN
        with conn.begin():
            if self.dialect != "sqlite":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": WRITE_LOCK})
            yield conn

    def connect(self) -> Connection:
        return self.engine.connect()

    def dispose(self) -> None:
        self.engine.dispose()


def _engine(url: str, readonly: bool) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    # One connection per AlertStore, held for its life, as the stdlib driver did; NullPool closes
    # it for real when the store closes (a pooled SQLite connection would keep the file open).
    engine = create_engine(url, poolclass=NullPool, connect_args={"check_same_thread": False, "timeout": 10})
    event.listen(engine, "connect", _sqlite_connect(readonly))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(readonly: bool) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own BEGIN is off: transactions are ours
        cursor = dbapi_conn.cursor()
        if not readonly:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # a committed page must survive a power cut
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    return on_connect


def _sqlite_begin(conn: Connection) -> None:
    """A writer takes the lock up front, so a read-then-write never fails with SQLITE_BUSY half-way; a
    reader's transaction stays deferred and never waits for a writer (WAL)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("write", False) else "BEGIN")


def _upgrade(conn: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    tables = set(inspect(conn).get_table_names())
    if "alerts" in tables and "alembic_version" not in tables:
        command.stamp(config, "0001")  # a store from before migrations: it has exactly 0001's tables
    command.upgrade(config, "head")
    if conn.execute(text("SELECT COUNT(*) FROM meta WHERE key = 'alerts_version'")).scalar() == 0:
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('alerts_version', 0)"))
