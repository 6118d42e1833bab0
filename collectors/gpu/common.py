"""What the GPU sources share: series keys, the ``gpu_info`` identity series, throttle reason names,
PCI id normalisation, unit factors and the memory of fields a device does not support."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from vigil.collectors.base import CollectorContext, Problem, Sample

from vigil import catalog as c
from vigil.events import LogEvent, series_key

GPU_INDEX = "gpu_index"
MIG_INSTANCE = "mig_instance"

MIB = float(1 << 20)
MHZ = 1e6
PERCENT = 0.01
MILLI = 1e-3

# NVML clock event ("throttle") reasons, bit -> label value of ``gpu_throttle{reason}``. The bits are
# nvmlClocksEventReason* / nvmlClocksThrottleReason* (a unit test checks them against pynvml); the
# names are nvidia-smi's ``clocks_event_reasons.*`` fields, so every source labels a reason alike.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

_UNSAFE = re.compile(r'[",\\{}\n\r=]')
_PCI = re.compile(r"^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")


def clean_label_value(value: str) -> str:
    """Label values may not hold ``"`` or ``,`` (series keys are parsed back by splitting on them)."""
    return _UNSAFE.sub("_", value.strip())


def normalise_pci(bus_id: str) -> str:
    """``00000000:18:00.0`` (NVML, nvidia-smi) -> ``0000:18:00.0`` (lspci, the kernel): one form for
    every source, so a GPU named by its PCI id in a log line matches its telemetry."""
    match = _PCI.match(bus_id.strip())
    if not match:
        return clean_label_value(bus_id)
    domain, bus, device, function = match.groups()
    return f"{int(domain or '0', 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{function}"


class SeriesKeys:
    """The canonical series keys of one GPU (or MIG slice), built once and reused every tick."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.labels = {k: clean_label_value(v) for k, v in labels.items()}
        self._cache: dict[tuple[str, ...], str] = {}

    def __call__(self, metric: str, **extra: str) -> str:
        token = (metric, *(f"{k}={v}" for k, v in extra.items()))
        key = self._cache.get(token)
        if key is None:
            labels = {**self.labels, **{k: clean_label_value(v) for k, v in extra.items()}}
            key = self._cache[token] = series_key(metric, labels)
        return key


def gpu_labels(index: int | str, mig_instance: str | None = None, **more: str) -> dict[str, str]:
    labels = {GPU_INDEX: str(index), **{k: v for k, v in more.items() if v}}
    if mig_instance is not None:
        labels[MIG_INSTANCE] = mig_instance
    return labels


def info_sample(keys: SeriesKeys, identity: Mapping[str, str]) -> Sample:
    """``gpu_info{gpu_index, uuid, serial, pci_bus_id, model, driver_version...} 1``: identity lives on
    one series per GPU, Prometheus ``_info`` style, so the other series keep short stable keys."""
    extra = {k: v for k, v in identity.items() if v}
    labels = {**keys.labels, **{k: clean_label_value(v) for k, v in extra.items()}}
    return series_key(c.GPU_INFO, labels), 1.0


def throttle_samples(keys: SeriesKeys, mask: int) -> Iterator[Sample]:
    """The raw bitmask and one 0/1 series per known reason (a rule can say which reason, not a bit)."""
    yield keys(c.GPU_THROTTLE_REASONS), float(mask)
    for bit, reason in THROTTLE_REASONS:
        yield keys(c.GPU_THROTTLE, reason=reason), 1.0 if mask & bit else 0.0


class Unsupported:
    """Fields a device said it does not support: reported once as a Problem, then never asked again
    (asking NVML or nvidia-smi for them every tick costs calls and floods the error counter)."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def __contains__(self, item: tuple[str, str]) -> bool:
        return item in self._seen

    def add(self, field: str, where: str, error: str = "not_supported", detail: str = "") -> Problem:
        self._seen.add((field, where))
        return Problem(error, f"{field} on {where}: {detail or error}")

    def __len__(self) -> int:
        return len(self._seen)


def xid_event(
    context: CollectorContext,
    ts: float,
    code: int,
    *,
    gpu_index: int | None,
    gpu_uuid: str | None,
    gpu_pci: str | None,
    source: str,
    raw: str,
) -> LogEvent:
    return LogEvent(
        ts=ts,
        host=context.host,
        cluster=context.cluster,
        kind="xid",
        code=code,
        raw=raw,
        gpu_pci=normalise_pci(gpu_pci) if gpu_pci else None,
        gpu_uuid=gpu_uuid or None,
        gpu_index=gpu_index,
        source=source,
    )


# --- Names the GPU sources publish that vigil.catalog does not have yet (reported to the lead, who
# moves them into the catalog; tests/contract checks every published name is in one of the two).

