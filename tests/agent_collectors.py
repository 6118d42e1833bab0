"""Small collectors for the agent's tests and for trying the agent before the real ones are installed.

Each module-level ``create_*`` follows the registry's contract (``create(options, context)``); the
modules named in configs are ``tests.agent_collectors`` (``counter``) and the psutil one below via
``tests.agent_collectors_host``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import psutil
from pydantic import Field
from vigil.collectors.base import CollectorContext, Item, Problem

from vigil.config import FrozenModel, validate
from vigil.events import LogEvent, series_key

SEQUENCE = "agent_test_sequence"


class CounterOptions(FrozenModel):
    series: str = SEQUENCE
    start: int = 0
    sleep: float = Field(0.0, ge=0)  # seconds each collect() takes
    log_every: int = Field(0, ge=0)  # also yield a LogEvent every N runs (0: never)


class CounterCollector:
    """Yields ``agent_test_sequence`` (or ``series``) = 0, 1, 2, ... one per run: lost or repeated
    batches show."""

    name = "counter"

    def __init__(self, options: CounterOptions, context: CollectorContext) -> None:
        self.options = options
        self.context = context
        self.n = options.start

    def collect(self) -> Iterator[Item]:
        if self.options.sleep:
            time.sleep(self.options.sleep)
        n = self.n
        self.n += 1
        yield (self.options.series, float(n))
        if self.options.log_every and n % self.options.log_every == 0:
            yield LogEvent(time.time(), self.context.host, self.context.cluster, "xid", 79, f"test line {n}")


def create(options: dict[str, Any], context: CollectorContext) -> CounterCollector:
    return CounterCollector(validate(CounterOptions, options, prefix="agent.collectors.counter"), context)


class HostCollector:
    """A tiny psutil host collector (CPU, memory, load, per-NIC bytes), like the real one will be."""

    name = "psutil_host"

    def collect(self) -> Iterator[Item]:
        yield (series_key("host_cpu_utilization_ratio"), psutil.cpu_percent() / 100)
        memory = psutil.virtual_memory()
        yield (series_key("host_memory_used_bytes"), float(memory.used))
        yield (series_key("host_memory_available_bytes"), float(memory.available))
        load1, load5, load15 = psutil.getloadavg()
        yield (series_key("host_load1"), load1)
        yield (series_key("host_load5"), load5)
        yield (series_key("host_load15"), load15)
        try:
            nics = psutil.net_io_counters(pernic=True)
        except OSError as exc:
            yield Problem("nic", str(exc))
            return
        for nic, io in sorted(nics.items()):
            yield (series_key("host_network_receive_bytes_total", {"interface": nic}), float(io.bytes_recv))
            yield (series_key("host_network_transmit_bytes_total", {"interface": nic}), float(io.bytes_sent))


def create_host(options: dict[str, Any], context: CollectorContext) -> HostCollector:
    validate(FrozenModel, options, prefix="agent.collectors.psutil_host")
    return HostCollector()


class GpuLikeOptions(FrozenModel):
    gpus: int = Field(8, ge=1)
    metrics: int = Field(40, ge=1)


class GpuLikeCollector:
    """Stands in for ``sim_gpu`` in load tests until it is installed: ``gpus`` x ``metrics`` gauge
    samples a run (8 x 40 by default, about what NVML gives per node), keys built once."""

    name = "gpu_like"

    def __init__(self, options: GpuLikeOptions) -> None:
        self.keys = [
            series_key(f"gpu_synthetic_{m}", {"gpu_index": str(g)})
            for g in range(options.gpus)
            for m in range(options.metrics)
        ]
        self.rng = np.random.default_rng(0)

    def collect(self) -> Iterator[Item]:
        values = self.rng.random(len(self.keys)).tolist()
        yield from zip(self.keys, values, strict=True)


def create_gpu_like(options: dict[str, Any], context: CollectorContext) -> GpuLikeCollector:
    return GpuLikeCollector(validate(GpuLikeOptions, options, prefix="agent.collectors.gpu_like"))
