"""Admin routes: the effective config (secrets redacted) and API tokens (create, list, revoke)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from vigil.alerting.routes.context import Admin, ApiDeps, not_found, refuse
from vigil.alerting.tokens import Role

CONFIG_PATH = "/api/v1/config"
TOKENS_PATH = "/api/v1/tokens"


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S", description="the actor of its writes")]
    role: Role


def effective_config(deps: ApiDeps) -> dict[str, Any]:
    """The alerting section as this process runs it, defaults filled in. Every secret (notifier keys and
    URLs, the store URL, the admin token) is a ``Secret``, dumped as its reference (``{"env": NAME}``,
    ``{"file": PATH}``) or ``**********``: never its value."""
    config = deps.engine.config
    return {
        "alerting": config.model_dump(mode="json"),
        "effective_route": config.route_config().model_dump(mode="json"),
        "receivers": config.receiver_integrations(),
    }


def add_admin_routes(app: FastAPI, deps: ApiDeps) -> None:
    """On the app itself, not an APIRouter: the role check reads the app's own routes."""
    book, clock = deps.book, deps.engine.clock

    @app.get(CONFIG_PATH, tags=["admin"])
    def config(_: Admin) -> dict[str, Any]:
        return effective_config(deps)

    @app.get(TOKENS_PATH, tags=["admin"])
    def list_tokens(_: Admin) -> dict[str, Any]:
        """Every token, revoked ones too; never a token or its hash, only its public prefix."""
        return {"tokens": [t.to_json() for t in deps.reader.tokens()]}

    @app.post(TOKENS_PATH, status_code=201, tags=["admin"])
    def create_token(who: Admin, body: TokenBody) -> dict[str, Any]:
        """A new token, in ``token``: shown this once (only its SHA-256 is kept)."""
        token, row = book.create(body.name, body.role, who.name, clock.now())
        return {"token": token, **row.to_json()}

    @app.post(TOKENS_PATH + "/{prefix}/revoke", tags=["admin"])
    def revoke_token(who: Admin, prefix: str) -> dict[str, Any]:
        """Revoke a token (kept, marked with who revoked it); it stops working at once in this process."""
        if not book.revoke(prefix, who.name, clock.now()):
            found = next((t for t in deps.reader.tokens() if t.prefix == prefix), None)
            if found is None:
                not_found(f"token {prefix}")
            refuse(f"token {prefix} was already revoked")
        found = next(t for t in deps.reader.tokens() if t.prefix == prefix)
        return found.to_json()
