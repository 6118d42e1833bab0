"""The follower on every real capture in datasets/fixtures/kernel-logs (leptonai/gpud, Apache-2.0).

Each file is followed as a log file from its beginning, in UTC, with a fixed boot time so the
kmsg-format captures have known times. Expected values were read off the captures by hand.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.kernel.follower import KernelLogCollector, create

from tests.shared_data import datasets_root
from vigil.events import LogEvent

BOOT = 1_700_000_000.0
EXPECTED_FILES = {
    "dmesg-nccl.log",
    "dmesg-with-xid-119.log",
    "fabricmanager.log",
    "kmsg.1.log",
    "kmsg.2.peermem.log",
    "nvidia-smi.nvlink.status.a100",
}


@pytest.fixture
def logs() -> Path:
    return datasets_root() / "fixtures" / "kernel-logs"


def follow(path: Path, **options: Any) -> KernelLogCollector:
    base = {"source": "file", "path": str(path), "state_dir": None, "start_at": "beginning", "timezone": "UTC"}
    return create({**base, "boot_time": BOOT, "discover_gpus": False, **options}, CollectorContext("gpu-node-7", "dc1"))


def events(items: list[Any]) -> list[LogEvent]:
    assert not [i for i in items if isinstance(i, Problem)]
    return [i for i in items if isinstance(i, LogEvent)]


def at(*args: int, micro: int = 0) -> float:
    return datetime(*args, micro, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_every_capture_is_covered(logs: Path) -> None:
    captures = {p.name for p in logs.iterdir()} - {"LICENSE", "SOURCE.txt"}
    assert captures == EXPECTED_FILES  # a new capture needs its own spot checks below


def test_xid_119_gsp_timeouts(logs: Path) -> None:
    got = events(follow(logs / "dmesg-with-xid-119.log", gpus={"0000:9b:00.0": {"index": 4}}).collect())
    assert [e.kind for e in got] == ["xid"] * 5  # the RPC history, call trace and rate-limit lines are not events
    assert {e.code for e in got} == {119}
    assert {e.gpu_pci for e in got} == {"0000:9b:00.0"}
    # the UUID comes from the driver's own "NVRM: GPU at PCI:0000:9b:00: GPU-..." line, the index from the option
    assert {e.gpu_uuid for e in got} == {"GPU-509665ad-b600-ac93-3616-d754b23d636d"}
    assert {e.gpu_index for e in got} == {4}
    assert [e.ts for e in got] == [
        at(2025, 2, 23, 16, 24, 18),
        at(2025, 2, 23, 16, 24, 24),
        at(2025, 2, 23, 16, 24, 30),
        at(2025, 2, 23, 16, 27, 12),
        at(2025, 2, 23, 16, 30, 13),
    ]
    assert "name=cache_mgr_main" in got[3].raw
    assert all((e.host, e.cluster, e.source) == ("gpu-node-7", "dc1", "file") for e in got)


def test_xid_119_without_any_mapping_keeps_the_pci_address(logs: Path, tmp_path: Path) -> None:
    only_xid = tmp_path / "xid-only.log"
    only_xid.write_text("".join(line for line in (logs / "dmesg-with-xid-119.log").open() if "Xid" in line))
    got = events(follow(only_xid).collect())
    assert len(got) == 5
    assert {(e.gpu_pci, e.gpu_uuid, e.gpu_index) for e in got} == {("0000:9b:00.0", None, None)}


def test_fabric_manager_nvswitch_error(logs: Path) -> None:
    got = events(follow(logs / "fabricmanager.log").collect())
    assert [(e.kind, e.code, e.gpu_pci) for e in got] == [("sxid", 12028, None)]
    assert got[0].ts == at(2025, 2, 27, 15, 10, 2)
    assert "NVSwitch pci bus id 00000000:86:00.0 physical id 3 port 61" in got[0].raw


def test_kmsg_capture_has_no_events(logs: Path) -> None:
    assert events(follow(logs / "kmsg.1.log").collect()) == []


def test_kmsg_capture_times_count_from_boot(logs: Path, tmp_path: Path) -> None:
    # the same records with one turned into an XID, to see the since-boot time on an event
    lines = (logs / "kmsg.1.log").read_text().splitlines()
    assert lines[-1] == "6,4010,57631398464,-;IPv6: ADDRCONF(NETDEV_CHANGE): calic24dd7712a6: link becomes ready"
    xid = "4,4011,57631398999,-;NVRM: Xid (PCI:0000:3b:00): 79, x"
    (tmp_path / "k.log").write_text("\n".join([*lines, xid]) + "\n")
    got = events(follow(tmp_path / "k.log").collect())
    assert [(e.kind, e.code) for e in got] == [("xid", 79)]
    assert got[0].ts == pytest.approx(BOOT + 57631.398999)


def test_peermem_errors(logs: Path) -> None:
    got = events(follow(logs / "kmsg.2.peermem.log").collect())
    assert [e.kind for e in got] == ["peermem"] * 7  # the unterminated last line "test" is not one
    assert got[0].ts == pytest.approx(BOOT + 227.996636)
    assert got[-1].ts == pytest.approx(BOOT + 227.996662)
    assert got[0].raw.endswith("ERROR detected invalid context, skipping further processing")


def test_nccl_segfaults_and_the_unterminated_last_line(logs: Path, tmp_path: Path) -> None:
    # The capture's second line has no newline: a follower waits for it, as it would on a live file.
    copy = tmp_path / "dmesg-nccl.log"
    shutil.copyfile(logs / "dmesg-nccl.log", copy)
    collector = follow(copy)
    first = events(collector.collect())
    assert [(e.kind, e.ts) for e in first] == [("nccl", at(2025, 1, 21, 4, 41, 44, micro=285060))]
    assert "in libnccl.so.2[" in first[0].raw
    with copy.open("a") as fh:
        fh.write("\n")
    second = events(collector.collect())
    assert [(e.kind, e.ts) for e in second] == [("nccl", at(2025, 1, 21, 4, 42, 44, micro=285060))]


def test_nvlink_status_output_is_not_a_log(logs: Path) -> None:
    assert events(follow(logs / "nvidia-smi.nvlink.status.a100").collect()) == []


def test_xids_are_logged_with_the_catalog_reading(logs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vigil.collectors.kernel.follower")
    follow(logs / "dmesg-with-xid-119.log").collect()
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert records[0] == (logging.INFO, "XID 119 on GPU 0000:9b:00.0: GSP RPC timeout; action reset_gpu")
    assert [level for level, _ in records] == [logging.INFO] + [logging.DEBUG] * 4  # a storm logs once
