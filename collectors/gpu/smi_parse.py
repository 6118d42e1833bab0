"""Parsers for nvidia-smi's two outputs, both into one form: per GPU, ``{query field: raw text}``.

- :func:`parse_csv`: ``--query-gpu=... --format=csv[,noheader][,nounits]``. With a header the
  columns are named by it (units like ``memory.total [MiB]`` are dropped from the names); without
  one, by the fields that were asked for.
- :func:`parse_q`: the human ``nvidia-smi -q`` report, an indented ``key : value`` tree. Its values
  are put under the ``--query-gpu`` field names they correspond to (``FB Memory Usage/Total`` ->
  ``memory.total``), plus a few the CSV query cannot give (PCIe replays, the slowdown threshold,
  MIG slices), so one table turns either output into samples.

Values stay text here; :func:`to_number` reads them ("[N/A]", "[Not Supported]", units, hex).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
_KEY_VALUE = re.compile(r"^(\S.*?)\s+:\s?(.*)$")
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


# ---------------------------------------------------------------------------------------------- -q


@dataclass(slots=True)
class QGpu:
    bus_id: str
    values: dict[str, str]  # query field name -> raw text
    mig: list[dict[str, str]] = field(default_factory=list)  # per MIG device: gpu_instance, memory.*


@dataclass(slots=True)
class QReport:
    driver_version: str
    gpus: list[QGpu]


Tree = dict[str, Any]


def parse_tree(text: str) -> Tree:
    """The indented ``key : value`` report as nested dicts; a repeated key becomes a list, and a value
    line followed by deeper lines becomes a dict whose ``""`` entry is the value."""
    root: Tree = {}
    stack: list[tuple[int, Tree]] = [(-1, root)]
    last: tuple[int, Tree, str] | None = None  # the previous value line: (indent, parent, key)
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("===="):
            continue
        indent = len(line) - len(line.lstrip())
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if last is not None and indent > last[0] and last[1] is parent:
            parent = _promote(last[1], last[2])  # deeper lines under a value line
            stack.append((last[0], parent))
        match = _KEY_VALUE.match(line.strip())
        if match:
            key, value = match.group(1).strip(), match.group(2).strip()
            _put(parent, key, value)
            last = (indent, parent, key)
        else:
            child: Tree = {}
            _put(parent, line.strip(), child)
            stack.append((indent, child))
            last = None
    return root


def _put(node: Tree, key: str, value: Any) -> None:
    if key not in node:
        node[key] = value
    elif isinstance(node[key], list):
        node[key].append(value)
    else:
        node[key] = [node[key], value]


def _promote(node: Tree, key: str) -> Tree:
    current = node[key]
    target = current[-1] if isinstance(current, list) else current
    if isinstance(target, dict):
        return target
    promoted: Tree = {"": target}
    if isinstance(current, list):
        current[-1] = promoted
    else:
        node[key] = promoted
    return promoted


def get(tree: Tree, *path: str) -> str | None:
    """The text at ``path`` (the first of repeated keys; a promoted value line's own value)."""
    node: Any = tree
    for key in path:
        if isinstance(node, list):
            node = node[0]
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, list):
        node = node[0]
    if isinstance(node, dict):
        node = node.get("")
    return node if isinstance(node, str) else None


def _first(tree: Tree, *paths: tuple[str, ...]) -> str | None:
    for path in paths:
        value = get(tree, *path)
        if value is not None:
            return value
    return None


# -q path(s) -> query field. Several paths: driver generations name the same reading differently.
Q_FIELDS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("name", (("Product Name",),)),
    ("uuid", (("GPU UUID",),)),
    ("serial", (("Serial Number",),)),
    ("pci.bus_id", (("PCI", "Bus Id"),)),
    ("utilization.gpu", (("Utilization", "GPU"), ("Utilization", "Gpu"))),
    ("utilization.memory", (("Utilization", "Memory"),)),
    ("utilization.encoder", (("Utilization", "Encoder"),)),
    ("utilization.decoder", (("Utilization", "Decoder"),)),
    ("memory.total", (("FB Memory Usage", "Total"),)),
    ("memory.reserved", (("FB Memory Usage", "Reserved"),)),
    ("memory.used", (("FB Memory Usage", "Used"),)),
    ("memory.free", (("FB Memory Usage", "Free"),)),
    ("clocks.current.sm", (("Clocks", "SM"),)),
    ("clocks.current.memory", (("Clocks", "Memory"),)),
    ("temperature.gpu", (("Temperature", "GPU Current Temp"),)),
    ("temperature.memory", (("Temperature", "Memory Current Temp"),)),
    (SLOWDOWN_TEMP, (("Temperature", "GPU Slowdown Temp"),)),
    (
        "power.draw",
        (
            ("GPU Power Readings", "Instantaneous Power Draw"),
            ("GPU Power Readings", "Power Draw"),
            ("Power Readings", "Power Draw"),
        ),
    ),
    (
        "enforced.power.limit",
        (("GPU Power Readings", "Current Power Limit"), ("Power Readings", "Enforced Power Limit")),
    ),
    ("fan.speed", (("Fan Speed",),)),
    ("pstate", (("Performance State",),)),
    ("retired_pages.single_bit_ecc.count", (("Retired Pages", "Single Bit ECC"),)),
    ("retired_pages.double_bit.count", (("Retired Pages", "Double Bit ECC"),)),
    ("retired_pages.pending", (("Retired Pages", "Pending Page Blacklist"), ("Retired Pages", "Pending"))),
    ("remapped_rows.correctable", (("Remapped Rows", "Correctable Error"), ("Remapped Rows",))),
    ("remapped_rows.uncorrectable", (("Remapped Rows", "Uncorrectable Error"), ("Remapped Rows",))),
    ("remapped_rows.pending", (("Remapped Rows", "Pending"), ("Remapped Rows",))),
    ("remapped_rows.failure", (("Remapped Rows", "Remapping Failure Occurred"), ("Remapped Rows",))),
    (PCIE_REPLAYS, (("PCI", "Replays Since Reset"),)),
    ("mig.mode.current", (("MIG Mode", "Current"),)),
)
# -q throttle flag names -> the reason names of THROTTLE_REASONS.
Q_THROTTLE = {
    "Idle": "gpu_idle",
    "Applications Clocks Setting": "applications_clocks_setting",
    "SW Power Cap": "sw_power_cap",
    "HW Slowdown": "hw_slowdown",
    "Sync Boost": "sync_boost",
    "SW Thermal Slowdown": "sw_thermal_slowdown",
    "HW Thermal Slowdown": "hw_thermal_slowdown",
    "HW Power Brake Slowdown": "hw_power_brake_slowdown",
    "Display Clock Setting": "display_clock_setting",
}


def parse_q(text: str) -> QReport:
    """``nvidia-smi -q`` -> per GPU (in report order, which is the NVML index order) its values under
    query field names. Raises ValueError when the text is not such a report."""
    tree = parse_tree(text)
    gpus = [
        _q_gpu(key.split(" ", 1)[1], node)
        for key, node in tree.items()
        if key.startswith("GPU ") and isinstance(node, dict)
    ]
    if not gpus and "Attached GPUs" not in tree:
        raise ValueError("not an nvidia-smi -q report (no 'Attached GPUs', no 'GPU <bus id>' section)")
    # r610+ mark "Driver Version" deprecated in brackets and add "KMD Version" with the bare number.
    driver = get(tree, "KMD Version") or _NOTE.sub("", get(tree, "Driver Version") or "")
    return QReport(driver_version=driver, gpus=gpus)


def _q_gpu(bus_id: str, node: Tree) -> QGpu:
    values = {name: value for name, paths in Q_FIELDS if (value := _first(node, *paths)) is not None}
    values.setdefault("pci.bus_id", bus_id)
    reasons = node.get("Clocks Event Reasons") or node.get("Clocks Throttle Reasons")
    if isinstance(reasons, dict):
        values["clocks_throttle_reasons.active"] = _throttle_mask(reasons)
    values.update(_q_ecc(node))
    return QGpu(bus_id=bus_id, values=values, mig=_q_mig(node))


def _throttle_mask(reasons: Tree) -> str:
    bits = dict((name, bit) for bit, name in THROTTLE_REASONS)
    mask = 0
    for label, reason in Q_THROTTLE.items():
        value = get(reasons, label) or get(reasons, "HW Slowdown", label) or ""
        if value.lower() == "active":
            mask |= bits[reason]
    return hex(mask)


def _q_ecc(node: Tree) -> dict[str, str]:
    """ECC totals: old drivers print ``Single Bit/Double Bit -> Total``; r535+ print SRAM/DRAM
    ``Correctable``/``Uncorrectable`` counts, summed here into the same totals."""
    out: dict[str, str] = {}
    for counter in ("Volatile", "Aggregate"):
        section = get_node(node, "ECC Errors", counter)
        if section is None:
            continue
        low = counter.lower()
        old_sbe, old_dbe = get(section, "Single Bit", "Total"), get(section, "Double Bit", "Total")
        if old_sbe is not None or old_dbe is not None:
            out[f"ecc.errors.corrected.{low}.total"] = old_sbe or "N/A"
            out[f"ecc.errors.uncorrected.{low}.total"] = old_dbe or "N/A"
            continue
        sums = {"corrected": _sum(section, lambda k: "uncorrectable" not in k and "correctable" in k)}
        sums["uncorrected"] = _sum(section, lambda k: "uncorrectable" in k)
        for kind, total in sums.items():
            out[f"ecc.errors.{kind}.{low}.total"] = total
    return out


def _sum(section: Tree, pick: Any) -> str:
    values = [to_number(v) for k, v in section.items() if isinstance(v, str) and pick(k.lower())]
    numbers = [v for v in values if not isinstance(v, Missing)]
    return f"{sum(numbers):g}" if numbers else "N/A"


def get_node(tree: Tree, *path: str) -> Tree | None:
    node: Any = tree
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, list):
            node = node[0]
    return node if isinstance(node, dict) else None


def _q_mig(node: Tree) -> list[dict[str, str]]:
    devices = node.get("MIG Device")
    if devices is None:
        return []
    out = []
    for device in devices if isinstance(devices, list) else [devices]:
        if not isinstance(device, dict):
            continue
        values = {"gpu_instance": get(device, "GPU Instance ID") or ""}
        for name, label in (("memory.total", "Total"), ("memory.used", "Used"), ("memory.free", "Free")):
            value = _first(device, ("Shared FB Memory Usage", label), ("FB Memory Usage", label))
            if value is not None:
                values[name] = value
        out.append(values)
    return out
