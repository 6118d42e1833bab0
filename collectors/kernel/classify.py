"""Which kernel or driver lines are events, and what they name (a kind, a code, a PCI address).

One line is at most one event. The kinds and their codes:

- ``xid``: ``NVRM: Xid (PCI:0000:3b:00): 79, pid=..., ...``; the XID code; the GPU's PCI address.
  Older drivers print ``Xid (0000:3b:00)`` without ``PCI:``; MIG lines add ``GPU-I:..`` inside.
- ``sxid``: an NVSwitch error, ``nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, Non-fatal, ...``
  or fabric manager's ``detected NVSwitch non-fatal error 12028 on ... pci bus id ...``; the SXid
  code; no GPU (the address is the switch's, kept in ``raw``).
- ``fallen_off_bus``: ``NVRM: GPU at PCI:0000:3b:00: GPU-...: GPU has fallen off the bus.``; the
  GPU's address; no code (XID 79's meaning; the Xid 79 line itself is an ``xid`` event).
- ``mce``: a machine check (``Machine Check``/``Machine check events logged``) or an EDAC memory
  error report (``EDAC MC0: 1 CE ...``); the MCA bank as code where the line names one. The
  ``[Hardware Error]: TSC/ADDR/MISC`` detail lines of the same check are not events.
- ``aer``: PCIe Advanced Error Reporting, the device's ``PCIe Bus Error: severity=...`` line; code
  0 corrected, 1 uncorrected non-fatal, 2 uncorrected fatal; the device's address (a GPU's when the
  follower knows it as one). The root port's ``error received`` line repeats the same error and is
  not an event.
- ``nccl``: NCCL failures that reach a log: PyTorch's ``Watchdog caught collective operation
  timeout``, ``NCCL error``, a segfault inside ``libnccl``.
- ``peermem``: ``nvidia-peermem ... ERROR ...`` (GPUDirect RDMA lost a mapping).
- ``fabricmanager``: any other fabric manager line logged at ERROR or FATAL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PCI = r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?"
_XID = re.compile(rf"(?<![A-Za-z])Xid \((?:PCI:)?({_PCI})[^)]*\): *(\d+)")
_SXID = re.compile(rf"\bSXid \((?:PCI:)?({_PCI})[^)]*\): *(\d+)")
_FM_SWITCH = re.compile(r"detected NVSwitch (?:non-)?fatal error (\d+)")
_ADDRESS = re.compile(rf"\b({_PCI})\b")
_FALLEN = re.compile(r"fallen off the bus", re.IGNORECASE)
_GPU_AT = re.compile(rf"NVRM: GPU at PCI:({_PCI}): (GPU-[0-9a-fA-F-]{{36}})")
_MCE = re.compile(r"Machine [Cc]heck")
_BANK = re.compile(r"\bBank (\d+)\b")
_EDAC = re.compile(r"\bEDAC\b.*\b\d+ (?:CE|UE)\b")
_AER = re.compile(rf"({_PCI}): (?:AER: )?PCIe Bus Error: severity=([A-Za-z]+)(?: \((Non-Fatal|Fatal)\))?")
_NCCL = re.compile(r"Watchdog caught collective operation timeout|NCCL error|segfault at .* in libnccl")
_PEERMEM = re.compile(r"nvidia-peermem\b.*\bERROR\b")
# Cheap test first: almost every line is none of the above.
_ANY = re.compile(r"Xid|fallen off|[Mm]achine [Cc]heck|EDAC|PCIe Bus Error|NCCL|nccl|peermem|NVSwitch")

AER_CORRECTED, AER_NONFATAL, AER_FATAL = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    code: int | None = None
    pci: str | None = None  # normalised; a GPU's (or, for aer, the erring device's) address


def normalize_pci(address: str) -> str:
    """``00000000:3B:00.0``, ``0000:3b:00`` -> ``0000:3b:00.0`` (4-digit domain, lower case, function)."""
    domain, bus, rest = address.lower().split(":", 2)
    device, _, function = rest.partition(".")
    return f"{domain[-4:].rjust(4, '0')}:{bus}:{device}.{function or '0'}"


def classify(message: str, level: str | None = None) -> Finding | None:
    """The event a line is, or None. ``level`` is fabric manager's, when the line had one."""
    if not _ANY.search(message):
        return Finding("fabricmanager") if level in ("ERROR", "FATAL") else None
    if m := _XID.search(message):
        return Finding("xid", int(m.group(2)), normalize_pci(m.group(1)))
    if m := _SXID.search(message):
        return Finding("sxid", int(m.group(2)))
    if m := _FM_SWITCH.search(message):
        return Finding("sxid", int(m.group(1)))
    if _FALLEN.search(message):  # the address where the line names one (some drivers do not)
        address = _ADDRESS.search(message)
        return Finding("fallen_off_bus", None, normalize_pci(address.group(1)) if address else None)
    if m := _AER.search(message):
        return Finding("aer", _aer_code(m.group(2), m.group(3)), normalize_pci(m.group(1)))
    if _MCE.search(message):
        bank = _BANK.search(message)
        return Finding("mce", int(bank.group(1)) if bank else None)
    if _EDAC.search(message):
        return Finding("mce")
    if _NCCL.search(message):
        return Finding("nccl")
    if _PEERMEM.search(message):
        return Finding("peermem")
    return Finding("fabricmanager") if level in ("ERROR", "FATAL") else None


def gpu_announcement(message: str) -> tuple[str, str] | None:
    """``NVRM: GPU at PCI:0000:9b:00: GPU-509665ad-...``: the driver names a GPU's UUID (PCI, UUID)."""
    m = _GPU_AT.search(message)
    return (normalize_pci(m.group(1)), m.group(2)) if m else None


def _aer_code(severity: str, fatality: str | None) -> int:
    if severity.startswith("Correct"):  # "Corrected" before Linux 6.x, "Correctable" after
        return AER_CORRECTED
    return AER_FATAL if fatality == "Fatal" else AER_NONFATAL
