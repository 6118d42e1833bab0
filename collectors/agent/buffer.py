"""The agent's delivery buffer: one FIFO of encoded records, in memory and spilled to disk, oldest first.

Ordering invariant: every record in memory is older than every record on disk. A record goes to
memory only while nothing is spilled and memory has room; once anything is on disk, new records go
to the disk tail until the disk is drained. Memory is written to disk as a whole, as a segment named
before all others, when its oldest record has waited ``spill_after`` without being acknowledged
(the broker is away or slow) and at shutdown. So reading memory first, then segments by name, is
append order, across restarts too; and a SIGKILL loses at most the records of the last
``spill_after`` (plus the agent loop's check interval), never a whole outage.

A record leaves the buffer only through ``commit``: the delivery thread ``peek``s a chunk, sends
it, and commits the prefix the broker settled (acknowledged, or rejected for good, which it counts
as dropped with reason ``rejected``). What the buffer cannot keep is dropped newest-first (the
record being appended) and reported through ``on_drop(stream, reason, count)``: ``memory_full``
(spilling disabled), ``spill_full``, ``spill_error`` (the disk failed), ``corrupt`` (a damaged
spilled record), ``shutdown`` (spilling disabled or failing at shutdown).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from vigil.collectors.agent.config import BufferConfig
from vigil.collectors.agent.spill import Entry, SpillLog

log = logging.getLogger(__name__)

DropCallback = Callable[[str, str, int], None]


class DeliveryBuffer:
    def __init__(
        self,
        config: BufferConfig,
        spill_dir: Path | None,
        on_drop: DropCallback,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._on_drop = on_drop
        self._now = monotonic
        self._cond = threading.Condition()
        self._memory: deque[Entry] = deque()
        self._memory_at: deque[float] = deque()  # when each memory record was appended
        self._memory_bytes = 0
        self._spill = self._open_spill(spill_dir)
        self._next_seq = self._spill.next_seq if self._spill is not None else 0
        self._corrupt_seen = self._report_corrupt(0)
        self._peeked: Literal["memory", "spill"] | None = None
        self._peeked_count = 0
        self._last_sync = self._now()
        self._closed = False

    def _open_spill(self, spill_dir: Path | None) -> SpillLog | None:
        if spill_dir is None or self.config.spill_max_bytes == 0:
            return None
        try:
            return SpillLog(spill_dir, self.config.spill_max_bytes, self.config.segment_bytes)
        except OSError as exc:
            log.error("spill directory %s unusable (%s): records past the memory bound will be dropped", spill_dir, exc)
            return None

    # ------------------------------------------------------------------ producer side
    def append(self, stream: str, key: bytes, value: bytes, samples: int = 0) -> bool:
        """Queue one record; False when it had to be dropped (counted through ``on_drop``)."""
        with self._cond:
            self._spill_overdue()
            entry = Entry(self._next_seq, stream, key, value, samples)
            self._next_seq += 1
            if self._closed:
                reason = "shutdown"
            elif self._spill_pending() == 0 and self._memory_has_room(entry):
                self._memory.append(entry)
                self._memory_at.append(self._now())
                self._memory_bytes += entry.size
                self._cond.notify_all()
                return True
            else:
                reason = self._append_spill(entry)
                if not reason:
                    self._cond.notify_all()
                    return True
        self._on_drop(stream, reason, 1)
        return False

    def _memory_has_room(self, entry: Entry) -> bool:
        return (
            len(self._memory) < self.config.memory_records
            and self._memory_bytes + entry.size <= self.config.memory_bytes
        )

    def _append_spill(self, entry: Entry) -> str:
        """'' when spilled, else the drop reason."""
        if self._spill is None:
            return "memory_full"
        try:
            return "" if self._spill.append(entry) else "spill_full"
        except OSError as exc:
            log.error("cannot spill to %s: %s", self._spill.dir, exc)
            return "spill_error"

    # ------------------------------------------------------------------ delivery side
    def peek(self, max_records: int, max_bytes: int, timeout_s: float = 0.0) -> list[Entry]:
        """The oldest records, not removed; waits up to ``timeout_s`` for one to arrive."""
        with self._cond:
            if self._empty() and timeout_s > 0 and not self._closed:
                self._cond.wait(timeout_s)
            self._peeked = None
            if self._memory:
                self._peeked = "memory"
                out: list[Entry] = []
                taken = 0
                for entry in self._memory:
                    if len(out) >= max_records or (out and taken + entry.size > max_bytes):
                        break
                    out.append(entry)
                    taken += entry.size
                self._peeked_count = len(out)
                return out
            if self._spill is not None and not self._closed:
                out = self._read_spill(max_records, max_bytes)
                if out:
                    self._peeked = "spill"
                return out
            return []

    def _read_spill(self, max_records: int, max_bytes: int) -> list[Entry]:
        assert self._spill is not None
        try:
            out = self._spill.read(max_records, max_bytes)
        except OSError as exc:
            log.error("cannot read the spill in %s: %s", self._spill.dir, exc)
            return []
        self._corrupt_seen = self._report_corrupt(self._corrupt_seen)
        return out

    def commit(self, count: int) -> None:
        """Remove the first ``count`` records of the last peek (acknowledged by the broker)."""
        with self._cond:
            if count <= 0 or self._closed or self._peeked is None:
                return
            if self._peeked == "memory":
                for _ in range(min(count, len(self._memory))):
                    self._memory_bytes -= self._memory.popleft().size
                    self._memory_at.popleft()
            elif self._spill is not None:
                self._commit_spill(count)
            self._peeked = None
            self._cond.notify_all()

    def _commit_spill(self, count: int) -> None:
        assert self._spill is not None
        try:
            self._spill.commit(count)
        except OSError as exc:  # the records were delivered; only the ack offset could not be saved
            log.error("cannot record delivery progress in %s: %s (a restart may send some again)", self._spill.dir, exc)

    def stats(self) -> dict[str, int]:
        with self._cond:
            spill_records = self._spill.records if self._spill is not None else 0
            spill_bytes = self._spill.bytes if self._spill is not None else 0
            return {
                "memory_records": len(self._memory),
                "memory_bytes": self._memory_bytes,
                "spill_records": spill_records,
                "spill_bytes": spill_bytes,
            }

    def wake(self) -> None:
        """Wake a ``peek`` waiting for records (the delivery thread is stopping)."""
        with self._cond:
            self._cond.notify_all()

    def empty(self) -> bool:
        with self._cond:
            return self._empty()

    def wait_empty(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(self._empty, timeout_s)

    def close(self) -> None:
        """Shutdown: write what is still in memory to the spill (before every segment), then close."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            remaining = list(self._memory)
            self._memory.clear()
            self._memory_at.clear()
            self._memory_bytes = 0
            kept = self._spill_head(remaining)
            if self._spill is not None:
                self._spill.close()
            self._cond.notify_all()
        lost: dict[str, int] = {}
        for entry in remaining[kept:]:
            lost[entry.stream] = lost.get(entry.stream, 0) + 1
        for stream, count in lost.items():
            self._on_drop(stream, "shutdown", count)
        if kept:
            log.info("spilled %d records still in memory to %s", kept, self._spill.dir if self._spill else "?")

    def _spill_head(self, entries: list[Entry]) -> int:
        if self._spill is None or not entries:
            return 0
        try:
            return self._spill.write_head(entries)
        except OSError as exc:
            log.error("cannot spill %d records at shutdown: %s", len(entries), exc)
            return 0

    # ------------------------------------------------------------------ the time bound
    def spill_overdue(self) -> int:
        """Write memory to disk if its oldest record waited ``spill_after``; fsync the active segment
        at most every ``spill_after``. The agent loop calls this a few times a second; returns how
        many records moved."""
        with self._cond:
            return self._spill_overdue()

    def _spill_overdue(self) -> int:
        if self._spill is None or self._closed:
            return 0
        now = self._now()
        moved = 0
        if self._memory_at and now - self._memory_at[0] >= self.config.spill_after:
            moved = self._memory_to_spill()
        if self._spill.unsynced and now - self._last_sync >= self.config.spill_after:
            self._last_sync = now
            try:
                self._spill.sync()
            except OSError as exc:
                log.error("cannot fsync the spill in %s: %s", self._spill.dir, exc)
        return moved

    def _memory_to_spill(self) -> int:
        """All of memory becomes one head segment, or none of it (order needs memory older than disk)."""
        assert self._spill is not None
        entries = list(self._memory)
        if sum(e.size for e in entries) > self._spill.room():
            return 0  # the spill is full: the records stay in memory, where they still count
        in_flight = self._peeked_count if self._peeked == "memory" else 0
        try:
            kept = self._spill.write_head(entries, in_flight)
        except OSError as exc:
            log.error("cannot spill %d unacknowledged records to %s: %s", len(entries), self._spill.dir, exc)
            return 0
        self._memory.clear()
        self._memory_at.clear()
        self._memory_bytes = 0
        if in_flight:
            self._peeked = "spill"  # the chunk out for delivery is now the head segment's start
        log.info("%d records unacknowledged for %gs: written to %s", kept, self.config.spill_after, self._spill.dir)
        return kept

    # ------------------------------------------------------------------ internals
    def _spill_pending(self) -> int:
        return self._spill.records if self._spill is not None else 0

    def _empty(self) -> bool:
        return not self._memory and self._spill_pending() == 0

    def _report_corrupt(self, seen: int) -> int:
        now = self._spill.corrupt_records if self._spill is not None else 0
        if now > seen:
            self._on_drop("unknown", "corrupt", now - seen)
        return now
