"""API token rows: the prefix and SHA-256 of each token (``alerting/tokens.py``), revoked ones kept."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import func, insert, select, update
from vigil.alerting.store.base import StoreBase
from vigil.alerting.store.schema import api_tokens
from vigil.alerting.tokens import ROLES, ApiToken, Role, digest, new_token


def token_from_row(row: Any) -> ApiToken:
    return ApiToken(
        prefix=row.prefix,
        name=row.name,
        role=cast(Role, row.role),
        digest=row.digest,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
    )


class TokenRows(StoreBase):
    def create_token(self, name: str, role: Role, created_by: str, now: float) -> tuple[str, ApiToken]:
        """Make a token; returns it (shown once, never stored) and its stored row."""
        if role not in ROLES:
            raise ValueError(f"role: must be one of {', '.join(ROLES)}")
        if not name.strip():
            raise ValueError("name: a token needs a name (its writes are recorded under it)")
        token, prefix = new_token()
        row = ApiToken(prefix, name.strip(), role, digest(token), now, created_by)
        values = {k: getattr(row, k) for k in ("prefix", "name", "role", "digest", "created_at", "created_by")}
        self._write(insert(api_tokens), values)
        return token, row

    def token(self, prefix: str) -> ApiToken | None:
        rows = self._read(select(api_tokens).where(api_tokens.c.prefix == prefix))
        return token_from_row(rows[0]) if rows else None

    def tokens(self) -> list[ApiToken]:
        """Every token, revoked ones included, oldest first."""
        rows = self._read(select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.prefix))
        return [token_from_row(r) for r in rows]

    def revoke_token(self, prefix: str, by: str, now: float) -> bool:
        """Revoke an active token (kept, marked with who revoked it); False if none was active."""
        stmt = update(api_tokens).where(api_tokens.c.prefix == prefix, api_tokens.c.revoked_at.is_(None))
        return bool(self._write(stmt.values(revoked_at=now, revoked_by=by)))

    def active_admins(self) -> int:
        query = select(func.count()).select_from(api_tokens)
        query = query.where(api_tokens.c.role == "admin", api_tokens.c.revoked_at.is_(None))
        return int(self._scalar(query) or 0)
