"""``sim_gpu``: the real NVML collector over a simulated node, so the agent (and its benchmark) runs
the same code path, call for call, as on a GPU host.

:class:`SimNvml` is an :class:`NvmlReader` backed by a one-node :class:`FleetSimulator`. The node
moves with the clock: the first reader call after the clock has moved ticks the simulator, so a
collection sees one consistent instant whatever order it reads fields in. What the simulator models
comes from it (utilisation, memory used, SM clock, GPU and HBM temperature, power, SBE/DBE counts,
GPUs falling off the bus, XID lines as NVML XID events). What it does not model is fixed or
derived, and says so here:

- energy: power integrated over the ticks; memory total: 81559 MiB (an H100 80GB's, from the
  nvidia-smi captures); power limit 700 W; memory clock 2619 MHz; slowdown threshold 90 °C (assumed);
- memory-controller utilisation: 0.4 x GPU utilisation (not modelled);
- throttle reasons: SW thermal slowdown while a fault lowers the SM clock, else none;
- ECC aggregate = volatile (the simulated node never reboots); remapped rows: one uncorrectable row
  per DBE, pending until a reset the simulator never does; retired pages: not supported (H100s
  remap rows instead, as the captures show); NVLink errors and PCIe replays: 0; MIG: disabled.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field
from vigil.collectors.base import Collector, CollectorContext
from vigil.collectors.gpu.nvml import NvmlCollector, NvmlOptions
from vigil.collectors.gpu.nvml_reader import (
    NVLINK_KINDS,
    ClockDomain,
    EccCounter,
    EccKind,
    GpuIdentity,
    MigDevice,
    NvmlError,
    XidEvent,
)
from vigil.collectors.sim.config import FaultSpec, SimConfig
from vigil.collectors.sim.fleet import FleetSimulator

from vigil import catalog as c
from vigil.clock import Clock, SystemClock
from vigil.config import FrozenModel, PositiveDuration, validate
from vigil.events import FloatArray, parse_series_key

MIB = float(1 << 20)
MEMORY_TOTAL = 81559 * MIB
POWER_LIMIT_MW = 700_000.0
MEM_CLOCK_MHZ = 2619.0
SLOWDOWN_C = 90.0
SW_THERMAL_SLOWDOWN = 0x20
MODEL = "NVIDIA H100 80GB HBM3"
DRIVER = "590.48.01"
IntArray = npt.NDArray[np.intp]
_Layout = tuple[IntArray, IntArray, IntArray]
_COLUMNS = {
    m: i
    for i, m in enumerate(
        (
            c.GPU_UTILIZATION,
            c.GPU_MEMORY_USED,
            c.GPU_SM_CLOCK,
            c.GPU_TEMPERATURE,
            c.GPU_MEMORY_TEMPERATURE,
            c.GPU_POWER,
            c.GPU_ECC_SBE,
            c.GPU_ECC_DBE,
        )
    )
}


class SimGpuOptions(FrozenModel):
    gpus: Annotated[int, Field(ge=1, le=16)] = 8
    seed: Annotated[int, Field(ge=0)] = 0  # numpy's generators take no negative seed
    interval: PositiveDuration = 1.0  # the simulator's nominal tick (its first tick's time step)
    schedule: Literal["demo", "none"] = "none"
    faults: list[FaultSpec] = Field(default_factory=list)  # host "node-00", the simulated node
    mig: bool = True
    xid_events: bool = True


class SimNvml:
    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self._clock = clock
        # One collection reads ~300 fields over a few ms of real time; the node moves on only when
        # half a simulator interval has passed, so a collection sees one instant and costs one tick.
        self._min_step = config.interval / 2
        self.sim = FleetSimulator(config, start=clock.now())
        self.gpus = config.gpus_per_node
        self._now = float("nan")
        self._values: FloatArray = np.full((len(_COLUMNS), self.gpus), np.nan)
        self._energy_mj = np.zeros(self.gpus)
        self._registered: set[int] = set()
        self._events: list[XidEvent] = []
        self._columns: dict[tuple[str, ...], _Layout] = {}

    # ---------------------------------------------------------------- the simulated instant

    def _gpu(self, gpu: int) -> int:
        now = self._clock.now()
        if np.isnan(self._now) or now - self._now >= self._min_step or now < self._now:
            self._advance(now)
        if not 0 <= gpu < self.gpus:
            raise NvmlError("invalid_argument", f"no GPU {gpu}")
        if np.isnan(self._values[0, gpu]):
            raise NvmlError("gpu_lost", f"GPU {gpu} has fallen off the bus")
        return gpu

    def _advance(self, now: float) -> None:
        dt = 0.0 if np.isnan(self._now) else now - self._now
        self._now = now
        out = self.sim.tick(now)
        self._values.fill(np.nan)
        for batch in out.telemetry:
            positions, rows, cols = self._layout(batch.series)
            self._values[rows, cols] = batch.values[-1, positions]
        power = np.nan_to_num(self._values[_COLUMNS[c.GPU_POWER]])
        self._energy_mj += power * max(dt, 0.0) * 1000.0
        for line in out.logs:
            if line.kind == "xid" and line.code is not None and line.gpu_index in self._registered:
                self._events.append(XidEvent(gpu=line.gpu_index, code=line.code))

    def _layout(self, series: tuple[str, ...]) -> _Layout:
        """Where each GPU series of a batch goes: (position in the batch, metric row, gpu column)."""
        if series not in self._columns:
            picked = []
            for position, key in enumerate(series):
                metric, labels = parse_series_key(key)
                if metric in _COLUMNS and "gpu_index" in labels:
                    picked.append((position, _COLUMNS[metric], int(labels["gpu_index"])))
            arrays = np.array(picked, dtype=np.intp).reshape(-1, 3).T
            self._columns[series] = (arrays[0], arrays[1], arrays[2])
        return self._columns[series]

    def _value(self, metric: str, gpu: int) -> float:
        return float(self._values[_COLUMNS[metric], self._gpu(gpu)])

    # ---------------------------------------------------------------- NvmlReader

    def init(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def driver_version(self) -> str:
        return DRIVER

    def device_count(self) -> int:
        return self.gpus

    def identity(self, gpu: int) -> GpuIdentity:
        self._gpu(gpu)
        uuid = self.sim.state.identity.uuids[0][gpu]
        pci = self.sim.state.identity.pci[gpu]
        return GpuIdentity(uuid=uuid, pci_bus_id=pci, name=MODEL, serial=f"SIM{uuid[4:12].upper()}")

    def utilization(self, gpu: int, mig: int | None = None) -> tuple[float, float]:
        util = 100.0 * self._value(c.GPU_UTILIZATION, gpu)
        return util, 0.4 * util

    def memory(self, gpu: int, mig: int | None = None) -> tuple[float, float, float]:
        used = self._value(c.GPU_MEMORY_USED, gpu)
        return MEMORY_TOTAL, used, MEMORY_TOTAL - used

    def clock(self, gpu: int, domain: ClockDomain) -> float:
        sm_hz = self._value(c.GPU_SM_CLOCK, gpu)
        return sm_hz / 1e6 if domain == "sm" else MEM_CLOCK_MHZ

    def temperature(self, gpu: int) -> float:
        return self._value(c.GPU_TEMPERATURE, gpu)

    def memory_temperature(self, gpu: int) -> float:
        return self._value(c.GPU_MEMORY_TEMPERATURE, gpu)

    def slowdown_temperature(self, gpu: int) -> float:
        self._gpu(gpu)
        return SLOWDOWN_C

    def power(self, gpu: int) -> float:
        return self._value(c.GPU_POWER, gpu) * 1000.0

    def power_limit(self, gpu: int) -> float:
        self._gpu(gpu)
        return POWER_LIMIT_MW

    def energy(self, gpu: int) -> float:
        return float(self._energy_mj[self._gpu(gpu)])

    def throttle_reasons(self, gpu: int) -> int:
        slowed = self.sim.state.effects.clock_factor[0, self._gpu(gpu)] < 0.99
        return SW_THERMAL_SLOWDOWN if slowed else 0

    def ecc_errors(self, gpu: int, kind: EccKind, counter: EccCounter) -> float:
        return self._value(c.GPU_ECC_SBE if kind == "sbe" else c.GPU_ECC_DBE, gpu)

    def retired_pages(self, gpu: int, cause: EccKind) -> float:
        raise NvmlError("not_supported", "H100 remaps rows instead of retiring pages")

    def retired_pages_pending(self, gpu: int) -> bool:
        raise NvmlError("not_supported", "H100 remaps rows instead of retiring pages")

    def remapped_rows(self, gpu: int) -> tuple[float, float, bool, bool]:
        dbe = self._value(c.GPU_ECC_DBE, gpu)
        return 0.0, dbe, dbe > 0, False

    def pcie_replays(self, gpu: int) -> float:
        self._gpu(gpu)
        return 0.0

    def nvlink_errors(self, gpu: int) -> dict[str, float]:
        self._gpu(gpu)
        return dict.fromkeys(NVLINK_KINDS, 0.0)

    def mig_devices(self, gpu: int) -> list[MigDevice]:
        self._gpu(gpu)
        return []

    def register_xid_events(self, gpu: int) -> None:
        self._registered.add(gpu)

    def xid_events(self) -> list[XidEvent]:
        now = self._clock.now()
        if np.isnan(self._now) or now - self._now >= self._min_step or now < self._now:
            self._advance(now)
        events, self._events = self._events, []
        return events


def create(options: dict[str, Any], context: CollectorContext, clock: Clock | None = None) -> Collector:
    prefix = "agent.collectors.sim_gpu"
    opts = validate(SimGpuOptions, options, prefix=prefix)
    config = validate(
        SimConfig,
        {
            "nodes": 1,
            "spare_nodes": 0,  # one simulated node is this agent's host
            "gpus_per_node": opts.gpus,
            "actions": False,
            "seed": opts.seed,
            "interval": opts.interval,
            "cluster": context.cluster,
            "training": False,
            "schedule": opts.schedule,
            "faults": [f.model_dump() for f in opts.faults],
        },
        prefix=prefix,
    )
    clock = clock or SystemClock()
    reader = SimNvml(config, clock)
    return NvmlCollector(reader, context, NvmlOptions(mig=opts.mig, xid_events=opts.xid_events), clock, name="sim_gpu")
