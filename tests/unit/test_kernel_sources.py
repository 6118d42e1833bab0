"""The live sources against the real thing: this machine's /dev/kmsg, and journalctl following a real
journal file (built with systemd-journal-remote). Each skips where the machine cannot do it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.kernel.follower import KernelLogCollector, create
from vigil.collectors.kernel.journal import entry_line
from vigil.collectors.kernel.kmsg import read_boot_id

from vigil.events import LogEvent

KMSG = Path("/dev/kmsg")
JOURNAL_REMOTE = next(
    (p for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote") if Path(p).exists()),
    None,
)


def kmsg_writable() -> bool:
    try:
        os.close(os.open(KMSG, os.O_WRONLY))
        os.close(os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        return False
    return True


def kernel_events(items: list[Any], token: str) -> list[LogEvent]:
    return [e for e in items if isinstance(e, LogEvent) and token in e.raw]


@pytest.mark.skipif(not kmsg_writable(), reason="/dev/kmsg cannot be read and written here (needs root)")
def test_real_kmsg_line_becomes_an_event_once_across_restarts(tmp_path: Path) -> None:
    options = {"source": "kmsg", "state_dir": str(tmp_path), "discover_gpus": False}
    options["gpus"] = {"0000:99:00.0": {"index": 7, "uuid": "GPU-99999999-vigil-test"}}

    def start() -> KernelLogCollector:
        return create(options, CollectorContext("this-host"))

    before = start()
    before.collect()  # the ring as it is now
    before.collect()  # committed up to here
    before.close()
    token = f"vigil-test-{uuid.uuid4().hex[:8]}"
    # One line in this machine's real kernel log: an XID on a PCI address no GPU has here.
    fd = os.open(KMSG, os.O_WRONLY)
    try:
        os.write(fd, f"<4>NVRM: Xid (PCI:0000:99:00): 79, pid=0, name={token}, written by Vigil's kmsg test\n".encode())
    finally:
        os.close(fd)
    written_at = time.time()

    first = start()
    got = kernel_events(first.collect(), token)
    assert len(got) == 1
    event = got[0]
    assert (event.kind, event.code, event.gpu_pci, event.gpu_index) == ("xid", 79, "0000:99:00.0", 7)
    assert event.gpu_uuid == "GPU-99999999-vigil-test" and event.source == "kmsg"
    assert abs(event.ts - written_at) < 5.0  # kernel time since boot placed on the wall clock
    first.close()  # a crash: handed over, not committed

    second = start()
    assert len(kernel_events(second.collect(), token)) == 1  # read again: nothing lost
    assert kernel_events(second.collect(), token) == []  # and this call commits it
    second.close()

    third = start()
    assert kernel_events(third.collect(), token) == []  # no duplicate after the commit
    third.close()


def test_kmsg_unreadable_is_a_problem(tmp_path: Path) -> None:
    c = create({"source": "kmsg", "path": str(tmp_path / "no-kmsg"), "state_dir": None}, CollectorContext("h"))
    assert [(p.error) for p in c.collect() if isinstance(p, Problem)] == ["missing"]


# -- journal
def export_entry(message: str, boot_id: str) -> str:
    now_us = int(time.time() * 1e6)
    return (
        f"__REALTIME_TIMESTAMP={now_us}\n__MONOTONIC_TIMESTAMP={now_us % 10**9}\n_BOOT_ID={boot_id}\n"
        f"_TRANSPORT=kernel\nPRIORITY=4\nSYSLOG_IDENTIFIER=kernel\nMESSAGE={message}\n\n"
    )


def write_journal(journal: Path, *messages: str) -> None:
    """Append kernel entries of this boot to a real journal file (journalctl -k shows this boot only)."""
    boot_id = read_boot_id().replace("-", "")
    export = journal.with_suffix(".export")
    export.write_text("".join(export_entry(m, boot_id) for m in messages))
    assert JOURNAL_REMOTE is not None
    subprocess.run([JOURNAL_REMOTE, f"--output={journal}", str(export)], check=True, capture_output=True, timeout=30)


def collect_until(c: KernelLogCollector, done: Callable[[list[LogEvent]], bool], timeout: float = 10.0) -> list[Any]:
    items: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items += c.collect()
        if done([e for e in items if isinstance(e, LogEvent)]):
            return items
        time.sleep(0.05)
    raise AssertionError(f"timed out; got {items}")


@pytest.mark.skipif(
    shutil.which("journalctl") is None or JOURNAL_REMOTE is None or not read_boot_id(),
    reason="needs journalctl and systemd-journal-remote (Debian package systemd-journal-remote)",
)
def test_real_journalctl_follows_and_resumes_by_cursor(tmp_path: Path) -> None:
    journal = tmp_path / "kernel.journal"
    write_journal(journal, "NVRM: Xid (PCI:0000:3b:00): 48, pid=1, DBE", "eth0: link becomes ready")
    options = {"source": "journal", "journalctl_args": ["--file", str(journal)], "state_dir": str(tmp_path / "s")}
    options["gpus"] = {"0000:3b:00.0": {"index": 2}}
    options["discover_gpus"] = False

    first = create(options, CollectorContext("h"))
    got = [e for e in collect_until(first, lambda es: len(es) >= 1) if isinstance(e, LogEvent)]
    assert [(e.kind, e.code, e.gpu_index, e.source) for e in got] == [("xid", 48, 2, "journal")]
    assert abs(got[0].ts - time.time()) < 60
    write_journal(journal, "NVRM: Xid (PCI:0000:3b:00): 63, pid=1, Row remapper")  # appended while followed
    got = [e for e in collect_until(first, lambda es: len(es) >= 1) if isinstance(e, LogEvent)]
    assert [e.code for e in got] == [63]
    first.commit()
    first.close()

    write_journal(journal, "NVRM: Xid (PCI:0000:3b:00): 94, pid=1, contained")  # while stopped
    second = create(options, CollectorContext("h"))
    got = [e for e in collect_until(second, lambda es: any(e.code == 94 for e in es)) if isinstance(e, LogEvent)]
    assert [e.code for e in got] == [94]  # resumed after the cursor: 48 and 63 are not repeated
    second.close()


@pytest.mark.skipif(
    shutil.which("journalctl") is None or JOURNAL_REMOTE is None or not read_boot_id(),
    reason="needs journalctl and systemd-journal-remote (Debian package systemd-journal-remote)",
)
def test_real_journal_backlog_is_read_in_bounded_slices(tmp_path: Path) -> None:
    journal = tmp_path / "kernel.journal"
    write_journal(journal, *(f"NVRM: Xid (PCI:0000:3b:00): 13, pid={n}, x" for n in range(25)))
    options = {"source": "journal", "journalctl_args": ["--file", str(journal)], "state_dir": None}
    c = create(options | {"max_lines": 10, "discover_gpus": False}, CollectorContext("h"))
    sizes: list[int] = []
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while len(seen) < 25 and time.monotonic() < deadline:
        got = [e.raw for e in c.collect() if isinstance(e, LogEvent)]
        sizes.append(len(got))
        seen += got
        time.sleep(0.02)
    c.close()
    assert seen == [f"NVRM: Xid (PCI:0000:3b:00): 13, pid={n}, x" for n in range(25)]  # in order, once each
    assert max(sizes) <= 10


def test_journal_entries_with_byte_messages() -> None:
    line = entry_line({"MESSAGE": [78, 86, 82, 77, 58, 32, 0xFF], "__REALTIME_TIMESTAMP": "1795435699742133"})
    assert line is not None and line.raw == "NVRM: \ufffd" and line.stamped.ts == pytest.approx(1795435699.742133)
    assert entry_line({"MESSAGE": None}) is None


def test_journal_missing_binary_and_exiting_child_are_problems(tmp_path: Path) -> None:
    options = {"source": "journal", "journalctl": str(tmp_path / "nope"), "state_dir": None}
    missing = create(options, CollectorContext("h"))
    assert [p.error for p in missing.collect() if isinstance(p, Problem)] == ["missing_binary"]
    if shutil.which("journalctl") is None:
        return
    bad = create({"source": "journal", "journalctl_args": ["--no-such-flag"], "state_dir": None}, CollectorContext("h"))
    items = collect_until_problem(bad)
    assert [p.error for p in items if isinstance(p, Problem)] == ["exited"]
    assert "journalctl exited with 1" in next(p.detail for p in items if isinstance(p, Problem))


def collect_until_problem(c: KernelLogCollector, timeout: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = c.collect()
        if any(isinstance(i, Problem) for i in items):
            return items
        time.sleep(0.05)
    raise AssertionError("no problem reported")
