"""What the NVML collector asks of NVML (:class:`NvmlReader`), and a reader that replays a recording.

The protocol speaks plain Python values in NVML's own units (percent, MiB-free bytes, MHz, mW, mJ),
so the collector owns every conversion and every reader stays a thin adapter: the real one over
pynvml (:mod:`vigil.collectors.gpu.nvml_pynvml`), :class:`RecordedNvml` for tests, and the fleet
simulator's (:mod:`vigil.collectors.sim.gpu_source`). A failing call raises :class:`NvmlError` whose
``label`` is the Problem's error label (``not_supported``, ``gpu_lost``, ``nvml_error``...).

Recording format (JSON): ``{"source": "...", "calls": {"<method> <args...>": [response, ...]}}``.
Each call takes the next response of its key and the last one repeats, except ``xid_events`` which
drains to ``[]``; a response ``{"error": label, "detail": text}`` is raised as :class:`NvmlError`; a
key missing from the recording answers ``not_supported``. :class:`RecordingReader` writes this format
from any reader, so ``python -m vigil.collectors.gpu.nvml --record out.json`` captures a real GPU.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from vigil.errors import VigilError

EccKind = Literal["sbe", "dbe"]
EccCounter = Literal["volatile", "aggregate"]
ClockDomain = Literal["sm", "mem"]
NVLINK_KINDS = ("crc_flit", "crc_data", "replay", "recovery")


class NvmlError(VigilError):
    """An NVML call failed; ``label`` is a short stable Problem label."""

    def __init__(self, label: str, detail: str = "") -> None:
        super().__init__(f"{label}: {detail}" if detail else label)
        self.label = label
        self.detail = detail


@dataclasses.dataclass(frozen=True, slots=True)
class GpuIdentity:
    uuid: str
    pci_bus_id: str
    name: str
    serial: str = ""  # consumer boards have none


@dataclasses.dataclass(frozen=True, slots=True)
class MigDevice:
    """One MIG slice: ``index`` addresses it in the reader, ``gpu_instance`` names it in labels."""

    index: int
    gpu_instance: int
    compute_instance: int
    uuid: str


@dataclasses.dataclass(frozen=True, slots=True)
class XidEvent:
    gpu: int
    code: int


class NvmlReader(Protocol):
    """One NVML session. ``gpu`` is the NVML device index; ``mig`` a :class:`MigDevice` index."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def driver_version(self) -> str: ...
    def device_count(self) -> int: ...
    def identity(self, gpu: int) -> GpuIdentity: ...
    def utilization(self, gpu: int, mig: int | None = None) -> tuple[float, float]:
        """(gpu %, memory controller %)."""
        ...

    def memory(self, gpu: int, mig: int | None = None) -> tuple[float, float, float]:
        """(total, used, free) in bytes."""
        ...

    def clock(self, gpu: int, domain: ClockDomain) -> float:
        """Current clock in MHz."""
        ...

    def temperature(self, gpu: int) -> float: ...
    def memory_temperature(self, gpu: int) -> float: ...
    def slowdown_temperature(self, gpu: int) -> float: ...
    def power(self, gpu: int) -> float:
        """Board power draw in mW."""
        ...

    def power_limit(self, gpu: int) -> float:
        """Enforced power limit in mW."""
        ...

    def energy(self, gpu: int) -> float:
        """Energy since the driver loaded, in mJ."""
        ...

    def throttle_reasons(self, gpu: int) -> int: ...
    def ecc_errors(self, gpu: int, kind: EccKind, counter: EccCounter) -> float: ...
    def retired_pages(self, gpu: int, cause: EccKind) -> float: ...
    def retired_pages_pending(self, gpu: int) -> bool: ...
    def remapped_rows(self, gpu: int) -> tuple[float, float, bool, bool]:
        """(correctable, uncorrectable, pending, failure)."""
        ...

    def pcie_replays(self, gpu: int) -> float: ...
    def nvlink_errors(self, gpu: int) -> dict[str, float]:
        """Error counters summed over the GPU's links, by kind (:data:`NVLINK_KINDS`)."""
        ...

    def mig_devices(self, gpu: int) -> list[MigDevice]:
        """The MIG slices ([] when MIG is off); raises ``not_supported`` on GPUs without MIG."""
        ...

    def register_xid_events(self, gpu: int) -> None: ...
    def xid_events(self) -> list[XidEvent]:
        """XID events since the last call, without waiting (NVML event set, timeout 0)."""
        ...


# ---------------------------------------------------------------------------------------- recordings

Decoder = Callable[[Any], Any]
_DECODERS: dict[str, Decoder] = {
    "identity": lambda v: GpuIdentity(**v),
    "mig_devices": lambda v: [MigDevice(**d) for d in v],
    "xid_events": lambda v: [XidEvent(**d) for d in v],
    "utilization": tuple,
    "memory": tuple,
    "remapped_rows": tuple,
    "nvlink_errors": dict,
}


def call_key(method: str, *args: object) -> str:
    return " ".join([method, *(str(a) for a in args if a is not None)])


class RecordedNvml:
    """Replays a recording (see the module docstring); counts its calls for cost assertions."""

    def __init__(self, recording: dict[str, Any]) -> None:
        self._calls: dict[str, list[Any]] = {k: list(v) for k, v in recording.get("calls", {}).items()}
        self.source = str(recording.get("source", ""))
        self.calls_made = 0

    @classmethod
    def load(cls, path: Path) -> RecordedNvml:
        return cls(json.loads(path.read_text()))

    def _next(self, method: str, *args: object) -> Any:
        self.calls_made += 1
        key = call_key(method, *args)
        responses = self._calls.get(key)
        if not responses:
            if method == "xid_events":
                return []
            raise NvmlError("not_supported", f"{key!r} is not in the recording")
        value = responses.pop(0) if len(responses) > 1 or method == "xid_events" else responses[0]
        if isinstance(value, dict) and "error" in value:
            raise NvmlError(str(value["error"]), str(value.get("detail", "")))
        decode = _DECODERS.get(method)
        return decode(value) if decode else value

    def init(self) -> None:
        if "init" in self._calls:  # a recording without it initialised fine
            self._next("init")

    def shutdown(self) -> None:
        return None

    def driver_version(self) -> str:
        return str(self._next("driver_version"))

    def device_count(self) -> int:
        return int(self._next("device_count"))

    def identity(self, gpu: int) -> GpuIdentity:
        result: GpuIdentity = self._next("identity", gpu)
        return result

    def utilization(self, gpu: int, mig: int | None = None) -> tuple[float, float]:
        result: tuple[float, float] = self._next("utilization", gpu, _mig(mig))
        return result

    def memory(self, gpu: int, mig: int | None = None) -> tuple[float, float, float]:
        result: tuple[float, float, float] = self._next("memory", gpu, _mig(mig))
        return result

    def clock(self, gpu: int, domain: ClockDomain) -> float:
        return float(self._next("clock", gpu, domain))

    def temperature(self, gpu: int) -> float:
        return float(self._next("temperature", gpu))

    def memory_temperature(self, gpu: int) -> float:
        return float(self._next("memory_temperature", gpu))

    def slowdown_temperature(self, gpu: int) -> float:
        return float(self._next("slowdown_temperature", gpu))

    def power(self, gpu: int) -> float:
        return float(self._next("power", gpu))

    def power_limit(self, gpu: int) -> float:
        return float(self._next("power_limit", gpu))

    def energy(self, gpu: int) -> float:
        return float(self._next("energy", gpu))

    def throttle_reasons(self, gpu: int) -> int:
        return int(self._next("throttle_reasons", gpu))

    def ecc_errors(self, gpu: int, kind: EccKind, counter: EccCounter) -> float:
        return float(self._next("ecc_errors", gpu, kind, counter))

    def retired_pages(self, gpu: int, cause: EccKind) -> float:
        return float(self._next("retired_pages", gpu, cause))

    def retired_pages_pending(self, gpu: int) -> bool:
        return bool(self._next("retired_pages_pending", gpu))

    def remapped_rows(self, gpu: int) -> tuple[float, float, bool, bool]:
        result: tuple[float, float, bool, bool] = self._next("remapped_rows", gpu)
        return result

    def pcie_replays(self, gpu: int) -> float:
        return float(self._next("pcie_replays", gpu))

    def nvlink_errors(self, gpu: int) -> dict[str, float]:
        result: dict[str, float] = self._next("nvlink_errors", gpu)
        return result

    def mig_devices(self, gpu: int) -> list[MigDevice]:
        result: list[MigDevice] = self._next("mig_devices", gpu)
        return result

    def register_xid_events(self, gpu: int) -> None:
        self._next("register_xid_events", gpu)

    def xid_events(self) -> list[XidEvent]:
        result: list[XidEvent] = self._next("xid_events")
        return result


def _mig(mig: int | None) -> str | None:
    return None if mig is None else f"mig{mig}"


class RecordingReader:
    """Wraps a reader and records every call and its answer in the recording format."""

    def __init__(self, inner: NvmlReader, source: str = "") -> None:
        self._inner = inner
        self.calls: dict[str, list[Any]] = {}
        self.source = source

    def __getattr__(self, method: str) -> Callable[..., Any]:
        target = getattr(self._inner, method)

        def record(*args: Any, **kwargs: Any) -> Any:
            args = (*args, *kwargs.values())
            shown = [_mig(a) if i == 1 and method in ("utilization", "memory") else a for i, a in enumerate(args)]
            key = call_key(method, *shown)
            try:
                value = target(*args)
            except NvmlError as exc:
                self.calls.setdefault(key, []).append({"error": exc.label, "detail": exc.detail})
                raise
            if method != "shutdown":
                self.calls.setdefault(key, []).append(_plain(value))
            return value

        return record

    def dump(self) -> dict[str, Any]:
        return {"source": self.source, "calls": self.calls}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
