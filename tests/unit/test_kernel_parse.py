"""Kernel log lines: their times in every printed shape, which lines are events, GPU identities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from vigil.collectors.kernel.classify import Finding, classify, gpu_announcement, normalize_pci
from vigil.collectors.kernel.gpus import GpuIdentity, GpuMap, from_proc, parse_nvidia_smi
from vigil.collectors.kernel.kmsg import parse_record
from vigil.collectors.kernel.timestamps import Clocks, stamp

BOOT = 1_740_000_000.0  # 2025-02-19T21:20:00Z
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC).timestamp()
UTC_CLOCKS = Clocks(BOOT, ZoneInfo("UTC"), lambda: NOW)


def epoch(*args: int, tz: timezone | ZoneInfo = UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


# -- timestamps
def test_kmsg_record_time_counts_from_boot() -> None:
    got = stamp("4,3973,227996636,-;NVRM: Xid (PCI:0000:3b:00): 79", UTC_CLOCKS)
    assert got.ts == pytest.approx(BOOT + 227.996636)
    assert got.message == "NVRM: Xid (PCI:0000:3b:00): 79"


def test_dmesg_since_boot_time() -> None:
    got = stamp("[  966.503025] NVRM: Xid (0000:01:00): 31, Ch 0000000b", UTC_CLOCKS)
    assert got.ts == pytest.approx(BOOT + 966.503025)
    assert got.message.startswith("NVRM: Xid")


def test_dmesg_ctime_is_read_in_the_configured_zone() -> None:
    line = "[Sun Feb 23 16:24:18 2025] NVRM: Xid (PCI:0000:9b:00): 119, pid=1"
    assert stamp(line, UTC_CLOCKS).ts == epoch(2025, 2, 23, 16, 24, 18)
    berlin = Clocks(BOOT, ZoneInfo("Europe/Berlin"), lambda: NOW)
    assert stamp(line, berlin).ts == epoch(2025, 2, 23, 15, 24, 18)  # CET is UTC+1 in February
    padded = stamp("[Sun Feb  2 01:02:03 2025] x", UTC_CLOCKS)
    assert padded.ts == epoch(2025, 2, 2, 1, 2, 3) and padded.message == "x"


def test_local_zone_makes_an_aware_time() -> None:
    local = Clocks(BOOT, None, lambda: NOW)
    expected = datetime(2025, 2, 23, 16, 24, 18).astimezone().timestamp()
    assert stamp("[Sun Feb 23 16:24:18 2025] x", local).ts == expected


def test_iso_times_keep_their_offset_and_decoded_prefix_is_skipped() -> None:
    line = "kern  :warn  : 2025-01-21T04:41:44,285060+00:00 pt_main_thread[2536443]: segfault at 7f79"
    got = stamp(line, UTC_CLOCKS)
    assert got.ts == pytest.approx(epoch(2025, 1, 21, 4, 41, 44) + 0.28506)
    assert got.message.startswith("pt_main_thread[2536443]: segfault")
    syslog = stamp("2025-02-23T16:24:18.5-05:00 gpu7 kernel: NVRM: Xid", Clocks(BOOT, ZoneInfo("Asia/Tokyo")))
    assert syslog.ts == epoch(2025, 2, 23, 21, 24, 18) + 0.5  # the offset wins over the configured zone
    compact = stamp("2025-02-23T16:24:18+0000 gpu7 kernel: x", UTC_CLOCKS)  # journalctl -o short-iso
    assert compact.ts == epoch(2025, 2, 23, 16, 24, 18)


def test_classic_syslog_gets_the_year_that_is_not_in_the_future() -> None:
    line = "Feb 23 16:24:18 gpu7 kernel: [ 1234.5] NVRM: Xid (PCI:0000:3b:00): 13, pid=9"
    got = stamp(line, UTC_CLOCKS)
    assert got.ts == epoch(2025, 2, 23, 16, 24, 18)  # wall clock wins over the since-boot time inside
    december = stamp("Dec 31 23:59:59 gpu7 kernel: x", UTC_CLOCKS)  # read on 1 March 2025
    assert december.ts == epoch(2024, 12, 31, 23, 59, 59)


def test_fabric_manager_time_and_level() -> None:
    got = stamp("[Feb 27 2025 15:10:02] [ERROR] [tid 12727] detected NVSwitch non-fatal error 12028", UTC_CLOCKS)
    assert got.ts == epoch(2025, 2, 27, 15, 10, 2)
    assert got.level == "ERROR" and got.message.startswith("[tid 12727]")


def test_lines_without_a_time_and_impossible_dates() -> None:
    assert stamp("Message payload details:Team release request", UTC_CLOCKS).ts is None
    assert stamp("[Sun Feb 30 16:24:18 2025] x", UTC_CLOCKS).ts is None
    assert stamp("         Link 0: 25 GB/s", UTC_CLOCKS).ts is None


# -- kmsg records
def test_kmsg_record_fields_escapes_and_dictionary() -> None:
    record = b"3,1052,58239114,-;pcieport 0000:00:01.0: tab\\x09here caf\\xc3\\xa9\n SUBSYSTEM=pci\n DEVICE=+pci:0000\n"
    assert parse_record(record) == (1052, 58239114, "pcieport 0000:00:01.0: tab\there caf\u00e9")
    with_caller = b"6,4001,261573217,-,caller=T1;nvidia-nvswitch0: open"
    assert parse_record(with_caller) == (4001, 261573217, "nvidia-nvswitch0: open")
    assert parse_record(b"no header here") is None
    assert parse_record(b"6,x,1,-;m") is None


# -- classification
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus.", Finding("xid", 79, "0000:3b:00.0")),
        ("NVRM: Xid (0000:01:00): 31, Ch 0000000b, engmask 00000120", Finding("xid", 31, "0000:01:00.0")),
        ("NVRM: Xid (PCI:0000:07:00 GPU-I:05): 43, pid=1, Ch 00000008", Finding("xid", 43, "0000:07:00.0")),
        ("nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, Non-fatal, Link 32 egress", Finding("sxid", 12028)),
        (
            "[tid 1] detected NVSwitch fatal error 20034 on fid 0 on NVSwitch pci bus id 00000000:86:00.0",
            Finding("sxid", 20034),
        ),
        (
            "NVRM: GPU at PCI:0000:3b:00: GPU-509665ad-b600-ac93-3616-d754b23d636d: GPU has fallen off the bus.",
            Finding("fallen_off_bus", None, "0000:3b:00.0"),
        ),
        ("NVRM: GPU has fallen off the bus.", Finding("fallen_off_bus")),
        (
            "nvidia 0000:3b:00.0: AER: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)",
            Finding("aer", 0, "0000:3b:00.0"),
        ),
        (
            "nvidia 0000:3b:00.0: PCIe Bus Error: severity=Correctable, type=Data Link Layer, (Transmitter ID)",
            Finding("aer", 0, "0000:3b:00.0"),
        ),
        (
            "mlx5_core 0000:5e:00.1: AER: PCIe Bus Error: severity=Uncorrected (Non-Fatal), type=Transaction Layer",
            Finding("aer", 1, "0000:5e:00.1"),
        ),
        (
            "nvme 0000:c1:00.0: PCIe Bus Error: severity=Uncorrectable (Fatal), type=Inaccessible, (Unregistered)",
            Finding("aer", 2, "0000:c1:00.0"),
        ),
        ("mce: [Hardware Error]: CPU 3: Machine Check: 0 Bank 7: cc00008000010091", Finding("mce", 7)),
        ("mce: [Hardware Error]: Machine check events logged", Finding("mce")),
        (
            "EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x1234)",
            Finding("mce"),
        ),
        (
            "[rank3]:[E ProcessGroupNCCL.cpp:616] [Rank 3] Watchdog caught collective operation timeout: "
            "WorkNCCL(SeqNum=4, OpType=ALLREDUCE) ran for 600010 milliseconds before timing out.",
            Finding("nccl"),
        ),
        (
            "pt_main_thread[2536443]: segfault at 7f797fe00000 ip 00007f7c7ac69996 error 4 in libnccl.so.2[7f7c+d3]",
            Finding("nccl"),
        ),
        ("nvidia-peermem nv_get_p2p_free_callback:127 ERROR detected invalid context, skipping", Finding("peermem")),
    ],
)
def test_event_lines(message: str, expected: Finding) -> None:
    assert classify(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        "IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
        "nvidia-nvswitch2: open (major=510)",
        "pcieport 0000:00:01.0: AER: Corrected error received: 0000:01:00.0",  # repeated by the device's line
        "mce: [Hardware Error]: TSC 0 ADDR 1ffffffe3f6080 MISC 9084003c00087e8c",
        "NVRM: GPU at PCI:0000:9b:00: GPU-509665ad-b600-ac93-3616-d754b23d636d",
        "NVRM: GPU4 GSP RPC buffer contains function 103 (GSP_RM_ALLOC) and data 0x0000000000002081",
        "nvidia-peermem nv_get_p2p_free_callback: INFO all good",
    ],
)
def test_ordinary_lines_are_not_events(message: str) -> None:
    assert classify(message) is None


def test_fabric_manager_errors_are_events_and_info_is_not() -> None:
    assert classify("[tid 1803] NVLink training failed for GPU", "ERROR") == Finding("fabricmanager")
    assert classify("[tid 1808] multicast group 0 is freed.", "INFO") is None


def test_gpu_announcement_and_pci_normalisation() -> None:
    line = "NVRM: GPU at PCI:0000:9b:00: GPU-509665ad-b600-ac93-3616-d754b23d636d"
    assert gpu_announcement(line) == ("0000:9b:00.0", "GPU-509665ad-b600-ac93-3616-d754b23d636d")
    assert gpu_announcement("NVRM: GPU Board Serial Number: 1650124014249") is None
    assert normalize_pci("00000000:3B:00.0") == "0000:3b:00.0"
    assert normalize_pci("0000:9b:00") == "0000:9b:00.0"
    with pytest.raises(ValueError):
        normalize_pci("not-an-address")


# -- GPU identities
def write_gpu(root: Path, address: str, uuid: str, minor: int) -> None:
    folder = root / address
    folder.mkdir(parents=True)
    (folder / "information").write_text(
        "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 180\n"
        f"GPU UUID: \t {uuid}\nVideo BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\n"
        f"DMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\nBus Location: \t {address}\n"
        f"Device Minor: \t {minor}\nGPU Excluded:\t No\n"
    )


def test_gpus_from_proc_are_numbered_in_pci_order(tmp_path: Path) -> None:
    write_gpu(tmp_path, "0000:bb:00.0", "GPU-bbbbbbbb-0000-0000-0000-000000000000", 0)
    write_gpu(tmp_path, "0000:1b:00.0", "GPU-1b1b1b1b-0000-0000-0000-000000000000", 5)
    found = from_proc(tmp_path)
    assert found == {
        "0000:1b:00.0": GpuIdentity(0, "GPU-1b1b1b1b-0000-0000-0000-000000000000"),
        "0000:bb:00.0": GpuIdentity(1, "GPU-bbbbbbbb-0000-0000-0000-000000000000"),
    }
    assert from_proc(tmp_path / "absent") == {}


def test_gpus_from_nvidia_smi_csv() -> None:
    # the shape of `nvidia-smi --query-gpu=index,pci.bus_id,uuid --format=csv,noheader` (values from a capture)
    text = "0, 00000000:00:09.0, GPU-00000000-0000-0000-0000-000000000000\n1, 00000000:3B:00.0, GPU-5269b708-678a\n"
    assert parse_nvidia_smi(text + "No devices were found\n") == {
        "0000:00:09.0": GpuIdentity(0, "GPU-00000000-0000-0000-0000-000000000000"),
        "0000:3b:00.0": GpuIdentity(1, "GPU-5269b708-678a"),
    }


def test_gpu_map_prefers_configuration_and_rediscovers_at_most_once_a_minute() -> None:
    calls: list[float] = []
    now = [0.0]

    def discover() -> dict[str, GpuIdentity]:
        calls.append(now[0])
        return {"0000:3b:00.0": GpuIdentity(9, "GPU-found"), "0000:5e:00.0": GpuIdentity(4, "GPU-5e")}

    gpus = GpuMap({"0000:3b:00": GpuIdentity(3, "GPU-configured")}, discover, lambda: now[0])
    assert gpus.lookup("0000:3b:00.0") == GpuIdentity(3, "GPU-configured")
    assert calls == []  # a configured GPU needs no discovery
    assert gpus.lookup("0000:5e:00.0") == GpuIdentity(4, "GPU-5e")
    assert gpus.lookup("0000:99:00.0") is None
    now[0] = 30.0
    assert gpus.lookup("0000:99:00.0") is None
    assert calls == [0.0]
    now[0] = 61.0
    gpus.lookup("0000:99:00.0")
    assert calls == [0.0, 61.0]
    gpus.learn_uuid("0000:99:00.0", "GPU-from-log")
    assert gpus.lookup("0000:99:00.0") == GpuIdentity(None, "GPU-from-log")
    gpus.learn_uuid("0000:3b:00.0", "GPU-other")  # a known UUID is not overwritten by a log line
    assert gpus.lookup("0000:3b:00.0") == GpuIdentity(3, "GPU-configured")


def test_naive_datetimes_never_escape() -> None:
    # every time the follower returns is an epoch float computed from an aware datetime
    got = stamp("[Sun Feb 23 16:24:18 2025] x", Clocks(BOOT, timezone(timedelta(hours=-8))))
    assert got.ts == epoch(2025, 2, 24, 0, 24, 18)
