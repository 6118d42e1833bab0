"""A private PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temporary folder, on a free
loopback port, stopped by its PID file. PostgreSQL refuses to run as root, so as root it runs as the
``postgres`` user the Debian package creates (the Makefile's set-up installs the package).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14")]


def _binary(name: str) -> str:
    for folder in BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql (make's set-up does)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL (``postgresql+psycopg://...``) of a fresh, empty server."""
    root = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    port = _free_port()
    init = [_binary("initdb"), "-D", str(data), "-U", "vigil", "--auth=trust", "-E", "UTF8", "--no-instructions"]
    subprocess.run(_as_server_user(init), check=True, capture_output=True)
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
    ctl = [_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60"]
    subprocess.run(_as_server_user([*ctl, "start"]), check=True, capture_output=True)
    try:
        _wait(port)
        subprocess.run(
            _as_server_user([_binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "vigil", "vigil"]),
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg://vigil@127.0.0.1:{port}/vigil"
    finally:
        subprocess.run(_as_server_user([*ctl, "stop", "-m", "fast"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _wait(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not listen on port {port}")


def reset(url: str) -> None:
    """Drop every table, so each test starts from an empty database on the shared server."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
