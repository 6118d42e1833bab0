"""Metric names and units every service agrees on (Prometheus conventions: base units, ``_total``).

Collectors publish these names; analytics rules and dashboards refer to them. Labels inside a
telemetry batch are per series (``gpu`` index, ``gpu_uuid``, ``device``...); the host and cluster
are carried once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Literal["gauge", "counter"]
    unit: str
    help: str


GPU_UTILIZATION = "gpu_utilization_ratio"
GPU_MEMORY_USED = "gpu_memory_used_bytes"
GPU_SM_CLOCK = "gpu_sm_clock_hertz"
GPU_TEMPERATURE = "gpu_temperature_celsius"
GPU_MEMORY_TEMPERATURE = "gpu_memory_temperature_celsius"
GPU_POWER = "gpu_power_watts"
GPU_ECC_SBE = "gpu_ecc_sbe_volatile_total"
GPU_ECC_DBE = "gpu_ecc_dbe_volatile_total"
HOST_CPU_UTILIZATION = "host_cpu_utilization_ratio"
HOST_MEMORY_USED = "host_memory_used_bytes"
HOST_NETWORK_RECEIVE = "host_network_receive_bytes_total"
HOST_NETWORK_TRANSMIT = "host_network_transmit_bytes_total"
HOST_LOAD1 = "host_load1"

# Fields of TrainingStep, as series names when analytics treats them as time series (key=job).
TRAINING_STEP_SECONDS = "training_step_seconds"
TRAINING_COMPUTE_SECONDS = "training_compute_seconds"
TRAINING_LOSS = "training_loss"
TRAINING_TOKENS_PER_SECOND = "training_tokens_per_second"

METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec(GPU_UTILIZATION, "gauge", "ratio", "GPU busy fraction (DCGM_FI_DEV_GPU_UTIL / 100)"),
        MetricSpec(GPU_MEMORY_USED, "gauge", "bytes", "Framebuffer memory used (DCGM_FI_DEV_FB_USED)"),
        MetricSpec(GPU_SM_CLOCK, "gauge", "hertz", "SM clock (DCGM_FI_DEV_SM_CLOCK)"),
        MetricSpec(GPU_TEMPERATURE, "gauge", "celsius", "GPU die temperature (DCGM_FI_DEV_GPU_TEMP)"),
        MetricSpec(GPU_MEMORY_TEMPERATURE, "gauge", "celsius", "HBM temperature (DCGM_FI_DEV_MEMORY_TEMP)"),
        MetricSpec(GPU_POWER, "gauge", "watts", "Board power draw (DCGM_FI_DEV_POWER_USAGE)"),
        MetricSpec(GPU_ECC_SBE, "counter", "errors", "Volatile single-bit ECC errors (DCGM_FI_DEV_ECC_SBE_VOL_TOTAL)"),
        MetricSpec(GPU_ECC_DBE, "counter", "errors", "Volatile double-bit ECC errors (DCGM_FI_DEV_ECC_DBE_VOL_TOTAL)"),
        MetricSpec(HOST_CPU_UTILIZATION, "gauge", "ratio", "Host CPU busy fraction"),
        MetricSpec(HOST_MEMORY_USED, "gauge", "bytes", "Host memory in use"),
        MetricSpec(HOST_NETWORK_RECEIVE, "counter", "bytes", "Bytes received on all NICs"),
        MetricSpec(HOST_NETWORK_TRANSMIT, "counter", "bytes", "Bytes sent on all NICs"),
        MetricSpec(HOST_LOAD1, "gauge", "", "1-minute load average"),
        MetricSpec(TRAINING_STEP_SECONDS, "gauge", "seconds", "Wall time of one training step"),
        MetricSpec(TRAINING_COMPUTE_SECONDS, "gauge", "seconds", "Compute time of one rank's step"),
        MetricSpec(TRAINING_LOSS, "gauge", "", "Training loss"),
        MetricSpec(TRAINING_TOKENS_PER_SECOND, "gauge", "tokens/s", "Training throughput of one rank"),
    )
}


def is_counter(metric: str) -> bool:
    return metric.endswith("_total")
