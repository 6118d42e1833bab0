"""Snapshot bytes: versioned, atomic, and a snapshot we cannot read means a cold start, not a crash."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from vigil.analytics.stages.state import SnapshotStore, decode_snapshot, encode_snapshot

from vigil.bus import TopicPartition

TP = TopicPartition("vigil.telemetry.v1", 3)


def test_round_trip_through_the_store(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save(TP, {"offset": 42, "telemetry": {"cols": {"z_n": b"\x01\x00"}}})
    assert store.path(TP).name == "vigil.telemetry.v1-3.snap"
    assert store.load(TP) == {"offset": 42, "telemetry": {"cols": {"z_n": b"\x01\x00"}}}
    assert [p.name for p in tmp_path.iterdir()] == ["vigil.telemetry.v1-3.snap"]  # no temp file left


def test_unknown_version_starts_cold_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert decode_snapshot(encode_snapshot({"offset": 1}, version=99)) is None
    assert "starting cold" in caplog.text


@pytest.mark.parametrize("data", [b"", b"VGLSNAP", b"VGLSNAP\x01\x00\xc1\xc1", b"not a snapshot at all"])
def test_corrupt_snapshot_starts_cold(tmp_path: Path, data: bytes) -> None:
    store = SnapshotStore(tmp_path)
    store.path(TP).write_bytes(data)
    assert store.load(TP) is None


def test_missing_snapshot_is_a_cold_start(tmp_path: Path) -> None:
    assert SnapshotStore(tmp_path).load(TP) is None
