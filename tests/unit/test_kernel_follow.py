"""Following a real log file: appends, partial lines, truncation, rotation, and restarts that lose
nothing and repeat nothing once the position was committed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.kernel.follower import KernelLogCollector, create

from vigil.clock import FakeClock
from vigil.errors import ConfigError
from vigil.events import LogEvent


def xid_line(n: int) -> str:
    return f"2025-02-23T16:{n // 60:02d}:{n % 60:02d}+00:00 gpu7 kernel: NVRM: Xid (PCI:0000:3b:00): 13, pid={n}, x\n"


def append(path: Path, *numbers: int, partial: str = "") -> None:
    with path.open("a") as fh:
        fh.write("".join(xid_line(n) for n in numbers) + partial)


def follower(path: Path, state: Path | None, **options: Any) -> KernelLogCollector:
    base: dict[str, Any] = {"source": "file", "path": str(path), "state_dir": str(state) if state else None}
    base |= {"start_at": "beginning", "timezone": "UTC", "discover_gpus": False}
    return create(base | options, CollectorContext("gpu7"))


def pids(items: list[Any]) -> list[int]:
    """The pid of each XID event, in order (the test lines are numbered by pid)."""
    return [int(e.raw.split("pid=")[1].split(",")[0]) for e in items if isinstance(e, LogEvent)]


def problems(items: list[Any]) -> list[str]:
    return [p.error for p in items if isinstance(p, Problem)]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "kern.log"
    append(path, 1, 2, 3)
    return path


def test_appends_and_a_partial_line(log: Path, tmp_path: Path) -> None:
    c = follower(log, tmp_path / "state")
    assert pids(c.collect()) == [1, 2, 3]
    assert pids(c.collect()) == []
    append(log, 4, 5, partial=xid_line(6)[:30])
    assert pids(c.collect()) == [4, 5]  # line 6 has no newline yet
    with log.open("a") as fh:
        fh.write(xid_line(6)[30:])
    assert pids(c.collect()) == [6]


def test_truncation_and_in_place_rewrite(log: Path, tmp_path: Path) -> None:
    c = follower(log, tmp_path / "state")
    assert pids(c.collect()) == [1, 2, 3]
    with log.open("w") as fh:  # copytruncate: same inode, shorter
        fh.write(xid_line(7))
    assert pids(c.collect()) == [7]
    with log.open("w") as fh:  # truncated and refilled past the old offset before we looked
        fh.write("".join(xid_line(n) for n in range(20, 26)))
    assert pids(c.collect()) == [20, 21, 22, 23, 24, 25]


def test_rotation_reads_the_old_file_to_its_end_first(log: Path, tmp_path: Path) -> None:
    c = follower(log, tmp_path / "state")
    assert pids(c.collect()) == [1, 2, 3]
    append(log, 4, partial=xid_line(5).rstrip("\n"))  # the rotated file ends without a newline
    log.rename(log.with_name("kern.log.1"))
    append(log, 6, 7)
    assert pids(c.collect()) == [4, 5, 6, 7]
    append(log, 8)
    assert pids(c.collect()) == [8]


def test_restart_resumes_without_duplicates_or_loss(log: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = follower(log, state)
    assert pids(first.collect()) == [1, 2, 3]
    assert pids(first.collect()) == []  # this call commits the position after 3
    first.close()
    append(log, 4, 5)
    second = follower(log, state)
    assert pids(second.collect()) == [4, 5]
    second.close()  # crash: 4 and 5 were handed over but never committed
    third = follower(log, state)
    assert pids(third.collect()) == [4, 5]  # at least once: read again, not lost
    third.commit()  # a clean stop: the runner flushed, then commits
    third.close()
    fourth = follower(log, state)
    assert pids(fourth.collect()) == []
    append(log, 6)
    assert pids(fourth.collect()) == [6]


def test_rotation_while_stopped_finishes_the_rotated_file(log: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = follower(log, state)
    assert pids(first.collect()) == [1, 2, 3]
    first.commit()
    first.close()
    append(log, 4)  # written, then rotated away, while the agent was down
    log.rename(log.with_name("kern.log.1"))
    append(log, 5)
    second = follower(log, state)
    assert pids(second.collect()) == [4, 5]
    second.commit()
    second.close()
    log.with_name("kern.log.1").unlink()
    append(log, 6)
    third = follower(log, state)
    assert pids(third.collect()) == [6]  # the current file is the committed one: no gap


def test_rotated_file_gone_while_stopped_is_a_gap(log: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = follower(log, state)
    first.collect()
    first.commit()
    first.close()
    log.rename(log.with_name("kern.log.1.gz"))  # compressed, as logrotate does to older files
    log.with_name("kern.log.1.gz").unlink()
    append(log, 9)
    items = follower(log, state).collect()
    assert problems(items) == ["gap"]
    assert pids(items) == [9]


def test_first_run_starts_at_the_end_of_an_existing_file(log: Path, tmp_path: Path) -> None:
    c = follower(log, tmp_path / "state", start_at=None)
    assert pids(c.collect()) == []
    append(log, 4)
    assert pids(c.collect()) == [4]


def test_missing_file_is_a_problem_until_it_appears_then_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    c = follower(path, tmp_path / "state", start_at="end")
    items = c.collect()
    assert problems(items) == ["missing"] and pids(items) == []
    append(path, 1, 2)
    assert pids(c.collect()) == [1, 2]  # a file created after the start is new in full


def test_unreadable_source_and_state_are_problems_not_exceptions(log: Path, tmp_path: Path) -> None:
    assert problems(follower(tmp_path, None).collect()) == ["read"]  # a directory
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    c = follower(log, blocker / "state")
    assert pids(c.collect()) == [1, 2, 3]
    items = c.collect()  # the commit cannot be written: counted, and events still flow
    assert problems(items) == ["state_write"]


def test_per_call_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    append(path, *range(25))
    c = follower(path, tmp_path / "state", max_lines=10)
    assert [len(pids(c.collect())) for _ in range(4)] == [10, 10, 5, 0]


def test_state_file_is_small_json_written_atomically(log: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    c = follower(log, state)
    c.collect()
    c.commit()
    files = sorted(p.name for p in state.iterdir())
    assert files == ["kernel_log-file.json"]  # no temporary file left behind
    stored = json.loads((state / files[0]).read_text())
    assert stored["version"] == 1 and stored["source"] == f"file:{log}"
    assert stored["position"]["offset"] == log.stat().st_size
    assert stored["position"]["inode"] == os.stat(log).st_ino


def test_a_position_for_another_source_is_not_used(log: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    c = follower(log, state)
    c.collect()
    c.commit()
    other = log.with_name("other.log")
    append(other, 7)
    assert pids(follower(other, state).collect()) == [7]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source": "file"}, "source 'file' needs a path"),
        ({"timezone": "Mars/Olympus"}, "agent.collectors.kernel_log.timezone: unknown time zone"),
        ({"gpus": {"3b:00": {"index": 1}}}, "agent.collectors.kernel_log.gpus: "),
        ({"max_lines": 0}, "agent.collectors.kernel_log.max_lines"),
        ({"sauce": "kmsg"}, "agent.collectors.kernel_log.sauce: unknown key"),
    ],
)
def test_bad_options_fail_at_start_naming_the_key(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        create(options, CollectorContext("h"))


def test_a_line_without_a_time_takes_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "bare.log"
    path.write_text("NVRM: Xid (PCI:0000:3b:00): 13, pid=5, Graphics Exception\n")
    clock = FakeClock(1_767_225_600.0)
    options = {"source": "file", "path": str(path), "start_at": "beginning", "state_dir": None, "discover_gpus": False}
    got = [e for e in create(options, CollectorContext("h"), clock).collect() if isinstance(e, LogEvent)]
    assert [(e.code, e.ts) for e in got] == [(13, 1_767_225_600.0)]
