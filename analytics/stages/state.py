"""Versioned snapshots of detector state, one file per partition, written atomically.

Format: ``VGLSNAP`` magic, a little-endian uint16 format version, then a msgpack map (arrays as
raw little-endian bytes inside it). A file with another version, or one that does not parse,
is ignored with a warning and the partition starts cold: losing warm state costs a warm-up,
refusing to start would cost the whole service.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import msgpack

from vigil.bus import TopicPartition
from vigil.files import private_dir

log = logging.getLogger(__name__)

MAGIC = b"VGLSNAP"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<7sH")


def encode_snapshot(body: dict[str, Any], version: int = FORMAT_VERSION) -> bytes:
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return _HEADER.pack(MAGIC, version) + packed


def decode_snapshot(data: bytes) -> dict[str, Any] | None:
    """The snapshot body, or None (with a warning) when the bytes are not a snapshot we can read."""
    if len(data) < _HEADER.size:
        log.warning("snapshot too short (%d bytes): starting cold", len(data))
        return None
    magic, version = _HEADER.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION:
        log.warning("snapshot format %r v%s is not %r v%d: starting cold", magic, version, MAGIC, FORMAT_VERSION)
        return None
    try:
        body = msgpack.unpackb(data[_HEADER.size :], raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        log.warning("snapshot body is corrupt (%s): starting cold", exc)
        return None
    return body if isinstance(body, dict) else None


class SnapshotStore:
    """``<state_dir>/<topic>-<partition>.snap``; a crash mid-write leaves the previous file intact."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = private_dir(Path(state_dir))  # snapshot files are mkstemp's 0600

    def path(self, tp: TopicPartition) -> Path:
        return self.state_dir / f"{tp.topic}-{tp.partition}.snap"

    def save(self, tp: TopicPartition, body: dict[str, Any]) -> None:
        target = self.path(tp)
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=target.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(encode_snapshot(body))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, tp: TopicPartition) -> dict[str, Any] | None:
        try:
            data = self.path(tp).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read snapshot %s (%s): starting cold", self.path(tp), exc.strerror)
            return None
        return decode_snapshot(data)
