"""The delivery buffer: memory then disk, drained oldest first, across restarts; drops are counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from vigil.collectors.agent.buffer import DeliveryBuffer
from vigil.collectors.agent.config import BufferConfig

Drops = list[tuple[str, str, int]]


def make(tmp_path: Path, drops: Drops, **config: int) -> DeliveryBuffer:
    settings = {"memory_records": 5, "memory_bytes": 1 << 20, "segment_bytes": 65_536, **config}
    return DeliveryBuffer(BufferConfig(**settings), tmp_path / "spill", lambda s, r, n: drops.append((s, r, n)))


def fill(buffer: DeliveryBuffer, start: int, count: int, stream: str = "telemetry") -> None:
    for i in range(start, start + count):
        assert buffer.append(stream, b"node-1", f"record-{i:05d}".encode(), samples=i)


def drain(buffer: DeliveryBuffer, chunk: int = 3) -> list[str]:
    out: list[str] = []
    while batch := buffer.peek(chunk, 1 << 20):
        out += [e.value.decode() for e in batch]
        buffer.commit(len(batch))
    return out


def names(start: int, stop: int) -> list[str]:
    return [f"record-{i:05d}" for i in range(start, stop)]


def test_records_spill_when_memory_is_full_and_come_back_in_order(tmp_path: Path) -> None:
    drops: Drops = []
    buffer = make(tmp_path, drops)
    fill(buffer, 0, 40)
    stats = buffer.stats()
    assert stats["memory_records"] == 5 and stats["spill_records"] == 35 and stats["spill_bytes"] > 0
    assert drain(buffer) == names(0, 40)
    assert buffer.empty() and not drops
    assert not list((tmp_path / "spill").glob("*.seg"))  # acknowledged segments are deleted


def test_new_records_queue_behind_the_spill_even_when_memory_has_room_again(tmp_path: Path) -> None:
    buffer = make(tmp_path, [])
    fill(buffer, 0, 10)  # 5 in memory, 5 on disk
    first = buffer.peek(5, 1 << 20)
    buffer.commit(len(first))  # memory is empty now, the disk is not
    fill(buffer, 10, 3)
    assert buffer.stats()["memory_records"] == 0
    assert [e.value.decode() for e in first] + drain(buffer) == names(0, 13)
    fill(buffer, 13, 2)  # the spill is drained: memory again
    assert buffer.stats()["memory_records"] == 2


def test_a_record_leaves_only_when_committed(tmp_path: Path) -> None:
    buffer = make(tmp_path, [])
    fill(buffer, 0, 8)
    assert [e.value for e in buffer.peek(3, 1 << 20)] == [e.value for e in buffer.peek(3, 1 << 20)]
    buffer.commit(2)  # a partial acknowledgement: the third is sent again
    assert drain(buffer) == names(2, 8)


def test_a_full_spill_drops_the_newest_and_counts_it(tmp_path: Path) -> None:
    drops: Drops = []
    buffer = make(tmp_path, drops, memory_records=2, spill_max_bytes=200)
    for i in range(20):
        buffer.append("logs", b"n", f"record-{i:05d}".encode())
    kept = drain(buffer)
    assert kept == names(0, len(kept)) and 2 < len(kept) < 20
    assert sum(n for _, _, n in drops) == 20 - len(kept)
    assert {(s, r) for s, r, _ in drops} == {("logs", "spill_full")}


def test_without_spill_a_full_memory_drops_and_counts(tmp_path: Path) -> None:
    drops: Drops = []
    buffer = make(tmp_path, drops, spill_max_bytes=0)
    kept = [buffer.append("telemetry", b"n", name.encode()) for name in names(0, 7)]
    assert kept == [True] * 5 + [False] * 2
    assert drain(buffer) == names(0, 5)
    assert drops == [("telemetry", "memory_full", 1)] * 2


def test_memory_and_spill_survive_a_restart_in_order(tmp_path: Path) -> None:
    buffer = make(tmp_path, [])
    fill(buffer, 0, 12)  # 5 in memory, 7 on disk
    first = buffer.peek(2, 1 << 20)
    buffer.commit(len(first))  # 0, 1 delivered
    buffer.close()  # memory (2..4) goes to a segment named before the others
    again = make(tmp_path, [])
    assert again.stats()["spill_records"] == 10
    fill(again, 12, 3)
    assert drain(again) == names(2, 15)


def test_a_restart_resumes_after_the_last_acknowledged_spilled_record(tmp_path: Path) -> None:
    buffer = make(tmp_path, [], memory_records=1)
    fill(buffer, 0, 10)  # 1 in memory, 9 spilled
    buffer.commit(len(buffer.peek(1, 1 << 20)))
    spilled = buffer.peek(4, 1 << 20)
    buffer.commit(3)  # three spilled records acknowledged, then the agent is killed (no close)
    assert [e.value.decode() for e in spilled] == names(1, 5)
    again = make(tmp_path, [], memory_records=1)
    assert drain(again) == names(4, 10)


def test_a_torn_tail_is_cut_and_counted_and_the_rest_replays(tmp_path: Path) -> None:
    buffer = make(tmp_path, [], memory_records=1)
    fill(buffer, 0, 6)
    (segment,) = (tmp_path / "spill").glob("*.seg")
    with open(segment, "ab") as file:
        file.write(b"\x01\x02\x03 half a record")  # a crash in the middle of a write
    drops: Drops = []
    again = make(tmp_path, drops, memory_records=1)
    assert drain(again) == names(1, 6)
    assert drops == [("unknown", "corrupt", 1)]


def test_segments_roll_over_and_are_replayed_by_name(tmp_path: Path) -> None:
    buffer = make(tmp_path, [], memory_records=1, segment_bytes=65_536)
    big = 5000
    for i in range(60):
        buffer.append("telemetry", b"n", f"record-{i:05d}".encode() + b"x" * big)
    assert len(list((tmp_path / "spill").glob("*.seg"))) >= 4
    buffer.close()
    again = make(tmp_path, [], memory_records=1, segment_bytes=65_536)
    assert [v[:12] for v in drain(again, chunk=7)] == names(0, 60)


def test_closing_with_spill_disabled_counts_what_is_lost(tmp_path: Path) -> None:
    drops: Drops = []
    buffer = make(tmp_path, drops, spill_max_bytes=0)
    fill(buffer, 0, 3)
    buffer.close()
    assert drops == [("telemetry", "shutdown", 3)]


def test_an_unusable_spill_directory_degrades_to_memory_only(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    drops: Drops = []
    on_drop = lambda s, r, n: drops.append((s, r, n))  # noqa: E731
    buffer = DeliveryBuffer(BufferConfig(memory_records=2), not_a_dir / "spill", on_drop)
    fill(buffer, 0, 2)
    assert not buffer.append("telemetry", b"n", b"x")  # memory full, and no spill to go to
    assert drops == [("telemetry", "memory_full", 1)]


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def timed(tmp_path: Path, clock: FakeMonotonic, **config: int) -> DeliveryBuffer:
    settings = {"memory_records": 1000, "memory_bytes": 1 << 20, "segment_bytes": 65_536, "spill_after": 5, **config}
    return DeliveryBuffer(BufferConfig(**settings), tmp_path / "spill", lambda s, r, n: None, clock)


def test_records_unacknowledged_for_spill_after_reach_the_disk_and_survive_a_kill(tmp_path: Path) -> None:
    clock = FakeMonotonic()
    buffer = timed(tmp_path, clock)
    fill(buffer, 0, 4)
    clock.now += 4.9
    assert buffer.spill_overdue() == 0 and buffer.stats()["memory_records"] == 4  # memory has room: wait
    clock.now += 0.2
    fill(buffer, 4, 2)  # the append itself notices that the oldest waited 5 s
    stats = buffer.stats()
    assert (stats["memory_records"], stats["memory_bytes"], stats["spill_records"]) == (0, 0, 6)
    clock.now += 1
    fill(buffer, 6, 2)  # while anything is on disk, new records queue behind it there
    # killed: no close(); a new agent finds everything that was older than the bound, in order
    assert drain(timed(tmp_path, FakeMonotonic())) == names(0, 8)


def test_a_chunk_out_for_delivery_when_memory_moves_to_disk_is_committed_there(tmp_path: Path) -> None:
    clock = FakeMonotonic()
    buffer = timed(tmp_path, clock)
    fill(buffer, 0, 6)
    chunk = buffer.peek(4, 1 << 20)  # out for delivery, the broker slow to answer
    clock.now += 6
    assert buffer.spill_overdue() == 6
    fill(buffer, 6, 2)
    buffer.commit(3)  # three of the chunk acknowledged after the move: they leave the head segment
    assert [e.value.decode() for e in chunk] == names(0, 4)
    assert drain(buffer) == names(3, 8)
    assert buffer.empty() and not list((tmp_path / "spill").glob("*.seg"))


def test_an_acknowledged_record_is_not_spilled_and_a_healthy_broker_never_touches_the_disk(tmp_path: Path) -> None:
    clock = FakeMonotonic()
    buffer = timed(tmp_path, clock)
    for i in range(20):
        fill(buffer, i, 1)
        buffer.commit(len(buffer.peek(10, 1 << 20)))
        clock.now += 1
        assert buffer.spill_overdue() == 0
    assert not list((tmp_path / "spill").glob("*"))


def test_memory_moves_before_older_segments_keep_their_place(tmp_path: Path) -> None:
    clock = FakeMonotonic()
    buffer = timed(tmp_path, clock, memory_records=3)
    fill(buffer, 0, 7)  # 0-2 in memory, 3-6 spilled because memory was full
    clock.now += 5
    assert buffer.spill_overdue() == 3  # memory goes to a head segment named before the others
    assert buffer.stats()["memory_records"] == 0 and buffer.stats()["spill_records"] == 7
    assert drain(timed(tmp_path, FakeMonotonic(), memory_records=3)) == names(0, 7)


def test_a_full_spill_leaves_overdue_records_in_memory(tmp_path: Path) -> None:
    drops: Drops = []
    clock = FakeMonotonic()
    settings = BufferConfig(memory_records=100, memory_bytes=1 << 20, spill_max_bytes=100, spill_after=5)
    buffer = DeliveryBuffer(settings, tmp_path / "spill", lambda s, r, n: drops.append((s, r, n)), clock)
    fill(buffer, 0, 5)  # 165 bytes: more than the spill holds
    clock.now += 10
    assert buffer.spill_overdue() == 0 and buffer.stats()["memory_records"] == 5
    assert drain(buffer) == names(0, 5) and not drops


def test_spill_files_are_made_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync: the head segment before its rename, the directory after each segment is created, the
    active segment at most every spill_after and when sealed; .ack files replaced atomically."""
    import os

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    clock = FakeMonotonic()
    buffer = timed(tmp_path, clock)
    fill(buffer, 0, 2)
    clock.now += 5
    buffer.spill_overdue()
    names = [Path(p).name for p in synced]  # the file under its temporary name, then the directory entry
    assert len(names) == 2 and names[1] == "spill", names
    assert names[0].startswith(".00000000000000000000.seg.") and names[0].endswith(".tmp"), names
    synced.clear()
    clock.now += 5
    fill(buffer, 2, 3)  # the tail segment is created (its directory synced), then its writes are synced
    assert [Path(p).name for p in synced] == ["spill", "00000000000000000002.seg"]
    synced.clear()
    fill(buffer, 5, 2)
    clock.now += 4
    buffer.spill_overdue()
    assert synced == []  # at most one fsync every spill_after
    clock.now += 1
    buffer.spill_overdue()
    assert [Path(p).name for p in synced] == ["00000000000000000002.seg"]
    assert len(buffer.peek(10, 1 << 20)) == 2  # the head segment
    buffer.commit(2)
    buffer.commit(len(buffer.peek(1, 1 << 20)))  # part of the tail segment acknowledged
    assert (tmp_path / "spill" / "00000000000000000002.ack").read_text().isdigit()
    assert not list((tmp_path / "spill").glob("*.tmp"))
    synced.clear()
    fill(buffer, 7, 1)
    buffer.close()  # sealed at shutdown
    assert [Path(p).name for p in synced] == ["00000000000000000002.seg"]
