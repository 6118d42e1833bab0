"""``journalctl -k -f -o json``: the kernel messages journald kept, followed through a child process.

Each output line is one JSON entry; ``__CURSOR`` names its place in the journal and
``--after-cursor`` resumes right after it, so the position is the cursor of the last entry
returned. ``MESSAGE`` is a string, or a list of byte values when it was not UTF-8;
``__REALTIME_TIMESTAMP`` is microseconds since the epoch (when journald stored the line, within
milliseconds of the kernel printing it). ``-k`` implies this boot only. The child's stdout is read
without blocking; a partial line waits for the next call. A child that exits is reported as a
Problem and restarted on the next call from the last entry returned, so nothing is read twice.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from typing import IO, Any

from vigil.collectors.base import Problem
from vigil.collectors.kernel.sources import Batch, Line, StartAt
from vigil.collectors.kernel.timestamps import Stamped

_CHUNK = 65536
_BUFFER_MAX = 8 << 20  # bytes of unread journal output held at once
_STDERR_KEEP = 2000


def entry_line(entry: dict[str, Any]) -> Line | None:
    """One journal entry as a Line (None when it has no message)."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):
        message = bytes(b for b in message if isinstance(b, int) and 0 <= b < 256).decode("utf-8", "replace")
    if not isinstance(message, str):
        return None
    try:
        ts: float | None = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
    except (KeyError, TypeError, ValueError):
        ts = None
    return Line(message, Stamped(ts, message))


class JournalSource:
    kind = "journal"

    def __init__(self, binary: str, extra_args: Sequence[str], position: dict[str, Any] | None, start_at: StartAt):
        self.binary = binary
        self.extra_args = list(extra_args)
        cursor = position.get("cursor") if position else None
        self._cursor: str | None = cursor if isinstance(cursor, str) else None
        self._start_at = start_at
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._stderr = b""

    def command(self) -> list[str]:
        if self._cursor:
            where = ["--after-cursor", self._cursor]
        else:
            where = ["-n", "all" if self._start_at == "beginning" else "0"]
        return [self.binary, "-k", "-f", "-o", "json", "--no-pager", *self.extra_args, *where]

    def read(self, limit: int) -> Batch:
        batch = Batch()
        if self._proc is None and not self._spawn(batch):
            return batch
        proc = self._proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        self._buffer += _drain(proc.stdout, _BUFFER_MAX - len(self._buffer))
        self._stderr = (self._stderr + _drain(proc.stderr, _STDERR_KEEP))[-_STDERR_KEEP:]
        if len(self._buffer) >= _BUFFER_MAX and b"\n" not in self._buffer:  # no entry is this long
            batch.problems.append(Problem("parse", f"journal output without a newline in {_BUFFER_MAX} bytes"))
            self._buffer = b""
        complete, newline, partial = self._buffer.rpartition(b"\n")
        if newline:
            entries = complete.split(b"\n")
            for raw in entries[:limit]:
                self._take(raw, batch)
            rest = entries[limit:]
            self._buffer = (b"\n".join(rest) + b"\n" if rest else b"") + partial
        if proc.poll() is not None:  # what it wrote between our read and its exit
            self._buffer += _drain(proc.stdout, _BUFFER_MAX - len(self._buffer))
        if proc.poll() is not None and b"\n" not in self._buffer:
            detail = self._stderr.decode("utf-8", "replace").strip()[-300:]
            batch.problems.append(Problem("exited", f"journalctl exited with {proc.returncode}: {detail}"))
            self.close()
        if self._cursor is not None:
            batch.position = {"cursor": self._cursor}
        return batch

    def close(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()
        self._proc = None
        self._buffer = b""  # a partial line is read again after the cursor by the next child

    def _take(self, raw: bytes, batch: Batch) -> None:
        if not raw.strip():
            return
        try:
            entry = json.loads(raw)
        except ValueError:
            batch.problems.append(Problem("parse", f"journal entry is not JSON: {raw[:80]!r}"))
            return
        if not isinstance(entry, dict):
            return
        if isinstance(entry.get("__CURSOR"), str):
            self._cursor = entry["__CURSOR"]
        line = entry_line(entry)
        if line is not None:
            batch.lines.append(line)

    def _spawn(self, batch: Batch) -> bool:
        try:
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except FileNotFoundError:
            batch.problems.append(Problem("missing_binary", f"{self.binary} not found"))
            return False
        except OSError as exc:
            batch.problems.append(Problem("spawn", f"{self.binary}: {exc.strerror}"))
            return False
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                os.set_blocking(pipe.fileno(), False)
        self._stderr = b""
        return True


def _drain(pipe: IO[bytes], budget: int) -> bytes:
    """What the pipe holds now, up to ``budget`` bytes (a backlog is read over several calls)."""
    chunks = []
    while budget > 0:
        try:
            chunk = os.read(pipe.fileno(), min(_CHUNK, budget))
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        budget -= len(chunk)
    return b"".join(chunks)
