"""The fleet simulator: the demo and test source behind ``vigil up``, scenario tests and benchmarks.

It simulates N nodes x G GPUs (default 8 x 8) running one synchronous data-parallel training job,
seeded and reproducible, with a catalog of injectable faults (thermal throttling, XID 79 fell off
the bus, XID 48 double-bit ECC, rising single-bit ECC, straggler rank, NCCL hang, NaN loss). Every
injection is published as ground truth (``FaultInjection`` on the groundtruth topic).

Interface: :class:`FleetSimulator` (``tick(now) -> SimOutput``, pure, no I/O), configured by
:class:`SimConfig` and its :class:`FaultSpec` list; :class:`SimulatorRunner` publishes its output
(``run`` in real time, ``run_fast`` for benchmarks). ``FAULT_KINDS`` is the fault registry.
"""

from vigil.collectors.sim.config import FaultSpec, SimConfig
from vigil.collectors.sim.faults import FAULT_KINDS
from vigil.collectors.sim.fleet import FleetSimulator, SimOutput
from vigil.collectors.sim.runner import SimulatorRunner

__all__ = ["FAULT_KINDS", "FaultSpec", "FleetSimulator", "SimConfig", "SimOutput", "SimulatorRunner"]
