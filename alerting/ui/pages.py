"""Rendering the web UI's pages: the Jinja2 templates beside this file, their filters, the login cookie,
and the pages a refused request gets (the login form for 401, an explanation for 403)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates
from starlette.types import Scope
from vigil.alerting.auth import COOKIE
from vigil.alerting.tokens import Principal, allows

from vigil.clock import to_iso

TEMPLATES = Path(__file__).with_name("templates")
COOKIE_MAX_AGE = 12 * 3600  # a working day: then log in again


def when(value: float | str | None) -> str:
    """``2026-01-01 00:01:00 UTC`` (from epoch seconds or the API's ISO form): one time zone for everyone
    on the incident."""
    if value is None:
        return "—"
    iso = to_iso(value) if isinstance(value, float | int) else value
    return iso.replace("T", " ").split(".")[0].replace("+00:00", "") + " UTC"


def gpu_hours(value: float) -> str:
    return f"{value:,.1f} GPU-h" if value < 100 else f"{value:,.0f} GPU-h"


def show(value: object) -> str:
    """A timeline detail's value for people: lists joined, mappings as ``k=v``."""
    if isinstance(value, list | tuple):
        return ", ".join(show(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={show(v)}" for k, v in value.items())
    return str(value)


def local_path(target: str | None, default: str = "/incidents") -> str:
    """Where to go after logging in: a path on this server only (never ``//elsewhere`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


class Pages:
    def __init__(self) -> None:
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        self.templates.env.filters["when"] = when
        self.templates.env.filters["gpu_hours"] = gpu_hours
        self.templates.env.filters["show"] = show

    def render(
        self,
        request: Request,
        name: str,
        principal: Principal | None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        can_operate = principal is not None and allows(principal.role, "operator")
        can_admin = principal is not None and allows(principal.role, "admin")
        values = {"me": principal, "can_operate": can_operate, "can_admin": can_admin, **context}
        return self.templates.TemplateResponse(request, name, values, status_code=status)

    def login(self, request: Request, status: int, message: str = "", next_path: str | None = None) -> Response:
        target = next_path if next_path is not None else _here(request.scope)
        response = self.render(request, "login.html", None, status, message=message, next=local_path(target))
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    def denied(self, scope: Scope, status: int, reason: str) -> Response:
        """A refused page or form: the login form (401) or why not (403)."""
        request = Request(scope)
        if status == 401:
            return self.login(request, 401, reason if _has_cookie(scope) else "")
        return self.render(request, "error.html", None, status, title="Not allowed", message=reason)


def set_login(response: Response, token: str, secure: bool) -> None:
    response.set_cookie(
        COOKIE, token, max_age=COOKIE_MAX_AGE, path="/", secure=secure, httponly=True, samesite="strict"
    )


def _here(scope: Scope) -> str:
    """Where a refused browser was going: back there after logging in."""
    if scope["method"] != "GET" or scope["path"] in ("/login", "/logout"):
        return "/incidents"
    query = scope.get("query_string", b"").decode("latin-1")
    return str(scope["path"]) + (f"?{query}" if query else "")


def _has_cookie(scope: Mapping[str, Any]) -> bool:
    return any(name == b"cookie" and COOKIE.encode() in value for name, value in scope["headers"])
