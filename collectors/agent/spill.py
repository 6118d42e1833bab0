"""Records spilled to disk: append-only segment files, read back oldest first, deleted once acknowledged.

``<dir>/<first_seq>.seg`` holds records in append order; segment names are the sequence number of
their first record, so sorting them by name is the delivery order (memory records written as a
"head" segment, when they waited too long or at shutdown, are older than any segment and get a
lower name). ``<first_seq>.ack`` holds the byte offset up to which the broker acknowledged the
segment, rewritten atomically (a temporary file renamed over it) after each acknowledged chunk, so a
restarted agent resumes after the last acknowledged record instead of sending the whole segment again.

A record is ``crc32 | value length | samples | stream length | key length | stream | key | value``
(little-endian ``<IIIBH``); the CRC covers everything after it. A torn tail (a crash in the middle of
a write) fails its length or CRC check when the segments are scanned at start, and the segment is
cut there.

Durability: every write reaches the kernel at once, so a killed agent (SIGKILL, OOM) loses nothing
that was written. Against a power cut, a segment is fsync'ed when it is sealed (rolled over, or
closed at shutdown), a head segment before it is renamed into place, the directory after a segment
is created, and the active segment whenever ``sync`` is called (the buffer does so at most every
``spill_after``). ``.ack`` files are not fsync'ed: one lost to a power cut only sends records again.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from vigil.files import private_dir, write_private

log = logging.getLogger(__name__)

_CRC = struct.Struct("<I")
_META = struct.Struct("<IIBH")  # value length, samples, stream length, key length
HEADER_BYTES = _CRC.size + _META.size


class Entry(NamedTuple):
    """One encoded record waiting for the broker; ``samples`` is what a telemetry batch carries."""

    seq: int
    stream: str
    key: bytes
    value: bytes
    samples: int

    @property
    def size(self) -> int:
        return len(self.value) + len(self.key) + len(self.stream) + HEADER_BYTES


def encode_entry(entry: Entry) -> bytes:
    stream = entry.stream.encode()
    meta = _META.pack(len(entry.value), entry.samples, len(stream), len(entry.key))
    crc = zlib.crc32(entry.value, zlib.crc32(entry.key, zlib.crc32(stream, zlib.crc32(meta))))
    return b"".join((_CRC.pack(crc), meta, stream, entry.key, entry.value))


@dataclass
class Segment:
    first_seq: int
    path: Path
    size: int = 0  # bytes in the file
    records: int = 0  # records in the file
    acked: int = 0  # byte offset acknowledged by the broker
    acked_records: int = 0

    @property
    def pending(self) -> int:
        return self.records - self.acked_records


class SpillLog:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        private_dir(self.dir)
        self.segments: list[Segment] = []
        self.next_seq = 0
        self.corrupt_records = 0  # torn or damaged records found (and cut off) at start
        self._fd: int | None = None  # the active (last) segment, open for appending
        self.unsynced = False  # the active segment has writes not yet fsync'ed
        self._read_ends: list[int] = []  # end offsets of the records the last read returned
        self._load()

    # ------------------------------------------------------------------ state
    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def records(self) -> int:
        return sum(s.pending for s in self.segments)

    # ------------------------------------------------------------------ writing
    def append(self, entry: Entry) -> bool:
        """Append at the tail; False when the spill is full. Raises OSError when the disk fails."""
        data = encode_entry(entry)
        if self.bytes + len(data) > self.max_bytes:
            return False
        if self._fd is None or self.segments[-1].size >= self.segment_bytes:
            self._open_segment(entry.seq)
        assert self._fd is not None
        segment = self.segments[-1]
        try:
            _write_all(self._fd, data)
        except OSError:
            os.ftruncate(self._fd, segment.size)  # a partial record would break the framing after it
            raise
        segment.size += len(data)
        segment.records += 1
        self.unsynced = True
        self.next_seq = max(self.next_seq, entry.seq + 1)
        return True

    def sync(self) -> None:
        """fsync the active segment's writes (a power cut then cannot take them)."""
        if self._fd is not None and self.unsynced:
            os.fsync(self._fd)
        self.unsynced = False

    def room(self) -> int:
        return self.max_bytes - self.bytes

    def write_head(self, entries: list[Entry], in_flight: int = 0) -> int:
        """Write records older than every segment into a segment of their own (memory records that
        waited too long, or the memory buffer at shutdown); returns how many fit under ``max_bytes``.

        ``in_flight``: the first records of ``entries`` are out for delivery, so the next ``commit``
        acknowledges them in this segment, as if ``read`` had returned them."""
        if not entries:
            return 0
        budget = self.max_bytes - self.bytes
        chunks: list[bytes] = []
        for entry in entries:
            data = encode_entry(entry)
            if len(data) > budget:
                break
            budget -= len(data)
            chunks.append(data)
        if not chunks:
            return 0
        path = self._path(entries[0].seq, ".seg")
        _write_durably(path, b"".join(chunks))
        size = sum(map(len, chunks))
        self.segments.insert(0, Segment(entries[0].seq, path, size=size, records=len(chunks)))
        ends = itertools.accumulate(len(chunk) for chunk in chunks[: min(in_flight, len(chunks))])
        self._read_ends = list(ends)
        return len(chunks)

    # ------------------------------------------------------------------ reading
    def read(self, max_records: int, max_bytes: int) -> list[Entry]:
        """The oldest unacknowledged records, from one segment (at least one record, if any)."""
        while self.segments:
            out = self._read_segment(self.segments[0], max_records, max_bytes)
            if out:
                return out
        return []

    def _read_segment(self, segment: Segment, max_records: int, max_bytes: int) -> list[Entry]:
        self._read_ends = []
        out: list[Entry] = []
        taken = 0
        with open(segment.path, "rb") as file:
            file.seek(segment.acked)
            offset = segment.acked
            while offset < segment.size and len(out) < max_records and (not out or taken < max_bytes):
                entry, length = _read_entry(file, segment.first_seq + segment.acked_records + len(out))
                if entry is None:
                    log.error("spill segment %s is damaged at byte %d: the rest of it is skipped", segment.path, offset)
                    self.corrupt_records += 1
                    segment.size = offset
                    if segment is self.segments[-1]:
                        self._close_fd()  # appends go to a new segment, not after the damage
                    break
                offset += length
                taken += length
                out.append(entry)
                self._read_ends.append(offset)
        if not out and segment.acked >= segment.size:
            self._finish(segment)
        return out

    def commit(self, count: int) -> None:
        """The first ``count`` records of the last read were acknowledged (or dropped)."""
        if count <= 0 or not self._read_ends:
            return
        segment = self.segments[0]
        segment.acked = self._read_ends[count - 1]
        segment.acked_records += count
        self._read_ends = self._read_ends[count:]
        if segment.acked >= segment.size:
            self._finish(segment)
        else:
            _replace_text(self._path(segment.first_seq, ".ack"), str(segment.acked))

    def close(self) -> None:
        """Seal the active segment: fsync it, then close it (shutdown)."""
        self.sync()
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.unsynced = False

    # ------------------------------------------------------------------ internals
    def _path(self, seq: int, suffix: str) -> Path:
        return self.dir / f"{seq:020d}{suffix}"

    def _open_segment(self, first_seq: int) -> None:
        self.close()  # the previous segment is complete: seal it
        path = self._path(first_seq, ".seg")
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        _sync_dir(self.dir)  # the new file's name survives a power cut too
        self.segments.append(Segment(first_seq, path))

    def _finish(self, segment: Segment) -> None:
        """Every record of the segment is acknowledged: delete it (closing it first if active)."""
        if segment is self.segments[-1]:
            self._close_fd()  # delivered: nothing to make durable
        self.segments.remove(segment)
        self._read_ends = []
        segment.path.unlink(missing_ok=True)
        self._path(segment.first_seq, ".ack").unlink(missing_ok=True)

    def _load(self) -> None:
        for stray in self.dir.glob("*.tmp"):
            stray.unlink()
        for path in sorted(self.dir.glob("*.seg")):
            try:
                first_seq = int(path.stem)
            except ValueError:
                log.warning("ignoring %s: not a spill segment name", path)
                continue
            segment = self._scan(Segment(first_seq, path))
            if segment.pending:
                self.segments.append(segment)
            else:
                self._finish_loaded(segment)
            self.next_seq = max(self.next_seq, first_seq + segment.records)
        for ack in self.dir.glob("*.ack"):
            if not ack.with_suffix(".seg").exists():
                ack.unlink()
        if self.segments:
            log.info("spill: %d records in %d segments to replay from %s", self.records, len(self.segments), self.dir)

    def _finish_loaded(self, segment: Segment) -> None:
        segment.path.unlink(missing_ok=True)
        self._path(segment.first_seq, ".ack").unlink(missing_ok=True)

    def _scan(self, segment: Segment) -> Segment:
        """Count the valid records, cut a torn or damaged tail, and find the acknowledged offset."""
        acked = _read_int(self._path(segment.first_seq, ".ack"))
        offset = 0
        with open(segment.path, "rb") as file:
            while True:
                if offset == acked:
                    segment.acked, segment.acked_records = offset, segment.records
                entry, length = _read_entry(file, segment.first_seq + segment.records)
                if entry is None:
                    break
                offset += length
                segment.records += 1
        size = segment.path.stat().st_size
        if offset < size:
            log.warning("spill segment %s: %d damaged bytes at its end cut off", segment.path, size - offset)
            self.corrupt_records += 1
            os.truncate(segment.path, offset)
        segment.size = offset
        return segment


def _read_entry(file: BinaryIO, seq: int) -> tuple[Entry | None, int]:
    head = file.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        return None, 0
    (crc,) = _CRC.unpack_from(head)
    value_len, samples, stream_len, key_len = _META.unpack_from(head, _CRC.size)
    body_len = stream_len + key_len + value_len
    body = file.read(body_len)
    if len(body) < body_len or zlib.crc32(body, zlib.crc32(head[_CRC.size :])) != crc:
        return None, 0
    try:
        stream = body[:stream_len].decode()
    except UnicodeDecodeError:
        return None, 0
    key = body[stream_len : stream_len + key_len]
    return Entry(seq, stream, key, body[stream_len + key_len :], samples), HEADER_BYTES + body_len


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _replace_text(path: Path, text: str) -> None:
    write_private(path, text, durable=False)  # atomic: a restarted agent reads the old offset or the new


def _write_durably(path: Path, data: bytes) -> None:
    """A whole private file written under a temporary name, fsync'ed, renamed into place, directory fsync'ed."""
    write_private(path, data, durable=True)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0
