"""The simulated fleet's mutable state: numpy arrays of shape (nodes, gpus), never one object per GPU.

Persistent state (counters, which GPUs are on the bus or failed, which nodes are drained or down)
lives across ticks. ``Effects`` are reset to neutral every tick and then shaped by the active faults
and the nodes' states, so a fault that ends leaves nothing behind except what it did to counters,
which is what real hardware does too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vigil.events import FloatArray

BoolArray = npt.NDArray[np.bool_]


def _ones(shape: tuple[int, int]) -> FloatArray:
    return np.ones(shape, dtype=np.float64)


def _zeros(shape: tuple[int, int]) -> FloatArray:
    return np.zeros(shape, dtype=np.float64)


@dataclass(slots=True)
class Effects:
    """What active faults do to this tick: additive offsets and multiplicative factors per GPU."""

    shape: tuple[int, int]
    temp_add: FloatArray = field(init=False)
    mem_temp_add: FloatArray = field(init=False)
    clock_factor: FloatArray = field(init=False)
    power_factor: FloatArray = field(init=False)
    mem_factor: FloatArray = field(init=False)
    util_factor: FloatArray = field(init=False)
    compute_factor: FloatArray = field(init=False)
    sbe_rate: FloatArray = field(init=False)  # extra single-bit errors per second
    job_hung: bool = False
    loss_mode: str = "ok"  # ok | spike | nan

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.temp_add = _zeros(self.shape)
        self.mem_temp_add = _zeros(self.shape)
        self.clock_factor = _ones(self.shape)
        self.power_factor = _ones(self.shape)
        self.mem_factor = _ones(self.shape)
        self.util_factor = _ones(self.shape)
        self.compute_factor = _ones(self.shape)
        self.sbe_rate = _zeros(self.shape)
        self.job_hung = False
        self.loss_mode = "ok"


@dataclass(slots=True)
class GpuIdentity:
    """Fixed per-GPU facts, as a real inventory would know them."""

    pci: list[str]  # per gpu_index, the same on every node (identical chassis)
    uuids: list[list[str]]  # [node][gpu]


@dataclass(slots=True)
class FleetState:
    nodes: int
    gpus: int
    base_temp: FloatArray  # each GPU's healthy temperature (airflow position, silicon lottery)
    base_power: FloatArray
    base_mem_used: FloatArray
    rank_speed: FloatArray  # each rank's healthy compute-time factor (small, static skew)
    drift_phase: FloatArray
    identity: GpuIdentity
    sbe: FloatArray = field(init=False)
    dbe: FloatArray = field(init=False)
    present: BoolArray = field(init=False)  # on the bus (an XID 79 or a reset takes a GPU off it)
    failed: BoolArray = field(init=False)  # unusable by a job until reset (an uncontained XID 48)
    drained: BoolArray = field(init=False)  # per node: the scheduler places no work on it
    down_until: FloatArray = field(init=False)  # per node: rebooting until then (0: up)
    idle_since: FloatArray = field(init=False)  # per node: when it last ran nothing (inf: busy)
    net_rx: FloatArray = field(init=False)  # per node
    net_tx: FloatArray = field(init=False)
    effects: Effects = field(init=False)

    def __post_init__(self) -> None:
        shape = (self.nodes, self.gpus)
        self.sbe = _zeros(shape)
        self.dbe = _zeros(shape)
        self.present = np.ones(shape, dtype=np.bool_)
        self.failed = np.zeros(shape, dtype=np.bool_)
        self.drained = np.zeros(self.nodes, dtype=np.bool_)
        self.down_until = np.zeros(self.nodes)
        self.idle_since = np.full(self.nodes, np.inf)
        self.net_rx = np.zeros(self.nodes)
        self.net_tx = np.zeros(self.nodes)
        self.effects = Effects(shape)

    def up(self, now: float) -> BoolArray:
        """Per node: not rebooting."""
        return self.down_until <= now

    def usable(self, now: float) -> BoolArray:
        """Per GPU: a job running on it makes progress (on the bus, not failed, its node up)."""
        return self.present & ~self.failed & self.up(now)[:, None]
