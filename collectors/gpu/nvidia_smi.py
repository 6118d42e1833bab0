"""The nvidia-smi collector: the fallback where neither NVML from Python nor dcgm-exporter is there.

It runs ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`` (binary path configurable).
An older driver rejects a field it does not know (``Field "x" is not a valid field to query.``, exit
2): that field is dropped, reported once, and the query retried without it. When the CSV query fails
outright, or a GPU is in MIG mode (the CSV has no per-slice data), the full report is read too, as
XML (``nvidia-smi -q -x``, the machine interface; ``mode: auto``); ``mode: csv`` and ``mode: q`` use
one format only. Both outputs go through :mod:`vigil.collectors.gpu.smi_parse` into the same
``{query field: text}`` form and this module's one field table.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vigil.collectors.base import Collector, CollectorContext, Item, Problem
from vigil.collectors.gpu.common import (
    MHZ,
    MIB,
    PERCENT,
    SeriesKeys,
    Unsupported,
    gpu_labels,
    info_sample,
    normalise_pci,
    throttle_samples,
)
from vigil.collectors.gpu.smi_parse import (
    MISSING,
    PCIE_REPLAYS,
    SLOWDOWN_TEMP,
    Missing,
    QGpu,
    QReport,
    parse_csv,
    parse_xml,
    to_number,
)

from vigil import catalog as c
from vigil.config import FrozenModel, PositiveDuration, validate

Runner = Callable[[Sequence[str], float], tuple[int, str, str]]
Row = dict[str, str]
INVALID_FIELD = re.compile(r'Field "([^"]+)" is not a valid field to query')
IDENTITY_FIELDS = ("index", "uuid", "serial", "pci.bus_id", "name", "driver_version")


@dataclass(frozen=True, slots=True)
class SmiField:
    name: str  # the --query-gpu field (or a -q-only pseudo field)
    metric: str
    scale: float = 1.0
    labels: tuple[tuple[str, str], ...] = ()
    query: bool = True  # False: only ``nvidia-smi -q -x`` reports it


THROTTLE_FIELD = "clocks_throttle_reasons.active"  # both spellings are accepted by current drivers
FIELDS: tuple[SmiField, ...] = (
    SmiField("utilization.gpu", c.GPU_UTILIZATION, PERCENT),
    SmiField("utilization.memory", c.GPU_MEMORY_UTILIZATION, PERCENT),
    SmiField("utilization.encoder", c.GPU_ENC_UTILIZATION, PERCENT),
    SmiField("utilization.decoder", c.GPU_DEC_UTILIZATION, PERCENT),
    SmiField("memory.total", c.GPU_MEMORY_TOTAL, MIB),
    SmiField("memory.reserved", c.GPU_MEMORY_RESERVED, MIB),
    SmiField("memory.used", c.GPU_MEMORY_USED, MIB),
    SmiField("memory.free", c.GPU_MEMORY_FREE, MIB),
    SmiField("clocks.current.sm", c.GPU_SM_CLOCK, MHZ),
    SmiField("clocks.current.memory", c.GPU_MEM_CLOCK, MHZ),
    SmiField("temperature.gpu", c.GPU_TEMPERATURE),
    SmiField("temperature.memory", c.GPU_MEMORY_TEMPERATURE),
    SmiField(SLOWDOWN_TEMP, c.GPU_SLOWDOWN_TEMPERATURE, query=False),
    SmiField("power.draw", c.GPU_POWER),
    SmiField("enforced.power.limit", c.GPU_POWER_LIMIT),
    SmiField("fan.speed", c.GPU_FAN_SPEED, PERCENT),
    SmiField("pstate", c.GPU_PERFORMANCE_STATE),
    SmiField("ecc.errors.corrected.volatile.total", c.GPU_ECC_SBE),
    SmiField("ecc.errors.uncorrected.volatile.total", c.GPU_ECC_DBE),
    SmiField("ecc.errors.corrected.aggregate.total", c.GPU_ECC_SBE_AGGREGATE),
    SmiField("ecc.errors.uncorrected.aggregate.total", c.GPU_ECC_DBE_AGGREGATE),
    SmiField("retired_pages.single_bit_ecc.count", c.GPU_RETIRED_PAGES, labels=(("cause", "sbe"),)),
    SmiField("retired_pages.double_bit.count", c.GPU_RETIRED_PAGES, labels=(("cause", "dbe"),)),
    SmiField("retired_pages.pending", c.GPU_RETIRED_PAGES_PENDING),
    SmiField("remapped_rows.correctable", c.GPU_REMAPPED_ROWS, labels=(("cause", "correctable"),)),
    SmiField("remapped_rows.uncorrectable", c.GPU_REMAPPED_ROWS, labels=(("cause", "uncorrectable"),)),
    SmiField("remapped_rows.pending", c.GPU_REMAP_PENDING),
    SmiField("remapped_rows.failure", c.GPU_REMAP_FAILURE),
    SmiField(PCIE_REPLAYS, c.GPU_PCIE_REPLAY, query=False),
)
MIG_FIELDS = (
    ("memory.total", c.GPU_MEMORY_TOTAL),
    ("memory.used", c.GPU_MEMORY_USED),
    ("memory.free", c.GPU_MEMORY_FREE),
)
QUERY = (*IDENTITY_FIELDS, THROTTLE_FIELD, "mig.mode.current", *(f.name for f in FIELDS if f.query))


class SmiOptions(FrozenModel):
    binary: str = "nvidia-smi"
    timeout: PositiveDuration = 10.0
    mode: Literal["auto", "csv", "q"] = "auto"
    mig: bool = True


def run_command(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout, done.stderr


class NvidiaSmiCollector:
    def __init__(self, context: CollectorContext, options: SmiOptions | None = None, run: Runner = run_command) -> None:
        self.name = "nvidia_smi"
        self.context = context
        self.options = options or SmiOptions()
        self.unsupported = Unsupported()
        self._run = run
        self._query = list(QUERY)
        self._keys: dict[tuple[str, str], SeriesKeys] = {}

    def collect(self) -> Iterator[Item]:
        rows: list[Row] | None = None
        if self.options.mode != "q":
            rows = yield from self._csv()
            if rows is None and self.options.mode == "csv":
                return
        wants_mig = self.options.mig and any(r.get("mig.mode.current", "").lower() == "enabled" for r in rows or [])
        if rows is None or wants_mig:
            report = yield from self._q()
            if report is not None:
                rows = rows if rows is not None else _rows_of(report)
                yield from self._mig_slices(report.gpus, rows)
        for row in rows or []:
            yield from self._row(row)

    # ---------------------------------------------------------------- running nvidia-smi

    def _call(self, args: Sequence[str]) -> tuple[int, str, str] | Problem:
        argv = [self.options.binary, *args]
        try:
            return self._run(argv, self.options.timeout)
        except FileNotFoundError:
            return Problem("missing_binary", f"{self.options.binary}: not found")
        except PermissionError:
            return Problem("permission", f"{self.options.binary}: not executable")
        except subprocess.TimeoutExpired:
            return Problem("timeout", f"{self.options.binary} {args[0]}: no answer in {self.options.timeout:g}s")
        except OSError as exc:
            return Problem("exec_error", f"{self.options.binary}: {exc}")

    def _csv(self) -> Generator[Problem, None, list[Row] | None]:
        while self._query:
            done = self._call([f"--query-gpu={','.join(self._query)}", "--format=csv,noheader,nounits"])
            if isinstance(done, Problem):
                yield done
                return None
            rc, out, err = done
            rejected = INVALID_FIELD.search(out + err)
            if rc != 0 and rejected and rejected.group(1) in self._query:
                self._query.remove(rejected.group(1))
                yield self.unsupported.add(rejected.group(1), "nvidia-smi --query-gpu", detail="not a valid field here")
                continue
            if rc != 0:
                yield Problem("nvidia_smi_failed", f"--query-gpu exit {rc}: {_first_line(out + err)}")
                return None
            try:
                return parse_csv(out, self._query)
            except ValueError as exc:
                yield Problem("parse", f"--query-gpu: {exc}")
                return None
        return None

    def _q(self) -> Generator[Problem, None, QReport | None]:
        done = self._call(["-q", "-x"])
        if isinstance(done, Problem):
            yield done
            return None
        rc, out, err = done
        if rc != 0:
            yield Problem("nvidia_smi_failed", f"-q -x exit {rc}: {_first_line(out + err)}")
            return None
        try:
            return parse_xml(out)
        except ValueError as exc:
            yield Problem("parse", f"-q -x: {exc}")
            return None

    # ---------------------------------------------------------------- rows to samples

    def _row(self, row: Mapping[str, str]) -> Iterator[Item]:
        index = row.get("index", "")
        if not index.isdigit():
            yield Problem("parse", f"no GPU index in {dict(row)}")
            return
        keys = self._series_keys(index, "")
        where = f"gpu {index}"
        identity = {
            "uuid": row.get("uuid", ""),
            "serial": row.get("serial", ""),
            "pci_bus_id": normalise_pci(row.get("pci.bus_id", "")),
            "model": row.get("name", ""),
            "driver_version": row.get("driver_version", ""),
        }
        yield info_sample(keys, {k: v for k, v in identity.items() if v.strip().lower() not in MISSING})
        mask = yield from self._number(row, THROTTLE_FIELD, where)
        if mask is not None:
            yield from throttle_samples(keys, int(mask))
        for spec in FIELDS:
            value = yield from self._number(row, spec.name, where)
            if value is not None:
                yield keys(spec.metric, **dict(spec.labels)), value * spec.scale

    def _number(self, row: Mapping[str, str], name: str, where: str) -> Generator[Problem, None, float | None]:
        raw = row.get(name)
        if raw is None or (name, where) in self.unsupported:
            return None
        value = to_number(raw)
        if not isinstance(value, Missing):
            return value
        if value in ("not_supported", "permission"):
            yield self.unsupported.add(name, where, str(value), raw)
        elif value != "empty":
            yield Problem(str(value), f"{name} on {where}: {raw!r}")
        return None

    def _mig_slices(self, gpus: list[QGpu], rows: list[Row]) -> Iterator[Item]:
        """Memory per GPU instance from ``-q -x`` (compute instances of one GPU instance share it); the
        report's GPUs are matched to the CSV rows by PCI bus id."""
        index_of = {normalise_pci(r.get("pci.bus_id", "")): r.get("index", "") for r in rows}
        for position, gpu in enumerate(gpus):
            index = index_of.get(normalise_pci(gpu.bus_id)) or str(position)
            seen: set[str] = set()
            for device in gpu.mig:
                instance = device.get("gpu_instance", "")
                if not instance or instance in seen:
                    continue
                seen.add(instance)
                keys = self._series_keys(index, instance)
                yield info_sample(keys, {})
                for name, metric in MIG_FIELDS:
                    value = yield from self._number(device, name, f"gpu {index} mig {instance}")
                    if value is not None:
                        yield keys(metric), value * MIB

    def _series_keys(self, index: str, mig: str) -> SeriesKeys:
        keys = self._keys.get((index, mig))
        if keys is None:
            keys = self._keys[index, mig] = SeriesKeys(gpu_labels(index, mig or None))
        return keys


def _rows_of(report: QReport) -> list[Row]:
    return [
        {**gpu.values, "index": str(i), "driver_version": report.driver_version} for i, gpu in enumerate(report.gpus)
    ]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")[:200]


def create(options: dict[str, Any], context: CollectorContext) -> Collector:
    return NvidiaSmiCollector(context, validate(SmiOptions, options, prefix="agent.collectors.nvidia_smi"))
