"""The psutil host collector: on this machine for real, and on fixed numbers for the arithmetic."""

from __future__ import annotations

import math
import os
import time
from collections import namedtuple
from typing import Any

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.host.system import HostCollector, HostOptions, HostReaders, create

from vigil import catalog as c
from vigil.errors import ConfigError
from vigil.events import parse_series_key

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
Mem = namedtuple("Mem", "total available used free")
Swap = namedtuple("Swap", "total used free")
DiskIo = namedtuple("DiskIo", "read_bytes write_bytes busy_time")
NetIo = namedtuple("NetIo", "bytes_sent bytes_recv errin errout dropin dropout")
Part = namedtuple("Part", "device mountpoint fstype opts")
StatVfs = namedtuple("StatVfs", "f_frsize f_blocks f_bfree f_bavail f_files f_ffree f_favail")


def samples(items: list[Any]) -> dict[str, float]:
    return {k: v for k, v in (i for i in items if isinstance(i, tuple))}


def test_real_host_gives_the_simulator_keys_and_sane_values() -> None:
    collector = create({}, CollectorContext("this-host"))
    first = samples(collector.collect())
    assert c.HOST_CPU_UTILIZATION not in first  # a rate needs two readings
    time.sleep(0.2)
    items = collector.collect()
    assert not [i for i in items if isinstance(i, Problem)]
    got = samples(items)
    for key in (
        c.HOST_CPU_UTILIZATION,
        c.HOST_MEMORY_USED,
        c.HOST_NETWORK_RECEIVE,
        c.HOST_NETWORK_TRANSMIT,
        c.HOST_LOAD1,
    ):
        assert key in got, key  # label-free, exactly as the simulator names them
    assert all(math.isfinite(v) for v in got.values())
    assert 0.0 <= got[c.HOST_CPU_UTILIZATION] <= 1.0
    assert got[c.HOST_MEMORY_USED] + got[c.HOST_MEMORY_AVAILABLE] == got[c.HOST_MEMORY_TOTAL]
    assert got[c.HOST_LOAD1] == pytest.approx(os.getloadavg()[0], abs=1.0)
    assert got[c.HOST_UPTIME] < time.time()
    labels = [parse_series_key(k)[1] for k in got]
    assert not [lab for lab in labels if lab.get("interface") == "lo" or lab.get("device", "").startswith("loop")]
    for key, size in got.items():  # every filesystem found (a container's overlay root is left out)
        if key.startswith(c.HOST_FS_SIZE):
            assert 0 <= got[key.replace(c.HOST_FS_SIZE, c.HOST_FS_FREE)] <= size
    for key, value in first.items():  # counters never run backwards between two calls
        if key.endswith("_total") and key in got:
            assert got[key] >= value, key


def fake_readers(cpu: list[CpuTimes], **overrides: Any) -> HostReaders:
    times = iter(cpu)
    base: dict[str, Any] = {
        "cpu_times": lambda percpu=False: [next(times)] * 2 if percpu else next(times),
        "virtual_memory": lambda: Mem(64e9, 48e9, 10e9, 40e9),
        "swap_memory": lambda: Swap(8e9, 1e9, 7e9),
        "loadavg": lambda: (44.0, 40.0, 38.0),
        "disk_io": lambda perdisk=True: {
            name: DiskIo(1000, 2000, 1500)
            for name in ("sda", "sda1", "nvme0n1", "nvme0n1p2", "loop3", "dm-0", "zram0", "mmcblk0p1")
        },
        "partitions": lambda all=False: [
            Part("/dev/sda1", "/", "ext4", "rw"),
            Part("/dev/loop3", "/snap/core/1", "squashfs", "ro"),
            Part("/dev/nvme0n1p2", "/scratch", "xfs", "rw"),
            Part("/dev/sda1", "/var/lib/kubelet/pods/x/volumes", "ext4", "rw"),
        ],
        "statvfs": lambda mount: StatVfs(4096, 1000, 300, 250, 500, 400, 390),
        "net_io": lambda pernic=True: {
            "lo": NetIo(10**9, 10**9, 0, 0, 0, 0),
            "eth0": NetIo(100, 1000, 1, 2, 3, 4),
            "ib0": NetIo(50, 500, 0, 0, 0, 0),
            "veth12ab": NetIo(7, 7, 0, 0, 0, 0),
        },
        "boot_time": lambda: 1_700_000_000.0,
    }
    return HostReaders(**(base | overrides))


def test_cpu_ratio_is_busy_share_of_the_interval() -> None:
    t0 = CpuTimes(100, 0, 50, 800, 50, 0, 0, 0, 7, 0)
    t1 = CpuTimes(160, 0, 70, 860, 60, 0, 0, 0, 9, 0)  # +80 busy, +70 idle/iowait: guest is inside user
    collector = HostCollector(HostOptions(), fake_readers([t0, t1]))
    collector.collect()
    got = samples(collector.collect())
    assert got[c.HOST_CPU_UTILIZATION] == pytest.approx(80 / 150)
    assert got['host_cpu_seconds_total{mode="user"}'] == 160
    assert not any('mode="guest"' in k for k in got)


def test_filters_labels_and_totals() -> None:
    t = CpuTimes(1, 0, 1, 1, 0, 0, 0, 0, 0, 0)
    got = samples(HostCollector(HostOptions(), fake_readers([t])).collect())
    disks = {parse_series_key(k)[1]["device"] for k in got if k.startswith(c.HOST_DISK_READ)}
    assert disks == {"sda", "nvme0n1", "dm-0"}  # partitions, loop and zram left out
    assert got['host_disk_io_time_seconds_total{device="sda"}'] == 1.5
    mounts = {parse_series_key(k)[1]["mountpoint"] for k in got if k.startswith(c.HOST_FS_SIZE)}
    assert mounts == {"/", "/scratch"}
    root = '{device="/dev/sda1",fstype="ext4",mountpoint="/"}'
    assert got[c.HOST_FS_SIZE + root] == 4096 * 1000
    assert got[c.HOST_FS_FREE + root] == 4096 * 250  # available to users, not root's reserve
    assert got[c.HOST_FS_FILES_FREE + root] == 390
    nics = {parse_series_key(k)[1]["interface"] for k in got if k.startswith(c.HOST_NETWORK_RECEIVE_ERRORS)}
    assert nics == {"eth0", "ib0"}
    assert got[c.HOST_NETWORK_RECEIVE] == 1500 and got[c.HOST_NETWORK_TRANSMIT] == 150  # lo and veth not counted
    assert got['host_network_receive_drop_total{interface="eth0"}'] == 3
    assert got[c.HOST_MEMORY_USED] == 16e9 and got[c.HOST_SWAP_USED] == 1e9
    assert (got[c.HOST_LOAD1], got[c.HOST_LOAD5], got[c.HOST_LOAD15]) == (44.0, 40.0, 38.0)


def test_a_failing_reader_is_a_problem_and_the_rest_still_comes() -> None:
    def hung_mount(mount: str) -> Any:
        raise OSError(5, "Input/output error")

    def no_disks(perdisk: bool = True) -> Any:
        raise RuntimeError("couldn't find any physical disk")

    t = CpuTimes(1, 0, 1, 1, 0, 0, 0, 0, 0, 0)
    items = HostCollector(HostOptions(), fake_readers([t], statvfs=hung_mount, disk_io=no_disks)).collect()
    problems = [(p.error, p.detail.split(":")[0]) for p in items if isinstance(p, Problem)]
    assert problems == [("read", "disk"), ("read", "filesystem /"), ("read", "filesystem /scratch")]
    assert c.HOST_MEMORY_USED in samples(items)


def test_bad_filter_fails_at_start_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"agent\.collectors\.host\.disk_exclude: .*not a regular expression"):
        create({"disk_exclude": "(loop"}, CollectorContext("h"))
