"""``/dev/kmsg``: the kernel's ring buffer, one record per ``read()``, read without blocking.

Each record is ``prio,seq,usec,flags;message`` followed by optional `` KEY=value`` lines
(Documentation/ABI/testing/dev-kmsg); unprintable bytes arrive escaped as ``\\xNN``. The position
is the last sequence number returned and the boot it belongs to (``/proc/sys/kernel/random/boot_id``):
sequence numbers restart at every boot, so a position from another boot means "read this boot's
ring from its start". A fresh open starts at the oldest record still in the ring, so resuming is
"skip every record up to the stored sequence number"; a jump in sequence numbers means the ring
overwrote records before they were read, reported as a ``gap`` Problem with the count.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

from vigil.collectors.base import Problem
from vigil.collectors.kernel.sources import Batch, Line, StartAt
from vigil.collectors.kernel.timestamps import Stamped

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_RECORD_MAX = 8192  # printk's record limit is 1 KiB of text plus the dictionary; EINVAL if too small
_ESCAPE = re.compile(rb"\\x([0-9a-f]{2})")


def read_boot_id(path: Path = BOOT_ID) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def parse_record(data: bytes) -> tuple[int, int, str] | None:
    """``(seq, usec, message)`` of one kmsg record, or None when it is not one."""
    head, sep, rest = data.partition(b";")
    fields = head.split(b",")
    if not sep or len(fields) < 4:
        return None
    try:
        seq, usec = int(fields[1]), int(fields[2])
    except ValueError:
        return None
    message = rest.split(b"\n", 1)[0]
    unescaped = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), message)
    return seq, usec, unescaped.decode("utf-8", "replace")


class KmsgSource:
    kind = "kmsg"

    def __init__(self, path: Path, position: dict[str, Any] | None, start_at: StartAt, boot_time: float, boot_id: str):
        self.path = path
        self._boot_time = boot_time
        self._boot_id = boot_id
        resumed = position is not None and position.get("boot_id") == boot_id and isinstance(position.get("seq"), int)
        self._last_seq: int | None = int(position["seq"]) if resumed and position else None
        self._seek_end = not resumed and start_at == "end"
        self._fd: int | None = None

    def read(self, limit: int) -> Batch:
        batch = Batch()
        if self._fd is None and not self._open(batch):
            return batch
        while len(batch.lines) < limit and self._fd is not None:
            try:
                data = os.read(self._fd, _RECORD_MAX)
            except BlockingIOError:
                break
            except BrokenPipeError:  # our place was overwritten; the next read returns the oldest record
                continue
            except OSError as exc:
                batch.problems.append(Problem("read", f"{self.path}: {exc.strerror}"))
                self.close()
                break
            if not data:
                break
            self._take(data, batch)
        if self._last_seq is not None:
            batch.position = {"boot_id": self._boot_id, "seq": self._last_seq}
        return batch

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _take(self, data: bytes, batch: Batch) -> None:
        record = parse_record(data)
        if record is None:
            batch.problems.append(Problem("parse", f"not a kmsg record: {data[:80]!r}"))
            return
        seq, usec, message = record
        if self._last_seq is not None:
            if seq <= self._last_seq:
                return  # returned before this restart (or before a reopen)
            if seq > self._last_seq + 1:
                batch.problems.append(Problem("gap", f"{seq - self._last_seq - 1} kmsg records overwritten unread"))
        self._last_seq = seq
        batch.lines.append(Line(message, Stamped(self._boot_time + usec / 1e6, message)))

    def _open(self, batch: Batch) -> bool:
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            error = {errno.EACCES: "permission", errno.EPERM: "permission", errno.ENOENT: "missing"}.get(exc.errno or 0)
            batch.problems.append(Problem(error or "open", f"{self.path}: {exc.strerror}"))
            return False
        if self._seek_end:
            os.lseek(self._fd, 0, os.SEEK_END)
            self._seek_end = False
        return True
