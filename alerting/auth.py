"""Who may call the API and the web UI: bearer tokens or the UI's cookie, checked before routing.

Every route declares what it needs with a dependency, ``Depends(Requires("operator"))``, which also
hands the handler the caller (:class:`~vigil.alerting.tokens.Principal`, whose name is the actor of
every write). :class:`AuthMiddleware` reads those declarations once and enforces them *before* the
request reaches FastAPI, because FastAPI reads and parses a body before it runs dependencies: a
caller without a valid token would otherwise learn from a 422 what the body should look like. So:
no token or an unknown or revoked one is 401 (``WWW-Authenticate: Bearer``), a token whose role does
not allow the route is 403, and only then is the body validated (422 naming the field). A route that
declares nothing fails the app's first request unless it is one of :data:`PUBLIC` (health, metrics
for the scraper, the OpenAPI pages, the login form), so no endpoint is public by omission.

The token comes from ``Authorization: Bearer <token>`` or, for the web UI, from the ``vigil_token``
cookie (HttpOnly, SameSite=Strict). A write authorised by the cookie must also come from this
server's own pages: its ``Origin`` (or, without one, its ``Referer``) must be this host, so another
site cannot make a logged-in browser post a form (SameSite=Strict already keeps the cookie off
cross-site requests in current browsers; the origin check is the second lock).

:class:`TokenBook` keeps the active tokens in memory so a request costs one SHA-256 and a dict
lookup (the alerts page cache answers a thousand clients in a burst, ``vigil bench api``). It
reloads them from the store every ``refresh_s`` (a token revoked by another process or replica
stops working within that time; one revoked through this API at once) and, at most once a second,
when it meets a well-formed token it does not know (one just made by ``vigil tokens create``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send
from vigil.alerting.store import AlertStore
from vigil.alerting.tokens import CONFIG_ADMIN, ApiToken, Need, Principal, Role, allows, digest, prefix_of, same_digest

from vigil.secret import Secret

COOKIE = "vigil_token"
PUBLIC = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("POST", "/logout"),
    }
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer vgl_...`")
# What a refused request gets: (scope, status, reason) -> the response (JSON for the API, a page for the UI).
Denied = Callable[[Scope, int, str], Response]


class TokenBook:
    """The active tokens, kept in memory (see the module docstring), the config's admin token, and the
    writes that make and revoke tokens.

    ``load`` reads every token (the API reader's, so a reload on the event loop never waits for a
    writer); ``store`` is this object's own connection for writes, used under a lock."""

    def __init__(
        self,
        load: Callable[[], list[ApiToken]],
        store: AlertStore | None = None,
        admin_token: Secret | None = None,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._store = store
        self._admin = digest(admin_token.reveal()) if admin_token is not None else None
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, ApiToken] = {}
        self._loaded_at = float("-inf")

    def principal(self, token: str) -> Principal | None:
        """The caller a token names, or None (unknown, revoked, malformed)."""
        hashed = digest(token)
        if self._admin is not None and same_digest(hashed, self._admin):
            return Principal(CONFIG_ADMIN, "admin", "config")
        prefix = prefix_of(token)
        if prefix is None:
            return None
        age = self._clock() - self._loaded_at
        found = self._tokens.get(prefix)
        if age > self._refresh_s or (found is None and age > 1.0):
            self.reload()
            found = self._tokens.get(prefix)
        if found is None or not same_digest(hashed, found.digest):
            return None
        return Principal(found.name, found.role, found.prefix)

    def reload(self) -> None:
        tokens = {t.prefix: t for t in self._load() if t.active}
        self._tokens, self._loaded_at = tokens, self._clock()

    def forget(self) -> None:
        """The store changed (a token made or revoked here): the next lookup reloads."""
        self._loaded_at = float("-inf")

    def create(self, name: str, role: Role, by: str, now: float) -> tuple[str, ApiToken]:
        """A new token (returned once, stored as its digest); ValueError naming the field if refused."""
        with self._lock:
            made = self._writer().create_token(name, role, by, now)
        self.forget()
        return made

    def revoke(self, prefix: str, by: str, now: float) -> bool:
        with self._lock:
            done = self._writer().revoke_token(prefix, by, now)
        self._tokens.pop(prefix, None)  # at once in this process; elsewhere within refresh_s
        self.forget()
        return done

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def _writer(self) -> AlertStore:
        if self._store is None:
            raise RuntimeError("this token book is read-only")
        return self._store


class Requires:
    """The dependency a route declares its need with; returns the caller (checked by the middleware)."""

    def __init__(self, need: Need) -> None:
        self.need = need

    def __call__(self, request: Request, _: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Principal:
        principal = request.scope.get("state", {}).get("principal")
        if not isinstance(principal, Principal):  # the middleware is missing: refuse rather than serve
            raise HTTPException(401, "a valid API token is required", headers={"WWW-Authenticate": "Bearer"})
        if not allows(principal.role, self.need):
            raise HTTPException(403, f"the {principal.role} role may not do this (needs {self.need})")
        return principal


def route_needs(routes: list[BaseRoute]) -> dict[tuple[str, str], Need | None]:
    """(method, path template) -> what the route needs (None: public). Raises for an undeclared route."""
    out: dict[tuple[str, str], Need | None] = {}
    for route in routes:
        if not isinstance(route, Route):
            raise RuntimeError(f"{route!r}: only plain routes are served (each must declare its role)")
        need = _declared(route)
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            if need is None and (method, route.path) not in PUBLIC:
                raise RuntimeError(f"{method} {route.path} declares no role: add Depends(Requires(...))")
            out[(method, route.path)] = need
    return out


def _declared(route: Route) -> Need | None:
    dependant = getattr(route, "dependant", None)
    pending = list(dependant.dependencies) if dependant is not None else []
    while pending:
        dep = pending.pop()
        if isinstance(dep.call, Requires):
            return dep.call.need
        pending.extend(dep.dependencies)
    return None


class AuthMiddleware:
    """Authenticates every request and enforces its route's need before routing (module docstring)."""

    def __init__(self, app: ASGIApp, book: TokenBook, routes: list[BaseRoute], denied: Denied) -> None:
        self._app = app
        self._book = book
        self._routes = routes  # the app's own list: read at the first request, once all are added
        self._denied = denied
        self._static: dict[tuple[str, str], Need | None] | None = None
        self._dynamic: list[tuple[Route, Need | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        found, need = self._need(scope)
        if not found or need is None:
            await self._app(scope, receive, send)  # public, or no such route: the app answers (404, 405)
            return
        problem = self._check(scope, need)
        if problem is not None:
            await self._denied(scope, *problem)(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _check(self, scope: Scope, need: Need) -> tuple[int, str] | None:
        token, from_cookie = credentials(scope)
        principal = self._book.principal(token) if token else None
        if principal is None:
            return 401, "a valid API token is required" if not token else "this token is unknown or revoked"
        if not allows(principal.role, need):
            return 403, f"the {principal.role} role may not do this (needs {need})"
        if from_cookie and scope["method"] not in SAFE_METHODS and not same_origin(scope):
            return 403, "a cross-site request is refused: post from this server's own pages"
        scope.setdefault("state", {})["principal"] = principal
        return None

    def _need(self, scope: Scope) -> tuple[bool, Need | None]:
        if self._static is None:
            self._index()
        assert self._static is not None  # set by _index
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        key = (method, scope["path"])
        if key in self._static:
            return True, self._static[key]
        for route, need in self._dynamic:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return True, need
        return False, None

    def _index(self) -> None:
        route_needs(self._routes)  # refuses an undeclared route before anything is served
        static: dict[tuple[str, str], Need | None] = {}
        for route in self._routes:
            assert isinstance(route, Route)  # route_needs refused anything else
            need = _declared(route)
            if "{" in route.path:
                self._dynamic.append((route, need))
            else:
                static.update(((method, route.path), need) for method in route.methods or ())
        self._static = static


def credentials(scope: Scope) -> tuple[str | None, bool]:
    """The token a request carries (bearer header first) and whether it came from the UI's cookie."""
    cookie: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip(), False
        elif name == b"cookie":
            cookie = _cookie(value.decode("latin-1")) or cookie
    return cookie, cookie is not None


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == COOKIE and value:
            return value
    return None


def same_origin(scope: Scope) -> bool:
    """The request's Origin (else Referer) is this server, as the browser reached it (its Host)."""
    headers: Mapping[bytes, bytes] = dict(scope["headers"])
    host = headers.get(b"host", b"").decode("latin-1")
    scheme = scope.get("scheme", "http")
    mine = f"{scheme}://{host}"
    origin = headers.get(b"origin")
    if origin is not None:
        return bool(host) and origin.decode("latin-1") == mine
    referer = headers.get(b"referer", b"").decode("latin-1")
    return bool(host) and (referer == mine or referer.startswith(mine + "/"))


def json_denied(scope: Scope, status: int, reason: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse({"detail": reason}, status_code=status, headers=headers)


def principal_of(scope: Mapping[str, Any]) -> Principal | None:
    """The caller the middleware let in (None on a public route without a token)."""
    found = scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None
