"""A log file (``/var/log/kern.log``, a dmesg capture, fabric manager's log), followed like ``tail -F``.

The position is the file's identity (device and inode), the byte offset after the last complete
line returned, and its first bytes (up to 256). Each call checks, before reading:

- rotation (the path now names another inode): the old file is read to its end first (its last
  line even without a newline), then the new one from its start;
- truncation (the file is shorter than the offset, ``copytruncate``) and in-place replacement
  (its first bytes changed): read again from the start.

After a restart the stored inode is looked for at the path, then among the path's rotated siblings
(``kern.log.1``, ``kern.log-20250223``) so lines written to it before rotation are not lost; when it
is gone, the current file is read from its start and a ``gap`` Problem says what happened. A
partial last line waits for its newline. Lines are decoded as UTF-8 (invalid bytes replaced).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from vigil.collectors.base import Problem
from vigil.collectors.kernel.sources import Batch, Line, StartAt
from vigil.collectors.kernel.timestamps import Clocks, stamp

HEAD_BYTES = 256
_CHUNK = 65536


class FileSource:
    kind = "file"

    def __init__(self, path: Path, position: dict[str, Any] | None, start_at: StartAt, clocks: Clocks):
        self.path = path
        self._clocks = clocks
        self._resume = position
        self._fd: int | None = None
        self._ident: tuple[int, int] = (0, 0)
        self._offset = 0
        self._head = b""
        self._skip_to_end = start_at == "end"  # the first run's first open only

    def read(self, limit: int) -> Batch:
        batch = Batch()
        if self._fd is None:
            self._open_first(batch)
        if self._fd is not None and self._follow_rotation(limit, batch):
            self._check_rewritten()
            self._read_lines(limit, batch, final=False)
            self._extend_head()
        if self._fd is not None:
            batch.position = {
                "device": self._ident[0],
                "inode": self._ident[1],
                "offset": self._offset,
                "head": self._head.hex(),
            }
        return batch

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- opening
    def _open_first(self, batch: Batch) -> None:
        resume, self._resume = self._resume, None
        skip_to_end, self._skip_to_end = self._skip_to_end, False  # a file that appears later is read whole
        if resume is not None and self._resume_at(resume, batch):
            return
        if self._open(self.path, batch) and skip_to_end and self._fd is not None:
            self._offset = os.fstat(self._fd).st_size

    def _resume_at(self, resume: dict[str, Any], batch: Batch) -> bool:
        """Open the file of a stored position; False when the position is malformed (a first run, then)."""
        try:
            ident = (int(resume["device"]), int(resume["inode"]))
            offset, head = int(resume["offset"]), bytes.fromhex(str(resume["head"]))
        except (KeyError, TypeError, ValueError):
            return False
        self._skip_to_end = False
        for candidate in self._candidates():
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == ident and st.st_size >= offset and self._open(candidate, batch):
                if self._first_bytes(len(head)) == head:
                    self._offset, self._head = offset, head
                    return True
                self.close()
        detail = "the file of the saved position is gone (rotated away or truncated); reading the current one whole"
        batch.problems.append(Problem("gap", f"{self.path}: {detail}"))
        self._open(self.path, batch)
        return True

    def _candidates(self) -> list[Path]:
        """The path itself, then its rotated siblings (same name plus a suffix), newest first."""
        try:
            siblings = [p for p in self.path.parent.iterdir() if p.name.startswith(self.path.name + ".")]
            siblings += [p for p in self.path.parent.iterdir() if p.name.startswith(self.path.name + "-")]
        except OSError:
            siblings = []
        return [self.path, *sorted(siblings, key=_mtime, reverse=True)]

    def _open(self, path: Path, batch: Batch) -> bool:
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            error = {errno.EACCES: "permission", errno.EPERM: "permission", errno.ENOENT: "missing"}.get(exc.errno or 0)
            batch.problems.append(Problem(error or "open", f"{path}: {exc.strerror}"))
            return False
        st = os.fstat(self._fd)
        self._ident, self._offset, self._head = (st.st_dev, st.st_ino), 0, b""
        return True

    # -- following
    def _follow_rotation(self, limit: int, batch: Batch) -> bool:
        """True to go on reading the open file; False when the limit ran out while finishing a rotated one."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True  # between a rename and the new file's creation: keep reading the old one
        if (st.st_dev, st.st_ino) == self._ident:
            return True
        self._read_lines(limit, batch, final=True)
        if len(batch.lines) >= limit:
            return False
        self.close()
        return self._open(self.path, batch)

    def _check_rewritten(self) -> None:
        if self._fd is None:
            return
        if os.fstat(self._fd).st_size < self._offset or self._first_bytes(len(self._head)) != self._head:
            self._offset, self._head = 0, b""

    def _read_lines(self, limit: int, batch: Batch, final: bool) -> None:
        while self._fd is not None and len(batch.lines) < limit:
            try:
                data = os.pread(self._fd, _CHUNK, self._offset)
            except OSError as exc:  # an I/O error, a directory: say so, try again from here next time
                batch.problems.append(Problem("read", f"{self.path}: {exc.strerror}"))
                return
            if not data:
                return
            *complete, tail = data.split(b"\n")
            if not complete:
                if not final and len(data) < _CHUNK:
                    return  # a partial line: wait for its newline
                self._offset += len(tail)  # a rotated file's unterminated last line, or an overlong line
                self._emit(tail, batch)
                continue
            for raw in complete:
                if len(batch.lines) >= limit:
                    return
                self._offset += len(raw) + 1
                self._emit(raw, batch)

    def _emit(self, raw: bytes, batch: Batch) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if text.strip():
            batch.lines.append(Line(text, stamp(text, self._clocks)))

    def _extend_head(self) -> None:
        if self._fd is not None and len(self._head) < HEAD_BYTES:
            self._head = self._first_bytes(HEAD_BYTES)

    def _first_bytes(self, n: int) -> bytes:
        if self._fd is None or n <= 0:
            return b""
        try:
            return os.pread(self._fd, n, 0)
        except OSError:
            return b""  # the read below reports it


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
