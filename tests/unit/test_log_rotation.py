"""The embedded broker's log files are rotated by size while the processes keep writing to them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vigil.broker import LogRotator


def test_a_log_over_the_limit_is_copied_and_truncated_and_writing_goes_on(tmp_path: Path) -> None:
    log = tmp_path / "tansu.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # as the child holds it
    rotator = LogRotator([log, tmp_path / "absent.log"], max_bytes=1000, keep=2)
    try:
        os.write(fd, b"a" * 600)
        rotator.check()
        assert log.stat().st_size == 600 and not (tmp_path / "tansu.log.1").exists()  # under the limit
        for generation in (b"b", b"c", b"d"):
            os.write(fd, generation * 1200)
            rotator.check()
            assert log.stat().st_size == 0
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert log.read_bytes() == b"after\n"  # O_APPEND: written at the start of the emptied file, no hole
    assert (tmp_path / "tansu.log.1").read_bytes() == b"d" * 1200
    assert (tmp_path / "tansu.log.2").read_bytes() == b"c" * 1200
    assert not (tmp_path / "tansu.log.3").exists()  # keep=2 copies
    assert stat.S_IMODE((tmp_path / "tansu.log.1").stat().st_mode) == 0o600
