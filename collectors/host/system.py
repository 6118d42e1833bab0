"""The ``host`` collector (psutil): CPU, memory, swap, load, disks, filesystems, NICs, boot time.

Series and labels (names from :mod:`vigil.catalog`):

- ``host_cpu_utilization_ratio`` (no label): busy share of all CPUs since the previous call, so the
  first call has none. Busy is everything but idle and iowait.
- ``host_cpu_seconds_total{mode}`` summed over CPUs (``cpu`` label too with ``per_cpu``); guest
  time is already inside user/nice on Linux and is not repeated.
- ``host_memory_used_bytes`` = total - available (what a new process could not get), total,
  available, ``host_swap_used_bytes``, ``host_load1/5/15``, ``host_boot_time_seconds``.
- disks ``{device}``: read/written bytes and io time; loop, ram, zram, floppy, optical devices and
  partitions are left out (a partition's I/O is already in its disk's).
- filesystems ``{mountpoint,device,fstype}``: size, free (available to unprivileged users, df's
  "Avail": root-reserved blocks are not space a job can use), files free. Only filesystems on
  devices (psutil's ``all=False``: no proc, tmpfs or network mounts, whose statvfs can hang), minus
  ``fs_types_exclude`` and container mounts.
- NICs ``{interface}``: receive/transmit errors, receive drops, and per-interface bytes under the
  names below. ``host_network_receive/transmit_bytes_total`` without labels are the sums over the
  same interfaces (loopback and container veths excluded, which would count traffic twice) so that
  real hosts look like the simulator to analytics.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psutil
from pydantic import Field, field_validator
from vigil.collectors.base import CollectorContext, Item, Problem, Sample
from vigil.collectors.host.common import label_value

from vigil import catalog as c
from vigil.config import FrozenModel, validate
from vigil.events import series_key

NAME = "host"
# Per-interface bytes: not in vigil.catalog yet (the label-free catalog names carry the host totals).

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_IDLE_MODES = ("idle", "iowait")


class HostOptions(FrozenModel):
    per_cpu: bool = False
    disk_exclude: str = r"^(loop|ram|zram|fd|sr)\d+$|^([shv]d[a-z]+|xvd[a-z]+)\d+$|^(nvme\d+n\d+|mmcblk\d+)p\d+$"
    interface_exclude: str = r"^(lo|veth.*|cali.*|docker\d*|cni\d*|flannel.*|cilium.*|lxc.*|virbr\d*|ifb\d+|tunl\d+)$"
    fs_types_exclude: list[str] = Field(default_factory=lambda: ["squashfs", "iso9660", "overlay", "nsfs", "tmpfs"])
    mountpoint_exclude: str = r"^/(proc|sys|dev|run)($|/)|^/var/lib/(docker|kubelet|containerd)/"

    @field_validator("disk_exclude", "interface_exclude", "mountpoint_exclude")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value


@dataclass(frozen=True)
class HostReaders:
    """Where the numbers come from; tests swap in their own."""

    cpu_times: Callable[..., Any] = psutil.cpu_times
    virtual_memory: Callable[[], Any] = psutil.virtual_memory
    swap_memory: Callable[[], Any] = psutil.swap_memory
    loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg
    disk_io: Callable[..., Any] = psutil.disk_io_counters
    partitions: Callable[..., Any] = psutil.disk_partitions
    statvfs: Callable[[str], Any] = os.statvfs
    net_io: Callable[..., Any] = psutil.net_io_counters
    boot_time: Callable[[], float] = psutil.boot_time


class HostCollector:
    name = NAME

    def __init__(self, options: HostOptions, readers: HostReaders | None = None) -> None:
        self.options = options
        self.readers = readers or HostReaders()
        self._disk_exclude = re.compile(options.disk_exclude)
        self._nic_exclude = re.compile(options.interface_exclude)
        self._mount_exclude = re.compile(options.mountpoint_exclude)
        self._previous_cpu: tuple[float, float] | None = None  # (busy, total) seconds at the last call

    def collect(self) -> list[Item]:
        items: list[Item] = []
        for section, read in (
            ("cpu", self._cpu),
            ("memory", self._memory),
            ("load", self._load),
            ("disk", self._disks),
            ("filesystem", self._filesystems),
            ("network", self._network),
            ("boot_time", self._boot_time),
        ):
            try:
                items.extend(read())
            except (OSError, psutil.Error, RuntimeError) as exc:
                items.append(Problem("read", f"{section}: {exc}"))
        return items

    def _cpu(self) -> list[Sample]:
        total_times = self.readers.cpu_times(percpu=False)
        modes = [m for m in CPU_MODES if hasattr(total_times, m)]
        out: list[Sample] = []
        if self.options.per_cpu:
            for cpu, times in enumerate(self.readers.cpu_times(percpu=True)):
                keys = [series_key(c.HOST_CPU_SECONDS, {"cpu": str(cpu), "mode": m}) for m in modes]
                out += [(key, getattr(times, m)) for key, m in zip(keys, modes, strict=True)]
        else:
            out += [(series_key(c.HOST_CPU_SECONDS, {"mode": m}), getattr(total_times, m)) for m in modes]
        total = sum(getattr(total_times, m) for m in modes)
        busy = total - sum(getattr(total_times, m) for m in _IDLE_MODES if m in modes)
        if self._previous_cpu is not None:
            d_busy, d_total = busy - self._previous_cpu[0], total - self._previous_cpu[1]
            if d_total > 0:  # a clock that did not move (or went back) says nothing
                out.append((c.HOST_CPU_UTILIZATION, min(1.0, max(0.0, d_busy / d_total))))
        self._previous_cpu = (busy, total)
        return out

    def _memory(self) -> list[Sample]:
        mem, swap = self.readers.virtual_memory(), self.readers.swap_memory()
        return [
            (c.HOST_MEMORY_TOTAL, float(mem.total)),
            (c.HOST_MEMORY_AVAILABLE, float(mem.available)),
            (c.HOST_MEMORY_USED, float(mem.total - mem.available)),
            (c.HOST_SWAP_USED, float(swap.used)),
        ]

    def _load(self) -> list[Sample]:
        one, five, fifteen = self.readers.loadavg()
        return [(c.HOST_LOAD1, one), (c.HOST_LOAD5, five), (c.HOST_LOAD15, fifteen)]

    def _disks(self) -> list[Sample]:
        out: list[Sample] = []
        for device, io in sorted((self.readers.disk_io(perdisk=True) or {}).items()):
            if self._disk_exclude.search(device):
                continue
            labels = {"device": label_value(device)}
            out.append((series_key(c.HOST_DISK_READ, labels), float(io.read_bytes)))
            out.append((series_key(c.HOST_DISK_WRITTEN, labels), float(io.write_bytes)))
            if hasattr(io, "busy_time"):  # Linux, FreeBSD: milliseconds the device had I/O in flight
                out.append((series_key(c.HOST_DISK_IO_SECONDS, labels), io.busy_time / 1000.0))
        return out

    def _filesystems(self) -> Iterable[Item]:
        seen: set[str] = set()
        for part in self.readers.partitions(all=False):
            if part.fstype in self.options.fs_types_exclude or self._mount_exclude.search(part.mountpoint):
                continue
            if part.mountpoint in seen:  # a bind mount of the same filesystem twice
                continue
            seen.add(part.mountpoint)
            try:
                st = self.readers.statvfs(part.mountpoint)
            except OSError as exc:
                yield Problem("read", f"filesystem {part.mountpoint}: {exc.strerror}")
                continue
            labels = {"mountpoint": label_value(part.mountpoint), "device": label_value(part.device)}
            labels["fstype"] = label_value(part.fstype)
            yield series_key(c.HOST_FS_SIZE, labels), float(st.f_blocks * st.f_frsize)
            yield series_key(c.HOST_FS_FREE, labels), float(st.f_bavail * st.f_frsize)
            yield series_key(c.HOST_FS_FILES_FREE, labels), float(st.f_favail)

    def _network(self) -> list[Sample]:
        out: list[Sample] = []
        received = sent = 0.0
        for name, io in sorted((self.readers.net_io(pernic=True) or {}).items()):
            if self._nic_exclude.search(name):
                continue
            labels = {"interface": label_value(name)}
            received += io.bytes_recv
            sent += io.bytes_sent
            out.append((series_key(c.HOST_NETWORK_INTERFACE_RECEIVE, labels), float(io.bytes_recv)))
            out.append((series_key(c.HOST_NETWORK_INTERFACE_TRANSMIT, labels), float(io.bytes_sent)))
            out.append((series_key(c.HOST_NETWORK_RECEIVE_ERRORS, labels), float(io.errin)))
            out.append((series_key(c.HOST_NETWORK_TRANSMIT_ERRORS, labels), float(io.errout)))
            out.append((series_key(c.HOST_NETWORK_DROPS, labels), float(io.dropin)))
            out.append((series_key(c.HOST_NETWORK_TRANSMIT_DROPS, labels), float(io.dropout)))
        out.append((c.HOST_NETWORK_RECEIVE, received))
        out.append((c.HOST_NETWORK_TRANSMIT, sent))
        return out

    def _boot_time(self) -> list[Sample]:
        return [(c.HOST_UPTIME, float(self.readers.boot_time()))]


def create(options: dict[str, Any], context: CollectorContext) -> HostCollector:
    return HostCollector(validate(HostOptions, options, prefix=f"agent.collectors.{NAME}"))
