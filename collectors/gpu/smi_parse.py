"""Parsers for nvidia-smi's two machine outputs, both into one form: per GPU, ``{query field: raw text}``.

- :func:`parse_csv`: ``--query-gpu=... --format=csv[,noheader][,nounits]``. With a header the
  columns are named by it (units like ``memory.total [MiB]`` are dropped from the names); without
  one, by the fields that were asked for.
- :func:`parse_xml`: ``nvidia-smi -q -x``, the full report as XML (NVIDIA's ``nvsmi_device`` DTD).
  Its values are put under the ``--query-gpu`` field names they correspond to
  (``fb_memory_usage/total`` -> ``memory.total``), plus a few the CSV query cannot give (PCIe
  replays, the slowdown threshold, MIG slices), so one table turns either output into samples.
  Element names that changed between driver generations are all tried (:data:`XML_FIELDS`).

Values stay text here; :func:`to_number` reads them ("[N/A]", "[Not Supported]", units, hex).
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from vigil.collectors.gpu.common import THROTTLE_REASONS

# Field names the driver accepts in two spellings -> the one this module uses.
ALIASES = {
    "clocks_event_reasons.active": "clocks_throttle_reasons.active",
    "clocks.sm": "clocks.current.sm",
    "clocks.mem": "clocks.current.memory",
    "gpu_name": "name",
    "gpu_uuid": "uuid",
    "gpu_serial": "serial",
    "gpu_bus_id": "pci.bus_id",
}
# Placeholders nvidia-smi prints instead of a value -> the Problem label for it.
MISSING = {
    "[n/a]": "not_supported",
    "n/a": "not_supported",
    "[not supported]": "not_supported",
    "[requested functionality has been deprecated]": "not_supported",
    "requested functionality has been deprecated": "not_supported",
    "[insufficient permissions]": "permission",
    "[gpu is lost]": "gpu_lost",
    "[unknown error]": "unknown_error",
    "": "empty",
}
FLAGS = {"active": 1.0, "not active": 0.0, "yes": 1.0, "no": 0.0, "enabled": 1.0, "disabled": 0.0, "none": 0.0}
_NUMBER = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*(?:[a-zA-Z%/()]+)?$")
_PSTATE = re.compile(r"^P(\d{1,2})$")
_NOTE = re.compile(r"\s*\[[^\]]*\]$")

# Extra field names only -q provides (never sent to --query-gpu).
PCIE_REPLAYS = "q.pcie.replays"
SLOWDOWN_TEMP = "q.temperature.slowdown"


class Missing(str):
    """A value nvidia-smi did not give; the string is the Problem label (``not_supported``...)."""


def canonical(name: str) -> str:
    name = name.split(" [", 1)[0].strip()
    return ALIASES.get(name, name)


def to_number(raw: str) -> float | Missing:
    """``"81559 MiB"`` -> 81559.0, ``"0x24"`` -> 36.0, ``"P0"`` -> 0.0, ``"Active"`` -> 1.0."""
    text = raw.strip()
    lowered = text.lower()
    if lowered in MISSING:
        return Missing(MISSING[lowered])
    if lowered in FLAGS:
        return FLAGS[lowered]
    if lowered.startswith("0x"):
        try:
            return float(int(lowered, 16))
        except ValueError:
            return Missing("parse")
    match = _NUMBER.match(text) or _PSTATE.match(text)
    return float(match.group(1)) if match else Missing("parse")


# ---------------------------------------------------------------------------------------------- CSV


def parse_csv(text: str, fields: Iterable[str] | None = None) -> list[dict[str, str]]:
    """Rows of ``--query-gpu`` CSV; ``fields`` None means the first line is the header. A row with the
    wrong number of columns raises ValueError (the caller reports a parse Problem)."""
    rows = [row for row in csv.reader(io.StringIO(text), skipinitialspace=True) if any(cell.strip() for cell in row)]
    if fields is None:
        if not rows:
            return []
        names, rows = [canonical(name) for name in rows[0]], rows[1:]
    else:
        names = [canonical(name) for name in fields]
    out = []
    for row in rows:
        if len(row) != len(names):
            raise ValueError(f"{len(row)} columns where {len(names)} were asked for: {','.join(row)[:200]!r}")
        out.append({name: cell.strip() for name, cell in zip(names, row, strict=True)})
    return out


# ---------------------------------------------------------------------------------------------- -q -x


@dataclass(slots=True)
class QGpu:
    bus_id: str
    values: dict[str, str]  # query field name -> raw text
    mig: list[dict[str, str]] = field(default_factory=list)  # per MIG device: gpu_instance, memory.*


@dataclass(slots=True)
class QReport:
    driver_version: str
    gpus: list[QGpu]


# query field -> element path(s) under <gpu>; several paths: driver generations name one reading
# differently (r535 moved power into gpu_power_readings, r550 split power_draw into instant/average).
XML_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("name", ("product_name",)),
    ("uuid", ("uuid",)),
    ("serial", ("serial",)),
    ("pci.bus_id", ("pci/pci_bus_id",)),
    ("utilization.gpu", ("utilization/gpu_util",)),
    ("utilization.memory", ("utilization/memory_util",)),
    ("utilization.encoder", ("utilization/encoder_util",)),
    ("utilization.decoder", ("utilization/decoder_util",)),
    ("memory.total", ("fb_memory_usage/total",)),
    ("memory.reserved", ("fb_memory_usage/reserved",)),
    ("memory.used", ("fb_memory_usage/used",)),
    ("memory.free", ("fb_memory_usage/free",)),
    ("clocks.current.sm", ("clocks/sm_clock",)),
    ("clocks.current.memory", ("clocks/mem_clock",)),
    ("temperature.gpu", ("temperature/gpu_temp",)),
    ("temperature.memory", ("temperature/memory_temp",)),
    (SLOWDOWN_TEMP, ("temperature/gpu_temp_slow_threshold",)),
    (
        "power.draw",
        ("gpu_power_readings/instant_power_draw", "gpu_power_readings/power_draw", "power_readings/power_draw"),
    ),
    ("enforced.power.limit", ("gpu_power_readings/current_power_limit", "power_readings/enforced_power_limit")),
    ("fan.speed", ("fan_speed",)),
    ("pstate", ("performance_state",)),
    ("retired_pages.single_bit_ecc.count", ("retired_pages/multiple_single_bit_retirement/retired_count",)),
    ("retired_pages.double_bit.count", ("retired_pages/double_bit_retirement/retired_count",)),
    ("retired_pages.pending", ("retired_pages/pending_retirement", "retired_pages/pending_blacklist")),
    ("remapped_rows.correctable", ("remapped_rows/remapped_row_corr", "remapped_rows")),
    ("remapped_rows.uncorrectable", ("remapped_rows/remapped_row_unc", "remapped_rows")),
    ("remapped_rows.pending", ("remapped_rows/remapped_row_pending", "remapped_rows")),
    ("remapped_rows.failure", ("remapped_rows/remapped_row_failure", "remapped_rows")),
    (PCIE_REPLAYS, ("pci/replay_counter",)),
    ("mig.mode.current", ("mig_mode/current_mig",)),
)
# <clocks_event_reasons>/<clocks_throttle_reasons> children, less their prefix -> THROTTLE_REASONS' names
XML_THROTTLE = {"display_clocks_setting": "display_clock_setting"}


def parse_xml(text: str) -> QReport:
    """``nvidia-smi -q -x`` -> per GPU (in report order, which is the NVML index order) its values
    under query field names. Raises ValueError when the text is not such a report."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from exc
    if root.tag != "nvidia_smi_log":
        raise ValueError(f"not an nvidia-smi -q -x report (root element <{root.tag}>)")
    # r610+ mark driver_version deprecated and add kmd_version with the bare number.
    driver = _text(root, "kmd_version") or _NOTE.sub("", _text(root, "driver_version") or "")
    return QReport(driver_version=driver, gpus=[_xml_gpu(gpu) for gpu in root.findall("gpu")])


def _text(node: ET.Element, path: str) -> str | None:
    """The stripped text at ``path``; None when absent or when the element only holds others."""
    found = node.find(path)
    if found is None or len(found):
        return None
    return (found.text or "").strip()


def _xml_gpu(gpu: ET.Element) -> QGpu:
    values = {}
    for name, paths in XML_FIELDS:
        value = next((v for v in (_text(gpu, p) for p in paths) if v is not None), None)
        if value is not None:
            values[name] = value
    bus_id = values.setdefault("pci.bus_id", gpu.get("id", ""))
    reasons = gpu.find("clocks_event_reasons")
    if reasons is None:
        reasons = gpu.find("clocks_throttle_reasons")
    if reasons is not None:
        values["clocks_throttle_reasons.active"] = _throttle_mask(reasons)
    values.update(_xml_ecc(gpu))
    return QGpu(bus_id=bus_id, values=values, mig=_xml_mig(gpu))


def _throttle_mask(reasons: ET.Element) -> str:
    bits = {name: bit for bit, name in THROTTLE_REASONS}
    mask = 0
    for child in reasons:
        reason = re.sub(r"^clocks_(event|throttle)_reason_", "", child.tag)
        reason = XML_THROTTLE.get(reason, reason)
        if reason in bits and (child.text or "").strip().lower() == "active":
            mask |= bits[reason]
    return hex(mask)


def _xml_ecc(gpu: ET.Element) -> dict[str, str]:
    """ECC totals: old drivers give ``single_bit/total`` and ``double_bit/total``; r535+ give SRAM and
    DRAM ``*_correctable``/``*_uncorrectable*`` counts, summed here into the same totals."""
    out: dict[str, str] = {}
    for counter in ("volatile", "aggregate"):
        section = gpu.find(f"ecc_errors/{counter}")
        if section is None:
            continue
        old_sbe, old_dbe = _text(section, "single_bit/total"), _text(section, "double_bit/total")
        if old_sbe is not None or old_dbe is not None:
            out[f"ecc.errors.corrected.{counter}.total"] = old_sbe or "N/A"
            out[f"ecc.errors.uncorrected.{counter}.total"] = old_dbe or "N/A"
            continue
        tags = [child.tag for child in section]
        out[f"ecc.errors.corrected.{counter}.total"] = _sum(section, [t for t in tags if t.endswith("_correctable")])
        out[f"ecc.errors.uncorrected.{counter}.total"] = _sum(section, [t for t in tags if "_uncorrectable" in t])
    return out


def _sum(section: ET.Element, tags: list[str]) -> str:
    values = [to_number(_text(section, tag) or "") for tag in tags]
    numbers = [v for v in values if not isinstance(v, Missing)]
    return f"{sum(numbers):g}" if numbers else "N/A"


def _xml_mig(gpu: ET.Element) -> list[dict[str, str]]:
    out = []
    for device in gpu.findall("mig_devices/mig_device"):
        values = {"gpu_instance": _text(device, "gpu_instance_id") or ""}
        for name, tag in (("memory.total", "total"), ("memory.used", "used"), ("memory.free", "free")):
            value = _text(device, f"fb_memory_usage/{tag}") or _text(device, f"shared_fb_memory_usage/{tag}")
            if value is not None:
                values[name] = value
        out.append(values)
    return out
