"""The real :class:`NvmlReader`: a thin adapter over pynvml (``nvidia-ml-py``, the ``gpu`` extra).

pynvml is imported in :meth:`PynvmlReader.init`, never at module import, so a GPU-less agent that
does not configure ``nvml`` never loads it, and a missing package or driver is an ``NvmlError``
(the collector turns it into a Problem and retries later) rather than an ImportError at start.
Every pynvml exception is translated to ``NvmlError`` with a stable label.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

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

T = TypeVar("T")
MAX_EVENTS_PER_POLL = 256  # an event storm must not stall a collection

# pynvml error code constant -> Problem label; anything else is ``nvml_error``.
_LABELS = {
    "NVML_ERROR_NOT_SUPPORTED": "not_supported",
    "NVML_ERROR_FUNCTION_NOT_FOUND": "not_supported",  # an older driver lacks the call altogether
    "NVML_ERROR_NO_PERMISSION": "permission",
    "NVML_ERROR_GPU_IS_LOST": "gpu_lost",
    "NVML_ERROR_DRIVER_NOT_LOADED": "driver_not_loaded",
    "NVML_ERROR_LIBRARY_NOT_FOUND": "library_not_found",
    "NVML_ERROR_TIMEOUT": "timeout",
    "NVML_ERROR_UNINITIALIZED": "uninitialized",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "driver_mismatch",
    "NVML_ERROR_NO_DATA": "no_data",
    "NVML_ERROR_NOT_FOUND": "not_found",
}


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class PynvmlReader:
    def __init__(self) -> None:
        self._nv: ModuleType | None = None
        self._labels: dict[int, str] = {}
        self._handles: dict[int, Any] = {}
        self._mig_handles: dict[tuple[int, int], Any] = {}
        self._event_set: Any = None

    # ---------------------------------------------------------------- session

    def init(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlError("library_not_found", "nvidia-ml-py is not installed (pip install 'vigil[gpu]')") from exc
        self._labels = {getattr(pynvml, name): label for name, label in _LABELS.items() if hasattr(pynvml, name)}
        self._nv = pynvml
        self._call(pynvml.nvmlInit)

    def shutdown(self) -> None:
        nv = self._nv
        if nv is None:
            return
        if self._event_set is not None:
            self._call(nv.nvmlEventSetFree, self._event_set)
        self._event_set = None
        self._handles.clear()
        self._mig_handles.clear()
        self._call(nv.nvmlShutdown)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        nv = self._nv
        if nv is None:
            raise NvmlError("uninitialized", "init() has not succeeded")
        try:
            return fn(*args)
        except nv.NVMLError as exc:
            raise NvmlError(self._labels.get(exc.value, "nvml_error"), str(exc)) from exc

    def _mod(self) -> ModuleType:
        if self._nv is None:
            raise NvmlError("uninitialized", "init() has not succeeded")
        return self._nv

    def _handle(self, gpu: int, mig: int | None = None) -> Any:
        nv = self._mod()
        if gpu not in self._handles:
            self._handles[gpu] = self._call(nv.nvmlDeviceGetHandleByIndex, gpu)
        if mig is None:
            return self._handles[gpu]
        if (gpu, mig) not in self._mig_handles:
            self._mig_handles[gpu, mig] = self._call(nv.nvmlDeviceGetMigDeviceHandleByIndex, self._handles[gpu], mig)
        return self._mig_handles[gpu, mig]

    # ---------------------------------------------------------------- inventory

    def driver_version(self) -> str:
        return _text(self._call(self._mod().nvmlSystemGetDriverVersion))

    def device_count(self) -> int:
        return int(self._call(self._mod().nvmlDeviceGetCount))

    def identity(self, gpu: int) -> GpuIdentity:
        nv, h = self._mod(), self._handle(gpu)
        try:
            serial = _text(self._call(nv.nvmlDeviceGetSerial, h))
        except NvmlError as exc:
            if exc.label != "not_supported":
                raise
            serial = ""  # consumer boards carry no serial
        pci = self._call(nv.nvmlDeviceGetPciInfo, h)
        return GpuIdentity(
            uuid=_text(self._call(nv.nvmlDeviceGetUUID, h)),
            pci_bus_id=_text(pci.busId),
            name=_text(self._call(nv.nvmlDeviceGetName, h)),
            serial=serial,
        )

    def mig_devices(self, gpu: int) -> list[MigDevice]:
        nv, h = self._mod(), self._handle(gpu)
        current, _pending = self._call(nv.nvmlDeviceGetMigMode, h)
        if current != nv.NVML_DEVICE_MIG_ENABLE:
            return []
        devices = []
        for index in range(int(self._call(nv.nvmlDeviceGetMaxMigDeviceCount, h))):
            try:
                mh = self._handle(gpu, index)
            except NvmlError as exc:
                if exc.label == "not_found":  # an unpopulated slot
                    continue
                raise
            devices.append(
                MigDevice(
                    index=index,
                    gpu_instance=int(self._call(nv.nvmlDeviceGetGpuInstanceId, mh)),
                    compute_instance=int(self._call(nv.nvmlDeviceGetComputeInstanceId, mh)),
                    uuid=_text(self._call(nv.nvmlDeviceGetUUID, mh)),
                )
            )
        return devices

    # ---------------------------------------------------------------- readings

    def utilization(self, gpu: int, mig: int | None = None) -> tuple[float, float]:
        rates = self._call(self._mod().nvmlDeviceGetUtilizationRates, self._handle(gpu, mig))
        return float(rates.gpu), float(rates.memory)

    def memory(self, gpu: int, mig: int | None = None) -> tuple[float, float, float]:
        info = self._call(self._mod().nvmlDeviceGetMemoryInfo, self._handle(gpu, mig))
        return float(info.total), float(info.used), float(info.free)

    def clock(self, gpu: int, domain: ClockDomain) -> float:
        nv = self._mod()
        kind = nv.NVML_CLOCK_SM if domain == "sm" else nv.NVML_CLOCK_MEM
        return float(self._call(nv.nvmlDeviceGetClockInfo, self._handle(gpu), kind))

    def temperature(self, gpu: int) -> float:
        nv = self._mod()
        return float(self._call(nv.nvmlDeviceGetTemperature, self._handle(gpu), nv.NVML_TEMPERATURE_GPU))

    def memory_temperature(self, gpu: int) -> float:
        # HBM temperature has no getter of its own, only a field value.
        return self._field_values(gpu, {"memory": self._mod().NVML_FI_DEV_MEMORY_TEMP})["memory"]

    def slowdown_temperature(self, gpu: int) -> float:
        nv = self._mod()
        threshold = nv.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
        return float(self._call(nv.nvmlDeviceGetTemperatureThreshold, self._handle(gpu), threshold))

    def power(self, gpu: int) -> float:
        return float(self._call(self._mod().nvmlDeviceGetPowerUsage, self._handle(gpu)))

    def power_limit(self, gpu: int) -> float:
        return float(self._call(self._mod().nvmlDeviceGetEnforcedPowerLimit, self._handle(gpu)))

    def energy(self, gpu: int) -> float:
        return float(self._call(self._mod().nvmlDeviceGetTotalEnergyConsumption, self._handle(gpu)))

    def throttle_reasons(self, gpu: int) -> int:
        nv = self._mod()
        # The "event reasons" name arrived with r535; older bindings only have the "throttle" one.
        fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(self._call(fn, self._handle(gpu)))

    def ecc_errors(self, gpu: int, kind: EccKind, counter: EccCounter) -> float:
        nv = self._mod()
        error = nv.NVML_MEMORY_ERROR_TYPE_CORRECTED if kind == "sbe" else nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        count = nv.NVML_VOLATILE_ECC if counter == "volatile" else nv.NVML_AGGREGATE_ECC
        return float(self._call(nv.nvmlDeviceGetTotalEccErrors, self._handle(gpu), error, count))

    def retired_pages(self, gpu: int, cause: EccKind) -> float:
        nv = self._mod()
        source = (
            nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
            if cause == "sbe"
            else nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
        )
        return float(len(self._call(nv.nvmlDeviceGetRetiredPages, self._handle(gpu), source)))

    def retired_pages_pending(self, gpu: int) -> bool:
        nv = self._mod()
        status = int(self._call(nv.nvmlDeviceGetRetiredPagesPendingStatus, self._handle(gpu)))
        return status == int(nv.NVML_FEATURE_ENABLED)

    def remapped_rows(self, gpu: int) -> tuple[float, float, bool, bool]:
        corr, unc, pending, failure = self._call(self._mod().nvmlDeviceGetRemappedRows, self._handle(gpu))
        return float(corr), float(unc), bool(pending), bool(failure)

    def pcie_replays(self, gpu: int) -> float:
        return float(self._call(self._mod().nvmlDeviceGetPcieReplayCounter, self._handle(gpu)))

    def nvlink_errors(self, gpu: int) -> dict[str, float]:
        # NVML sums the links itself (the *_TOTAL field ids): one call instead of links x counters.
        nv = self._mod()
        ids = dict(
            zip(
                NVLINK_KINDS,
                (
                    nv.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
                    nv.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
                    nv.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
                    nv.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
                ),
                strict=True,
            )
        )
        return self._field_values(gpu, ids)

    def _field_values(self, gpu: int, ids: dict[str, int]) -> dict[str, float]:
        """Field values by name; a field NVML answers with an error is left out, all failing raises."""
        nv = self._mod()
        values = self._call(nv.nvmlDeviceGetFieldValues, self._handle(gpu), list(ids.values()))
        out: dict[str, float] = {}
        first_error = 0
        for name, value in zip(ids, values, strict=True):
            if value.nvmlReturn != nv.NVML_SUCCESS:
                first_error = first_error or int(value.nvmlReturn)
                continue
            out[name] = _field_number(nv, value)
        if not out:
            label = self._labels.get(first_error, "nvml_error")
            raise NvmlError(label, f"field values {sorted(ids)}: NVML error {first_error}")
        return out

    # ---------------------------------------------------------------- XID events

    def register_xid_events(self, gpu: int) -> None:
        nv = self._mod()
        if self._event_set is None:
            self._event_set = self._call(nv.nvmlEventSetCreate)
        self._call(nv.nvmlDeviceRegisterEvents, self._handle(gpu), nv.nvmlEventTypeXidCriticalError, self._event_set)

    def xid_events(self) -> list[XidEvent]:
        nv = self._mod()
        if self._event_set is None:
            return []
        events = []
        for _ in range(MAX_EVENTS_PER_POLL):
            try:
                data = self._call(nv.nvmlEventSetWait, self._event_set, 0)
            except NvmlError as exc:
                if exc.label == "timeout":  # nothing (more) pending
                    break
                raise
            if data.eventType != nv.nvmlEventTypeXidCriticalError:
                continue
            index = int(self._call(nv.nvmlDeviceGetIndex, data.device))
            events.append(XidEvent(gpu=index, code=int(data.eventData)))
        return events


def _field_number(nv: ModuleType, value: Any) -> float:
    kind = int(value.valueType)
    union = value.value
    if kind == nv.NVML_VALUE_TYPE_DOUBLE:
        return float(union.dVal)
    if kind == nv.NVML_VALUE_TYPE_SIGNED_LONG_LONG:
        return float(union.sllVal)
    if kind == nv.NVML_VALUE_TYPE_SIGNED_INT:
        return float(union.siVal)
    if kind == nv.NVML_VALUE_TYPE_UNSIGNED_INT:
        return float(union.uiVal)
    return float(ctypes.c_ulonglong(union.ullVal).value)
