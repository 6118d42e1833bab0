"""Files with state or secrets are 0600 in 0700 folders, whatever the umask (issue 14 item 8).

Every test runs under umask 000, the worst a user can have: before this rule the run config, the
alert store and its WAL came out 0644 (0666 under this umask) in 0755 (0777) folders.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.alerting.store import AlertStore
from vigil.analytics.stages.state import SnapshotStore
from vigil.collectors.agent.spill import Entry, SpillLog
from vigil.collectors.kernel.position import PositionStore

from tests import poison
from vigil.bus import TopicPartition
from vigil.cli.processes import ProcessGroup
from vigil.cli.settings import VigilConfig, dump_config
from vigil.events import Alert


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(path: Path) -> None:
    assert mode(path) == 0o600, f"{path}: {oct(mode(path))}"
    assert mode(path.parent) == 0o700, f"{path.parent}: {oct(mode(path.parent))}"


def test_the_run_config_and_its_secret_files(tmp_path: Path) -> None:
    config = VigilConfig.model_validate(
        {"alerting": {"notifiers": [{"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s3cret"}]}}
    )
    run = tmp_path / "data" / "run" / "vigil.yaml"
    dump_config(config, run)
    assert_private(run)
    assert mode(tmp_path / "data") == 0o700  # created by us: private too
    secrets = list((run.parent / "secrets").iterdir())
    assert len(secrets) == 2 and all(mode(p) == 0o600 for p in secrets)
    assert mode(run.parent / "secrets") == 0o700


def test_the_alert_store_its_wal_and_shm(tmp_path: Path) -> None:
    db = tmp_path / "alerting" / "alerts.db"
    store = AlertStore(db)
    alert = Alert("fp", "firing", {"alertname": "X"}, {}, poison.T0, None, "critical", "", poison.T0)
    with store.transaction():
        store.upsert(alert)
    for path in (db, db.with_name("alerts.db-wal"), db.with_name("alerts.db-shm")):
        assert path.exists() and mode(path) == 0o600, f"{path}: {oct(mode(path))}"
    assert mode(db.parent) == 0o700
    store.close()


def test_an_alert_store_written_0644_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "alerts.db"
    AlertStore(db).close()
    for path in (db, db.with_name("alerts.db-wal")):
        if path.exists():
            path.chmod(0o644)
    AlertStore(db).close()
    assert mode(db) == 0o600


def test_analytics_snapshots(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "analytics" / "state")
    tp = TopicPartition("vigil.telemetry.v1", 0)
    store.save(tp, {"offset": 1})
    assert_private(store.path(tp))
    assert mode(tmp_path / "analytics") == 0o700


def test_agent_spill_segments_acks_and_head(tmp_path: Path) -> None:
    spill = SpillLog(tmp_path / "agent" / "spill", max_bytes=1 << 20, segment_bytes=1 << 16)
    for seq in range(3):
        assert spill.append(Entry(seq + 10, "telemetry", b"h", b"x" * 100, 1))
    spill.read(2, 1 << 20)
    spill.commit(1)  # writes the segment's .ack file
    spill.write_head([Entry(0, "telemetry", b"h", b"y" * 100, 1)])
    spill.close()
    files = sorted(spill.dir.iterdir())
    assert {p.suffix for p in files} == {".seg", ".ack"}
    for path in files:
        assert_private(path)


def test_kernel_log_position(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "kernel" / "position.json")
    store.save("kmsg", {"seq": 1})
    assert store.path is not None
    assert_private(store.path)


def test_the_helpers_tighten_what_exists(tmp_path: Path) -> None:
    from vigil.files import private_file, write_private

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    (loose / "f").write_text("x")
    (loose / "f").chmod(0o644)
    assert_private(private_file(loose / "f"))
    assert (loose / "f").read_text() == "x"  # made private, not truncated
    assert_private(write_private(loose / "g", "y"))


def test_child_logs_of_vigil_up(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs")
    child = group.spawn("probe", ["--help"])
    child.proc.wait(60)
    assert_private(child.log_path)
    assert child.log_path.read_bytes()  # the child did write to it


def test_a_folder_we_do_not_own_is_left_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A volume's mount point owned by root: chmod fails with EPERM, and the service still starts."""
    from vigil import files

    mount = tmp_path / "volume"
    mount.mkdir()

    def not_owner(path: object, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(files.os, "chmod", not_owner)
    assert files.private_dir(mount) == mount
    assert "not its owner" in caplog.text
