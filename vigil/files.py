"""Private files: state and secrets are created 0600 in 0700 folders, whatever the process umask.

Everything Vigil keeps under ``data_dir`` (the run config and its secrets, the alert store and its
WAL, analytics snapshots, agent spill segments, kernel log positions, the embedded broker's data)
can hold a secret or what an attacker on the same machine should not read or change. The modes are
set explicitly rather than left to the umask, and files that an older version created with looser
modes are tightened when they are next opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
# Child processes (the embedded broker, the services `vigil up` starts) create files we do not
# open ourselves; they get this umask so that those are private too.
CHILD_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create ``path`` (and any missing parents) as 0700, and make an existing ``path`` 0700."""
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile by another process
            os.mkdir(folder, DIR_MODE)
        os.chmod(folder, DIR_MODE)
    _chmod(path, DIR_MODE)
    return path


def _chmod(path: Path, mode: int) -> None:
    """chmod what already existed; a folder or file we do not own (a volume's mount point, a file
    another user created) is left as it is with a warning rather than stopping the service."""
    try:
        os.chmod(path, mode)
    except PermissionError:
        log.warning("cannot make %s private (mode %o): not its owner", path, mode)


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 if absent, or make it 0600, before a library opens it by name
    (SQLite creates its WAL and SHM files with the mode of the database file)."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    _chmod(path, FILE_MODE)
    return path


def tighten(path: Path) -> None:
    """Make an existing file 0600 (one an older version wrote 0644); absent files are fine."""
    with contextlib.suppress(FileNotFoundError):
        _chmod(path, FILE_MODE)


def write_private(path: Path, data: bytes | str, durable: bool = True) -> Path:
    """Atomically replace ``path`` with ``data``, as a 0600 file in a 0700 folder; ``durable``
    fsyncs the data before the rename (callers that write often and can lose the file skip it)."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def open_private_append(path: Path) -> int:
    """A file descriptor appending to ``path`` (created 0600 in a 0700 folder), for child logs."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd
