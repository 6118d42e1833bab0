"""dcgm-exporter's fields and labels mapped onto Vigil's names and base units: a data table.

Covers every field of dcgm-exporter's ``default-counters.csv`` and ``dcp-metrics-included.csv``
(enabled or commented out), the extra fields seen in real scrapes (``metrics-sample.txt``), and the
labels the exporter adds. Units follow the CSV help texts and ``dcgm_fields.h``: clocks MHz,
framebuffer MiB, energy mJ, utilisation %, violation times ns (the exporter's CSV; NVML's violation
time is ns too), DCP ``PROF_*`` fields already 0..1. ``DCGM_FI_PROF_PCIE_{TX,RX}_BYTES`` is a rate
(bytes/s) whatever TYPE the CSV declares for it, so it maps onto a ``_bytes_per_second`` gauge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vigil.collectors.gpu.common import MHZ, MIB, PERCENT

from vigil import catalog as c

NANO = 1e-9
MILLI = 1e-3


@dataclass(frozen=True, slots=True)
class FieldMap:
    """``metric`` in base units = DCGM value x ``scale``; ``labels`` are added, ``keep`` copies a label
    of the DCGM sample (source name, our name) for the exporter's own labelled fields."""

    metric: str
    scale: float = 1.0
    labels: tuple[tuple[str, str], ...] = ()
    keep: tuple[tuple[str, str], ...] = ()


XID_FIELD = "DCGM_FI_DEV_XID_ERRORS"  # the LAST XID seen (a gauge), not a count: also drives LogEvents
XID_TOTAL_FIELD = "DCGM_EXP_XID_ERRORS_TOTAL"  # a true per-XID counter (newer exporters), label xid
THROTTLE_FIELDS = ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS")  # decoded bitmask

FIELDS: dict[str, FieldMap] = {
    # clocks, temperatures, power
    "DCGM_FI_DEV_SM_CLOCK": FieldMap(c.GPU_SM_CLOCK, MHZ),
    "DCGM_FI_DEV_MEM_CLOCK": FieldMap(c.GPU_MEM_CLOCK, MHZ),
    "DCGM_FI_DEV_MEMORY_TEMP": FieldMap(c.GPU_MEMORY_TEMPERATURE),
    "DCGM_FI_DEV_GPU_TEMP": FieldMap(c.GPU_TEMPERATURE),
    "DCGM_FI_DEV_SLOWDOWN_TEMP": FieldMap(c.GPU_SLOWDOWN_TEMPERATURE),
    "DCGM_FI_DEV_POWER_USAGE": FieldMap(c.GPU_POWER),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": FieldMap(c.GPU_POWER_LIMIT),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": FieldMap(c.GPU_ENERGY, MILLI),
    "DCGM_FI_DEV_FAN_SPEED": FieldMap(c.GPU_FAN_SPEED, PERCENT),
    "DCGM_FI_DEV_PSTATE": FieldMap(c.GPU_PERFORMANCE_STATE),
    # PCIe
    "DCGM_FI_PROF_PCIE_TX_BYTES": FieldMap(c.GPU_PCIE_TX_RATE),
    "DCGM_FI_PROF_PCIE_RX_BYTES": FieldMap(c.GPU_PCIE_RX_RATE),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": FieldMap(c.GPU_PCIE_REPLAY),
    # utilisation
    "DCGM_FI_DEV_GPU_UTIL": FieldMap(c.GPU_UTILIZATION, PERCENT),
    "DCGM_FI_DEV_MEM_COPY_UTIL": FieldMap(c.GPU_MEMORY_UTILIZATION, PERCENT),
    "DCGM_FI_DEV_ENC_UTIL": FieldMap(c.GPU_ENC_UTILIZATION, PERCENT),
    "DCGM_FI_DEV_DEC_UTIL": FieldMap(c.GPU_DEC_UTILIZATION, PERCENT),
    # errors and violations
    XID_FIELD: FieldMap(c.GPU_XID_LAST),
    "DCGM_FI_DEV_POWER_VIOLATION": FieldMap(c.GPU_POWER_VIOLATION, NANO),
    "DCGM_FI_DEV_THERMAL_VIOLATION": FieldMap(c.GPU_THERMAL_VIOLATION, NANO),
    "DCGM_FI_DEV_SYNC_BOOST_VIOLATION": FieldMap(c.GPU_SYNC_BOOST_VIOLATION, NANO),
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION": FieldMap(c.GPU_BOARD_LIMIT_VIOLATION, NANO),
    "DCGM_FI_DEV_LOW_UTIL_VIOLATION": FieldMap(c.GPU_LOW_UTIL_VIOLATION, NANO),
    "DCGM_FI_DEV_RELIABILITY_VIOLATION": FieldMap(c.GPU_RELIABILITY_VIOLATION, NANO),
    # dcgm-exporter's own fields
    XID_TOTAL_FIELD: FieldMap(c.GPU_XID_ERRORS, keep=(("xid", "xid"),)),
    "DCGM_EXP_XID_ERRORS_COUNT": FieldMap(
        c.GPU_XID_ERRORS_WINDOW, keep=(("xid", "xid"), ("window_size_in_ms", "window_ms"))
    ),
    "DCGM_EXP_CLOCK_EVENTS_COUNT": FieldMap(
        c.GPU_CLOCK_EVENTS_WINDOW, keep=(("clock_event", "reason"), ("window_size_in_ms", "window_ms"))
    ),
    "DCGM_EXP_CLOCK_EVENTS_TOTAL": FieldMap(c.GPU_CLOCK_EVENTS, keep=(("clock_event", "reason"),)),
    "DCGM_EXP_GPU_HEALTH_STATUS": FieldMap(c.GPU_HEALTH_STATUS, keep=(("health_watch", "watch"),)),
    "DCGM_EXP_P2P_STATUS": FieldMap(c.GPU_P2P_STATUS, keep=(("peer_gpu", "peer_gpu"),)),
    # memory
    "DCGM_FI_DEV_FB_TOTAL": FieldMap(c.GPU_MEMORY_TOTAL, MIB),
    "DCGM_FI_DEV_FB_FREE": FieldMap(c.GPU_MEMORY_FREE, MIB),
    "DCGM_FI_DEV_FB_USED": FieldMap(c.GPU_MEMORY_USED, MIB),
    "DCGM_FI_DEV_FB_RESERVED": FieldMap(c.GPU_MEMORY_RESERVED, MIB),
    # ECC, retired pages, remapped rows
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": FieldMap(c.GPU_ECC_SBE),
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": FieldMap(c.GPU_ECC_DBE),
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": FieldMap(c.GPU_ECC_SBE_AGGREGATE),
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": FieldMap(c.GPU_ECC_DBE_AGGREGATE),
    "DCGM_FI_DEV_RETIRED_SBE": FieldMap(c.GPU_RETIRED_PAGES, labels=(("cause", "sbe"),)),
    "DCGM_FI_DEV_RETIRED_DBE": FieldMap(c.GPU_RETIRED_PAGES, labels=(("cause", "dbe"),)),
    "DCGM_FI_DEV_RETIRED_PENDING": FieldMap(c.GPU_RETIRED_PAGES_PENDING),
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": FieldMap(c.GPU_REMAPPED_ROWS, labels=(("cause", "uncorrectable"),)),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": FieldMap(c.GPU_REMAPPED_ROWS, labels=(("cause", "correctable"),)),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": FieldMap(c.GPU_REMAP_FAILURE),
    "DCGM_FI_DEV_ROW_REMAP_PENDING": FieldMap(c.GPU_REMAP_PENDING),
    # NVLink (totals over the GPU's links; the per-lane fields are matched by LANE_FIELDS)
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": FieldMap(c.GPU_NVLINK_ERRORS, labels=(("kind", "crc_flit"),)),
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": FieldMap(c.GPU_NVLINK_ERRORS, labels=(("kind", "crc_data"),)),
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": FieldMap(c.GPU_NVLINK_ERRORS, labels=(("kind", "replay"),)),
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": FieldMap(c.GPU_NVLINK_ERRORS, labels=(("kind", "recovery"),)),
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": FieldMap(c.GPU_NVLINK_BANDWIDTH),
    # vGPU
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS": FieldMap(c.GPU_VGPU_LICENSE_STATUS),
    # Datacenter profiling (DCP): already ratios
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": FieldMap(c.GPU_GRAPHICS_ACTIVE),
    "DCGM_FI_PROF_SM_ACTIVE": FieldMap(c.GPU_SM_ACTIVE),
    "DCGM_FI_PROF_SM_OCCUPANCY": FieldMap(c.GPU_SM_OCCUPANCY),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": FieldMap(c.GPU_TENSOR_ACTIVE),
    "DCGM_FI_PROF_DRAM_ACTIVE": FieldMap(c.GPU_DRAM_ACTIVE),
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": FieldMap(c.GPU_FP64_ACTIVE),
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": FieldMap(c.GPU_FP32_ACTIVE),
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": FieldMap(c.GPU_FP16_ACTIVE),
}

# Per-lane NVLink fields (``..._L0`` .. ``_L17``): labelled by link under their own names, so summing
# a metric never counts a lane twice (the ``_TOTAL`` fields above already are the sums).
LANE_FIELDS: tuple[tuple[re.Pattern[str], str, tuple[tuple[str, str], ...]], ...] = (
    (re.compile(r"^DCGM_FI_DEV_NVLINK_BANDWIDTH_L(\d+)$"), c.GPU_NVLINK_LINK_BANDWIDTH, ()),
    (
        re.compile(r"^DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_L(\d+)$"),
        c.GPU_NVLINK_LINK_ERRORS,
        (("kind", "crc_flit"),),
    ),
    (
        re.compile(r"^DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L(\d+)$"),
        c.GPU_NVLINK_LINK_ERRORS,
        (("kind", "crc_data"),),
    ),
    (re.compile(r"^DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_L(\d+)$"), c.GPU_NVLINK_LINK_ERRORS, (("kind", "replay"),)),
    (
        re.compile(r"^DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_L(\d+)$"),
        c.GPU_NVLINK_LINK_ERRORS,
        (("kind", "recovery"),),
    ),
)

# Fields dcgm-exporter turns into labels on every series ("label" in the CSVs) and its own identity
# labels: they go onto gpu_info, never onto the other series.
INFO_LABELS: dict[str, str] = {
    "UUID": "uuid",
    "uuid": "uuid",  # the exporter's old label namespace
    "pci_bus_id": "pci_bus_id",
    "modelName": "model",
    "Hostname": "hostname",
    "device": "device",
    "GPU_I_PROFILE": "mig_profile",
    "DCGM_FI_DRIVER_VERSION": "driver_version",
    "DCGM_FI_NVML_VERSION": "nvml_version",
    "DCGM_FI_CUDA_DRIVER_VERSION": "cuda_driver_version",
    "DCGM_FI_DEV_NAME": "model",
    "DCGM_FI_DEV_BRAND": "brand",
    "DCGM_FI_DEV_SERIAL": "serial",
    "DCGM_FI_DEV_UUID": "uuid",
    "DCGM_FI_DEV_PCI_BUSID": "pci_bus_id",
    "DCGM_FI_DEV_MINOR_NUMBER": "minor_number",
    "DCGM_FI_DEV_OEM_INFOROM_VER": "inforom_oem",
    "DCGM_FI_DEV_ECC_INFOROM_VER": "inforom_ecc",
    "DCGM_FI_DEV_POWER_INFOROM_VER": "inforom_power",
    "DCGM_FI_DEV_INFOROM_IMAGE_VER": "inforom_image",
    "DCGM_FI_DEV_VBIOS_VERSION": "vbios_version",
}

# Labels kept on every series: who uses the GPU (Kubernetes pod mapping, HPC job mapping).
SERIES_LABELS: dict[str, str] = {
    "pod": "pod",
    "namespace": "namespace",
    "container": "container",
    "pod_name": "pod",  # the exporter's old label namespace
    "pod_namespace": "namespace",
    "container_name": "container",
    "hpc_job": "hpc_job",
}

# Known, deliberately not published: the node's GPU count is inventory, not per-GPU telemetry, and
# FB_USED_PERCENT is used/total of two fields we already publish.
IGNORED_FIELDS = frozenset({"DCGM_FI_DEV_COUNT", "DCGM_FI_DEV_FB_USED_PERCENT"})


def lookup(field: str) -> FieldMap | None:
    """The mapping of a DCGM field (lane fields get their ``link`` label); None when unknown."""
    known = FIELDS.get(field)
    if known is not None:
        return known
    for pattern, metric, labels in LANE_FIELDS:
        match = pattern.match(field)
        if match:
            return FieldMap(metric, labels=(*labels, ("link", match.group(1))))
    return None
