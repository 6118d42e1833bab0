"""A store's connection and its transactions: the part every table's methods share.

An ``AlertStore`` is used by one thread at a time and holds one connection for its life. Methods
called inside ``with store.transaction():`` join that transaction (the engine writes a whole batch
in one); called outside, a write runs in its own short transaction and a read in a deferred one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Executable, Result, update
from vigil.alerting.store.database import Database
from vigil.alerting.store.schema import meta

# One encoder, built once: json.dumps builds a new JSONEncoder on every call with these arguments.
_ENCODE = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str).encode


def dumps(value: Any) -> str:
    return _ENCODE(value)


class StoreBase:
    def __init__(self, target: Database | Path | str) -> None:
        self.db = Database.open(target)
        self.path = target if isinstance(target, Path) else None
        self._conn: Connection = self.db.connect()
        self._in_tx = False
        self._seen_changed = False  # this transaction changed something an API reader shows

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (nested calls join it): everything in it commits together or not at all."""
        if self._in_tx:
            yield
            return
        with self.db.write(self._conn):
            self._in_tx, self._seen_changed = True, False
            try:
                yield
                if self._seen_changed:
                    # Readers cache pages per version: bump it with the change, in the same commit.
                    self._conn.execute(
                        update(meta).where(meta.c.key == "alerts_version").values(value=meta.c.value + 1)
                    )
            finally:
                self._in_tx = False

    def _write(self, stmt: Executable, params: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None) -> Any:
        """Execute a write; returns rowcount (lastrowid via ``_insert``)."""
        if self._in_tx:
            return self._conn.execute(stmt, params).rowcount
        with self.transaction():
            return self._conn.execute(stmt, params).rowcount

    def _insert(self, stmt: Executable, params: Mapping[str, Any]) -> int:
        """One INSERT; returns the new row's integer primary key."""
        with self.transaction():
            key = self._conn.execute(stmt, params).inserted_primary_key
            if key is None:
                raise RuntimeError("an INSERT returned no primary key")
            return int(key[0])

    def _read(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> list[Any]:
        """All rows of a query (as ``Row`` objects with attribute access)."""
        if self._in_tx:
            return list(self._execute(stmt, params))
        with self._conn.begin():
            return list(self._execute(stmt, params))

    def _scalar(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> Any:
        rows = self._read(stmt, params)
        return rows[0][0] if rows else None

    def _execute(self, stmt: Executable, params: Mapping[str, Any] | None) -> Result[Any]:
        return self._conn.execute(stmt, params) if params is not None else self._conn.execute(stmt)

    def _changed(self) -> None:
        """Note that this transaction changes what the API shows (alerts, incidents)."""
        self._seen_changed = True
