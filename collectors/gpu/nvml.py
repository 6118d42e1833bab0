"""The NVML collector: every GPU (and MIG slice) the driver reports, through an :class:`NvmlReader`.

A call that fails yields a Problem and the collector goes on with the other fields and GPUs. A field
a GPU does not support is reported once and not asked again; a lost GPU stops only that GPU's reads
for the tick; a failed ``nvmlInit`` (no driver) is a Problem every collection and is retried every
``init_retry`` seconds. XID events come from NVML's event set, polled without waiting each collection.

NVLink errors are published summed over the GPU's links, labelled by ``kind``: NVML sums them itself
(one call, not links x counters), dcgm-exporter's default fields are the same totals, and the thing an
operator acts on is the GPU (reset it, drain it, replace the tray), not link 7 of 18.

``python -m vigil.collectors.gpu.nvml`` prints one collection as readable lines (``--record out.json``
also writes a recording that :class:`RecordedNvml` replays in tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vigil.collectors.base import Collector, CollectorContext, Item, Problem, Sample
from vigil.collectors.gpu.common import (
    MHZ,
    MILLI,
    PERCENT,
    SeriesKeys,
    Unsupported,
    gpu_labels,
    info_sample,
    normalise_pci,
    throttle_samples,
    xid_event,
)
from vigil.collectors.gpu.nvml_reader import NvmlError, NvmlReader, RecordedNvml, RecordingReader

from vigil import catalog as c
from vigil.clock import Clock, SystemClock
from vigil.config import Duration, FrozenModel, validate
from vigil.errors import ConfigError
from vigil.events import LogEvent, TrainingStep, TrainingStepBatch

T = TypeVar("T")


class NvmlOptions(FrozenModel):
    init_retry: Duration = 60.0  # seconds between nvmlInit attempts while the driver is unavailable
    mig: bool = True  # report MIG slices (memory per GPU instance) on MIG-enabled GPUs
    xid_events: bool = True
    recording: Path | None = None  # replay a JSON recording instead of the driver (demos, tests)


# (field, metric, extra labels, reader method, arguments after the GPU index, scale to base units)
SCALARS: tuple[tuple[str, str, dict[str, str], str, tuple[str, ...], float], ...] = (
    ("sm_clock", c.GPU_SM_CLOCK, {}, "clock", ("sm",), MHZ),
    ("mem_clock", c.GPU_MEM_CLOCK, {}, "clock", ("mem",), MHZ),
    ("temperature", c.GPU_TEMPERATURE, {}, "temperature", (), 1.0),
    ("memory_temperature", c.GPU_MEMORY_TEMPERATURE, {}, "memory_temperature", (), 1.0),
    ("slowdown_temperature", c.GPU_SLOWDOWN_TEMPERATURE, {}, "slowdown_temperature", (), 1.0),
    ("power", c.GPU_POWER, {}, "power", (), MILLI),
    ("power_limit", c.GPU_POWER_LIMIT, {}, "power_limit", (), MILLI),
    ("energy", c.GPU_ENERGY, {}, "energy", (), MILLI),
    ("ecc_sbe_volatile", c.GPU_ECC_SBE, {}, "ecc_errors", ("sbe", "volatile"), 1.0),
    ("ecc_dbe_volatile", c.GPU_ECC_DBE, {}, "ecc_errors", ("dbe", "volatile"), 1.0),
    ("ecc_sbe_aggregate", c.GPU_ECC_SBE_AGGREGATE, {}, "ecc_errors", ("sbe", "aggregate"), 1.0),
    ("ecc_dbe_aggregate", c.GPU_ECC_DBE_AGGREGATE, {}, "ecc_errors", ("dbe", "aggregate"), 1.0),
    ("retired_pages_sbe", c.GPU_RETIRED_PAGES, {"cause": "sbe"}, "retired_pages", ("sbe",), 1.0),
    ("retired_pages_dbe", c.GPU_RETIRED_PAGES, {"cause": "dbe"}, "retired_pages", ("dbe",), 1.0),
    ("retired_pages_pending", c.GPU_RETIRED_PAGES_PENDING, {}, "retired_pages_pending", (), 1.0),
    ("pcie_replays", c.GPU_PCIE_REPLAY, {}, "pcie_replays", (), 1.0),
)


class _GpuLost(Exception):
    """Internal: the GPU is gone; stop reading it for this tick."""


@dataclass(slots=True)
class _Gpu:
    keys: SeriesKeys
    info: Sample
    uuid: str
    pci: str


class NvmlCollector:
    def __init__(
        self,
        reader: NvmlReader,
        context: CollectorContext,
        options: NvmlOptions | None = None,
        clock: Clock | None = None,
        name: str = "nvml",
    ) -> None:
        self.name = name
        self.reader = reader
        self.context = context
        self.options = options or NvmlOptions()
        self.clock = clock or SystemClock()
        self.unsupported = Unsupported()
        self._ready = False
        self._init_problem: Problem | None = None
        self._next_init = float("-inf")
        self._driver = ""
        self._gpus: dict[int, _Gpu] = {}
        self._xid_registered: set[int] = set()  # survives a lost GPU: its registration is not repeated

    def collect(self) -> Iterator[Item]:
        if not self._ready:
            self._try_init()
            if not self._ready:
                if self._init_problem is not None:
                    yield self._init_problem
                return
        try:
            count = self.reader.device_count()
        except NvmlError as exc:
            detail = (
                f"device count failed ({exc.detail or exc.label}), re-initialising every {self.options.init_retry:g}s"
            )
            self._drop_session(Problem(exc.label, detail))
            yield Problem(exc.label, detail)
            return
        if self.options.xid_events:
            yield from self._xid_events()
        for gpu in range(count):
            problems: list[Problem] = []
            try:
                yield from self._collect_gpu(gpu, problems)
            except _GpuLost:
                self._gpus.pop(gpu, None)  # re-read its identity when it is back
            yield from problems

    # ---------------------------------------------------------------- session

    def _try_init(self) -> None:
        now = self.clock.monotonic()
        if now < self._next_init:
            return
        self._next_init = now + self.options.init_retry
        try:
            self.reader.init()
        except NvmlError as exc:
            detail = f"nvmlInit failed ({exc.detail or exc.label}), retrying every {self.options.init_retry:g}s"
            self._init_problem = Problem(exc.label, detail)
            return
        self._ready, self._init_problem = True, None
        try:
            self._driver = self.reader.driver_version()
        except NvmlError:
            self._driver = ""

    def _drop_session(self, problem: Problem) -> None:
        """The driver went away under us: shut down and init again later (identity may change too);
        until then every collection reports ``problem``."""
        with contextlib.suppress(NvmlError):  # the session is being abandoned either way
            self.reader.shutdown()
        self._ready, self._init_problem = False, problem
        self._gpus.clear()
        self._xid_registered.clear()
        self._next_init = self.clock.monotonic() + self.options.init_retry

    # ---------------------------------------------------------------- one GPU

    def _read(self, problems: list[Problem], field: str, where: str, fn: Callable[..., T], *args: Any) -> T | None:
        if (field, where) in self.unsupported:
            return None
        try:
            return fn(*args)
        except NvmlError as exc:
            if exc.label == "not_supported":
                problems.append(self.unsupported.add(field, where, detail=exc.detail))
                return None
            problems.append(Problem(exc.label, f"{field} on {where}: {exc.detail}"))
            if exc.label == "gpu_lost":
                raise _GpuLost from exc
            return None

    def _discover(self, gpu: int, problems: list[Problem]) -> _Gpu | None:
        identity = self._read(problems, "identity", f"gpu {gpu}", self.reader.identity, gpu)
        if identity is None:
            return None
        keys = SeriesKeys(gpu_labels(gpu))
        pci = normalise_pci(identity.pci_bus_id)
        info = {
            "uuid": identity.uuid,
            "serial": identity.serial,
            "pci_bus_id": pci,
            "model": identity.name,
            "driver_version": self._driver,
        }
        state = self._gpus[gpu] = _Gpu(keys, info_sample(keys, info), identity.uuid, pci)
        if self.options.xid_events and gpu not in self._xid_registered:
            self._xid_registered.add(gpu)
            self._read(problems, "xid_events", f"gpu {gpu}", self.reader.register_xid_events, gpu)
        return state

    def _collect_gpu(self, gpu: int, problems: list[Problem]) -> Iterator[Sample]:
        state = self._gpus.get(gpu) or self._discover(gpu, problems)
        if state is None:
            return
        keys, where, r = state.keys, f"gpu {gpu}", self.reader
        yield state.info
        yield from self._usage(problems, keys, where, gpu, None)
        for field, metric, labels, method, args, scale in SCALARS:
            value = self._read(problems, field, where, getattr(r, method), gpu, *args)
            if value is not None:
                yield keys(metric, **labels), float(value) * scale
        mask = self._read(problems, "throttle_reasons", where, r.throttle_reasons, gpu)
        if mask is not None:
            yield from throttle_samples(keys, mask)
        rows = self._read(problems, "remapped_rows", where, r.remapped_rows, gpu)
        if rows is not None:
            corr, unc, pending, failure = rows
            yield keys(c.GPU_REMAPPED_ROWS, cause="correctable"), float(corr)
            yield keys(c.GPU_REMAPPED_ROWS, cause="uncorrectable"), float(unc)
            yield keys(c.GPU_REMAP_PENDING), float(pending)
            yield keys(c.GPU_REMAP_FAILURE), float(failure)
        for kind, count in (self._read(problems, "nvlink_errors", where, r.nvlink_errors, gpu) or {}).items():
            yield keys(c.GPU_NVLINK_ERRORS, kind=kind), float(count)
        if self.options.mig:
            yield from self._mig(problems, gpu, where)

    def _usage(
        self, problems: list[Problem], keys: SeriesKeys, where: str, gpu: int, mig: int | None
    ) -> Iterator[Sample]:
        rates = self._read(problems, "utilization", where, self.reader.utilization, gpu, mig)
        if rates is not None:
            yield keys(c.GPU_UTILIZATION), rates[0] * PERCENT
            yield keys(c.GPU_MEMORY_UTILIZATION), rates[1] * PERCENT
        memory = self._read(problems, "memory", where, self.reader.memory, gpu, mig)
        if memory is not None:
            yield keys(c.GPU_MEMORY_TOTAL), float(memory[0])
            yield keys(c.GPU_MEMORY_USED), float(memory[1])
            yield keys(c.GPU_MEMORY_FREE), float(memory[2])

    def _mig(self, problems: list[Problem], gpu: int, where: str) -> Iterator[Sample]:
        """One series set per GPU instance: compute instances inside it share its memory, so the
        first one stands for it and ``mig_instance`` is the GPU instance id (as in dcgm-exporter's
        ``GPU_I_ID`` and nvidia-smi's ``GPU Instance ID``)."""
        seen: set[int] = set()
        for device in self._read(problems, "mig", where, self.reader.mig_devices, gpu) or []:
            if device.gpu_instance in seen:
                continue
            seen.add(device.gpu_instance)
            keys = SeriesKeys(gpu_labels(gpu, mig_instance=str(device.gpu_instance)))
            yield info_sample(keys, {"uuid": device.uuid})
            yield from self._usage(problems, keys, f"{where} mig {device.gpu_instance}", gpu, device.index)

    # ---------------------------------------------------------------- XID events

    def _xid_events(self) -> Iterator[Item]:
        try:
            events = self.reader.xid_events()
        except NvmlError as exc:
            yield Problem(exc.label, f"xid events: {exc.detail}")
            return
        now = self.clock.now()
        for event in events:
            state = self._gpus.get(event.gpu)
            uuid, pci = (state.uuid, state.pci) if state else (None, None)
            raw = f"NVML XID {event.code} on GPU {event.gpu} ({uuid or 'unknown uuid'})"
            yield xid_event(
                self.context, now, event.code, gpu_index=event.gpu, gpu_uuid=uuid, gpu_pci=pci, source="nvml", raw=raw
            )


def create(options: dict[str, Any], context: CollectorContext) -> Collector:
    opts = validate(NvmlOptions, options, prefix="agent.collectors.nvml")
    if opts.recording is not None:
        try:
            reader: NvmlReader = RecordedNvml.load(opts.recording)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"agent.collectors.nvml.recording: cannot load {opts.recording}: {exc}") from exc
    else:
        from vigil.collectors.gpu.nvml_pynvml import PynvmlReader

        reader = PynvmlReader()
    return NvmlCollector(reader, context, opts)


# -------------------------------------------------------------------- python -m vigil.collectors.gpu.nvml


def format_item(item: Item) -> str:
    if isinstance(item, Problem):
        return f"PROBLEM {item.error}: {item.detail}"
    if isinstance(item, LogEvent):
        return f"EVENT {item.kind} {item.code} gpu={item.gpu_index} uuid={item.gpu_uuid} pci={item.gpu_pci}"
    if isinstance(item, TrainingStep):  # not from NVML; the Item union allows it
        return f"STEP {item.job_id} {item.step}"
    if isinstance(item, TrainingStepBatch):
        return f"STEPS {item.job_id} {item.rows}"
    key, value = item
    return f"{key} {value:.6g}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print NVML collections as readable lines.")
    parser.add_argument("--ticks", type=int, default=1, help="collections to print (default 1: --once)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between collections")
    parser.add_argument("--record", type=Path, help="also write every NVML call to this JSON recording")
    parser.add_argument("--recording", type=Path, help="replay this recording instead of the driver")
    args = parser.parse_args(argv)
    if args.recording:
        reader: NvmlReader = RecordedNvml.load(args.recording)
    else:
        from vigil.collectors.gpu.nvml_pynvml import PynvmlReader

        reader = PynvmlReader()
    recorder = RecordingReader(reader, source="python -m vigil.collectors.gpu.nvml --record") if args.record else None
    collector = NvmlCollector(recorder or reader, CollectorContext(host="local"), NvmlOptions(init_retry=0))
    clock = SystemClock()
    for tick in range(args.ticks):
        if tick:
            clock.sleep(args.interval)
        sys.stdout.write(f"# collection {tick + 1}\n")
        for item in collector.collect():
            sys.stdout.write(format_item(item) + "\n")
    if recorder is not None:
        args.record.write_text(json.dumps(recorder.dump(), indent=1))
        sys.stdout.write(f"# recording written to {args.record}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
