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

# --- GPU (NVML, dcgm-exporter, nvidia-smi all map onto these). Per-series labels: gpu_index, plus
# mig_instance for MIG slices and pod/namespace/container/hpc_job where the source knows them.
# The GPU's identity (uuid, serial, PCI bus id, model, driver) is the info series GPU_INFO (value 1).
GPU_INFO = "gpu_info"
GPU_MEMORY_TOTAL = "gpu_memory_total_bytes"
GPU_MEMORY_FREE = "gpu_memory_free_bytes"
GPU_MEMORY_UTILIZATION = "gpu_memory_utilization_ratio"  # memory-controller busy fraction
GPU_MEM_CLOCK = "gpu_memory_clock_hertz"
GPU_POWER_LIMIT = "gpu_power_limit_watts"
GPU_ENERGY = "gpu_energy_joules_total"
GPU_FAN_SPEED = "gpu_fan_speed_ratio"
GPU_SLOWDOWN_TEMPERATURE = "gpu_slowdown_temperature_celsius"  # thermal margin = this - temperature
GPU_THROTTLE_REASONS = "gpu_throttle_reasons"  # raw NVML bitmask
GPU_THROTTLE = "gpu_throttle"  # 0/1 per reason, label reason=sw_power_cap|hw_slowdown|sw_thermal|...
GPU_ECC_SBE_AGGREGATE = "gpu_ecc_sbe_aggregate_total"
GPU_ECC_DBE_AGGREGATE = "gpu_ecc_dbe_aggregate_total"
GPU_RETIRED_PAGES = "gpu_retired_pages"  # label cause=sbe|dbe
GPU_RETIRED_PAGES_PENDING = "gpu_retired_pages_pending"
GPU_REMAPPED_ROWS = "gpu_remapped_rows"  # label cause=correctable|uncorrectable
GPU_REMAP_PENDING = "gpu_row_remap_pending"
GPU_REMAP_FAILURE = "gpu_row_remap_failure"
GPU_PCIE_REPLAY = "gpu_pcie_replay_total"
GPU_PCIE_RX = "gpu_pcie_receive_bytes_total"
GPU_PCIE_TX = "gpu_pcie_transmit_bytes_total"
GPU_NVLINK_ERRORS = "gpu_nvlink_errors_total"  # label kind=crc_flit|crc_data|replay|recovery
GPU_NVLINK_BANDWIDTH = "gpu_nvlink_bytes_total"
GPU_XID_LAST = "gpu_xid_last"  # dcgm-exporter's DCGM_FI_DEV_XID_ERRORS: the last XID seen, not a count
GPU_XID_ERRORS = "gpu_xid_errors_total"  # label xid
GPU_SM_ACTIVE = "gpu_sm_active_ratio"  # DCP profiling fields
GPU_SM_OCCUPANCY = "gpu_sm_occupancy_ratio"
GPU_TENSOR_ACTIVE = "gpu_tensor_active_ratio"
GPU_DRAM_ACTIVE = "gpu_dram_active_ratio"
GPU_GRAPHICS_ACTIVE = "gpu_graphics_active_ratio"
GPU_ENC_UTILIZATION = "gpu_encoder_utilization_ratio"
GPU_DEC_UTILIZATION = "gpu_decoder_utilization_ratio"
GPU_POWER_VIOLATION = "gpu_power_violation_seconds_total"
GPU_THERMAL_VIOLATION = "gpu_thermal_violation_seconds_total"
GPU_MEMORY_RESERVED = "gpu_memory_reserved_bytes"  # DCGM_FI_DEV_FB_RESERVED, nvidia-smi memory.reserved
GPU_PCIE_TX_RATE = "gpu_pcie_transmit_bytes_per_second"  # DCGM_FI_PROF_PCIE_TX_BYTES is a rate, not a count
GPU_PCIE_RX_RATE = "gpu_pcie_receive_bytes_per_second"
GPU_SYNC_BOOST_VIOLATION = "gpu_sync_boost_violation_seconds_total"
GPU_BOARD_LIMIT_VIOLATION = "gpu_board_limit_violation_seconds_total"
GPU_LOW_UTIL_VIOLATION = "gpu_low_utilization_violation_seconds_total"
GPU_RELIABILITY_VIOLATION = "gpu_reliability_violation_seconds_total"
GPU_FP64_ACTIVE = "gpu_fp64_active_ratio"
GPU_FP32_ACTIVE = "gpu_fp32_active_ratio"
GPU_FP16_ACTIVE = "gpu_fp16_active_ratio"
GPU_NVLINK_LINK_BANDWIDTH = "gpu_nvlink_link_bytes_total"  # label link (the *_TOTAL field is the sum)
GPU_NVLINK_LINK_ERRORS = "gpu_nvlink_link_errors_total"  # labels kind, link
GPU_PERFORMANCE_STATE = "gpu_performance_state"  # P-state number, 0 (fastest) .. 15
GPU_VGPU_LICENSE_STATUS = "gpu_vgpu_license_status"  # DCGM's enum value
GPU_XID_ERRORS_WINDOW = "gpu_xid_errors_in_window"  # labels xid, window_ms: a sliding-window count, not a counter
GPU_CLOCK_EVENTS_WINDOW = "gpu_clock_events_in_window"  # labels reason, window_ms
GPU_CLOCK_EVENTS = "gpu_clock_events_total"  # label reason
GPU_HEALTH_STATUS = "gpu_health_status"  # label watch; DCGM health result: 0 pass, 10 warn, 20 fail
GPU_P2P_STATUS = "gpu_p2p_status"  # label peer_gpu; 0 OK, else DCGM's P2P link status enum

# --- Host (psutil). Labels: cpu, device, interface, mountpoint as the metric needs.
HOST_CPU_SECONDS = "host_cpu_seconds_total"  # label mode
HOST_MEMORY_TOTAL = "host_memory_total_bytes"
HOST_MEMORY_AVAILABLE = "host_memory_available_bytes"
HOST_SWAP_USED = "host_swap_used_bytes"
HOST_LOAD5 = "host_load5"
HOST_LOAD15 = "host_load15"
HOST_DISK_READ = "host_disk_read_bytes_total"  # label device
HOST_DISK_WRITTEN = "host_disk_written_bytes_total"
HOST_DISK_IO_SECONDS = "host_disk_io_time_seconds_total"
HOST_FS_SIZE = "host_filesystem_size_bytes"  # label mountpoint, device, fstype
HOST_FS_FREE = "host_filesystem_free_bytes"
HOST_FS_FILES_FREE = "host_filesystem_files_free"
HOST_NETWORK_RECEIVE_ERRORS = "host_network_receive_errors_total"  # label interface
HOST_NETWORK_TRANSMIT_ERRORS = "host_network_transmit_errors_total"
HOST_NETWORK_DROPS = "host_network_receive_drop_total"
HOST_NETWORK_TRANSMIT_DROPS = "host_network_transmit_drop_total"
# Per-NIC bytes under their own names: the label-free totals above would be counted twice by sum().
HOST_NETWORK_INTERFACE_RECEIVE = "host_network_interface_receive_bytes_total"  # label interface
HOST_NETWORK_INTERFACE_TRANSMIT = "host_network_interface_transmit_bytes_total"
HOST_UPTIME = "host_boot_time_seconds"

# --- Disk SMART (smartctl -j). Label device (and serial, model where known).
DISK_SMART_ATTRIBUTE = "disk_smart_attribute_raw"  # label attr_id (5, 187, 188, 197, 198, 199, 9, 194)
DISK_SMART_NORMALIZED = "disk_smart_attribute_normalized"  # label attr_id
DISK_TEMPERATURE = "disk_temperature_celsius"
DISK_POWER_ON = "disk_power_on_seconds"
DISK_SMART_HEALTHY = "disk_smart_passed"  # 1 passed, 0 failed
DISK_NVME_MEDIA_ERRORS = "disk_nvme_media_errors_total"
DISK_NVME_PERCENT_USED = "disk_nvme_percentage_used_ratio"
DISK_NVME_SPARE = "disk_nvme_available_spare_ratio"
DISK_NVME_SPARE_THRESHOLD = "disk_nvme_available_spare_threshold_ratio"
DISK_NVME_CRITICAL_WARNING = "disk_nvme_critical_warning"

# --- IPMI (ipmitool sdr). Label sensor (the SDR name, normalised), entity where known.
IPMI_TEMPERATURE = "ipmi_temperature_celsius"
IPMI_FAN_SPEED = "ipmi_fan_speed_rpm"
IPMI_POWER = "ipmi_power_watts"
IPMI_VOLTAGE = "ipmi_voltage_volts"
IPMI_CURRENT = "ipmi_current_amperes"
IPMI_SENSOR_OK = "ipmi_sensor_ok"  # 1 when the SDR status is ok, 0 otherwise (discrete sensors too)

# --- InfiniBand (sysfs /sys/class/infiniband/<dev>/ports/<n>/counters). Labels device, port.
IB_RECEIVE = "infiniband_receive_bytes_total"
IB_TRANSMIT = "infiniband_transmit_bytes_total"
IB_SYMBOL_ERRORS = "infiniband_symbol_errors_total"
IB_LINK_DOWNED = "infiniband_link_downed_total"
IB_LINK_RECOVERY = "infiniband_link_error_recovery_total"
IB_RCV_ERRORS = "infiniband_receive_errors_total"
IB_XMIT_DISCARDS = "infiniband_transmit_discards_total"
IB_PORT_STATE_ACTIVE = "infiniband_port_active"

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
