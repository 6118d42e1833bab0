"""Which GPU a PCI address is: its index and UUID, for the LogEvents the follower builds.

The driver's lines name a GPU by PCI address only. The follower learns the index and UUID from, in
order: the ``gpus`` option (``{"0000:3b:00.0": {"index": 3, "uuid": "GPU-..."}}``), the driver's
``/proc/driver/nvidia/gpus/<address>/information`` files, ``nvidia-smi --query-gpu`` when /proc
has none, and the driver's own ``NVRM: GPU at PCI:...: GPU-...`` lines (UUID only). /proc comes
before nvidia-smi because it cannot hang, and a GPU that just logged an XID is exactly the one that
can make nvidia-smi hang. /proc lists no index, so there the index is the GPU's position in PCI
bus order, which is how NVML and nvidia-smi number GPUs on Linux. A miss triggers a fresh discovery
at most once a minute (a GPU that fell off the bus and came back); an address still unknown gets
``gpu_pci`` alone.
"""

from __future__ import annotations

import csv
import logging
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vigil.collectors.kernel.classify import normalize_pci

log = logging.getLogger(__name__)

PROC_GPUS = Path("/proc/driver/nvidia/gpus")
NVIDIA_SMI_QUERY = ("--query-gpu=index,pci.bus_id,uuid", "--format=csv,noheader")


@dataclass(frozen=True, slots=True)
class GpuIdentity:
    index: int | None = None
    uuid: str | None = None


Discovery = Callable[[], dict[str, GpuIdentity]]


def from_proc(root: Path = PROC_GPUS) -> dict[str, GpuIdentity]:
    """``{pci: identity}`` from the driver's information files; {} when there are none."""
    found: dict[str, str | None] = {}
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return {}
    for folder in folders:
        fields = _information(folder / "information")
        address = fields.get("Bus Location") or folder.name
        try:
            found[normalize_pci(address)] = fields.get("GPU UUID")
        except ValueError:
            log.warning("unexpected GPU bus location %r in %s", address, folder)
    return {pci: GpuIdentity(i, uuid) for i, (pci, uuid) in enumerate(sorted(found.items()))}


def parse_nvidia_smi(text: str) -> dict[str, GpuIdentity]:
    """``nvidia-smi --query-gpu=index,pci.bus_id,uuid --format=csv,noheader`` output."""
    found: dict[str, GpuIdentity] = {}
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) != 3 or not row[0].strip().isdigit():
            continue
        try:
            found[normalize_pci(row[1].strip())] = GpuIdentity(int(row[0]), row[2].strip() or None)
        except ValueError:
            continue
    return found


def from_nvidia_smi(binary: str = "nvidia-smi", timeout: float = 10.0) -> dict[str, GpuIdentity]:
    try:
        done = subprocess.run([binary, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("nvidia-smi not usable for GPU discovery: %s", exc)
        return {}
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else {}


def default_discovery(proc_root: Path = PROC_GPUS, nvidia_smi: str = "nvidia-smi") -> Discovery:
    return lambda: from_proc(proc_root) or from_nvidia_smi(nvidia_smi)


class GpuMap:
    """PCI address -> GpuIdentity, refreshed by ``discover`` on a miss at most every ``refresh_s``."""

    def __init__(
        self,
        known: Mapping[str, GpuIdentity],
        discover: Discovery | None,
        monotonic: Callable[[], float],
        refresh_s: float = 60.0,
    ) -> None:
        self._configured = {normalize_pci(k): v for k, v in known.items()}
        self._map = dict(self._configured)
        self._discover = discover
        self._monotonic = monotonic
        self._refresh_s = refresh_s
        self._last_discovery: float | None = None

    def lookup(self, pci: str) -> GpuIdentity | None:
        if pci not in self._map:
            self._refresh()
        return self._map.get(pci)

    def learn_uuid(self, pci: str, uuid: str) -> None:
        known = self._map.get(pci)
        if known is None or known.uuid is None:
            self._map[pci] = GpuIdentity(known.index if known else None, uuid)

    def _refresh(self) -> None:
        now = self._monotonic()
        recent = self._last_discovery is not None and now - self._last_discovery < self._refresh_s
        if self._discover is None or recent:
            return
        self._last_discovery = now
        for pci, found in self._discover().items():
            if pci not in self._configured:  # configuration wins over discovery
                learned = self._map.get(pci)
                self._map[pci] = GpuIdentity(found.index, found.uuid or (learned.uuid if learned else None))


def _information(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields
