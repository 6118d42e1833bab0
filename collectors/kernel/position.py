"""Where the follower has got to, kept in one small JSON file so a restart resumes there.

``{"version": 1, "source": "<what is followed>", "position": {...}}``: the position is the kmsg
sequence number and boot id, the journal cursor, or a file's device, inode, byte offset and first
bytes. A file written for another source (the configuration changed), or one that does not parse,
is ignored with a warning: the follower then starts as on a first run. Writes go to a temporary file
in the same directory, are fsynced and renamed over the old one, so a crash leaves either the old
position or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from vigil.files import private_dir

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class PositionStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: positions live in memory only (a restart starts over)

    def load(self, source: str) -> dict[str, Any] | None:
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("kernel log position %s unreadable (%s): starting as on a first run", self.path, exc)
            return None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION or data.get("source") != source:
            log.warning("kernel log position %s is for another source or format: starting afresh", self.path)
            return None
        position = data.get("position")
        return position if isinstance(position, dict) else None

    def save(self, source: str, position: dict[str, Any]) -> None:
        """Atomically replace the stored position; raises OSError (the caller keeps it for a retry)."""
        if self.path is None:
            return
        private_dir(self.path.parent)
        body = json.dumps({"version": FORMAT_VERSION, "source": source, "position": position}).encode()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (the directory entry), where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
