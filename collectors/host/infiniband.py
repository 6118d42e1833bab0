"""The ``infiniband`` collector: port counters and state of every HCA port, from sysfs.

Layout (Linux, Documentation/ABI/stable/sysfs-class-infiniband)::

    <root>/<device>/ports/<port>/state                 "4: ACTIVE"
    <root>/<device>/ports/<port>/counters/port_rcv_data     (and the other counters below)

``port_rcv_data``/``port_xmit_data`` count 4-byte words (octets divided by four, as the IBA
PortCounters attribute defines them), so they are multiplied by 4 into bytes. A node without
InfiniBand (no ``<root>``, e.g. no ``ib_core`` loaded) yields nothing and no Problem: that is a
configuration, not a failure, and a fleet-wide agent config should not count errors on every
Ethernet-only node. A counter a driver does not provide (no file) is skipped; a counter or state
file that exists but cannot be read is a Problem. Series are labelled ``device`` and ``port``
(RoCE ports appear here too, with the same counters).
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from vigil.collectors.base import CollectorContext, Item, Problem
from vigil.collectors.host.common import label_value

from vigil import catalog as c
from vigil.config import FrozenModel, validate
from vigil.events import series_key

NAME = "infiniband"
SYSFS_ROOT = Path("/sys/class/infiniband")
COUNTERS = {  # file -> (metric, multiplier to base units)
    "port_rcv_data": (c.IB_RECEIVE, 4.0),
    "port_xmit_data": (c.IB_TRANSMIT, 4.0),
    "symbol_error": (c.IB_SYMBOL_ERRORS, 1.0),
    "link_downed": (c.IB_LINK_DOWNED, 1.0),
    "link_error_recovery": (c.IB_LINK_RECOVERY, 1.0),
    "port_rcv_errors": (c.IB_RCV_ERRORS, 1.0),
    "port_xmit_discards": (c.IB_XMIT_DISCARDS, 1.0),
}


class InfinibandOptions(FrozenModel):
    sysfs_root: Path = SYSFS_ROOT


class InfinibandCollector:
    name = NAME

    def __init__(self, options: InfinibandOptions) -> None:
        self.root = options.sysfs_root

    def collect(self) -> list[Item]:
        if not self.root.is_dir():
            return []
        items: list[Item] = []
        for port_dir in sorted(self.root.glob("*/ports/*")):
            labels = {"device": label_value(port_dir.parent.parent.name), "port": label_value(port_dir.name)}
            state = _read(port_dir / "state", items)
            if state is not None:
                active = state.split(":", 1)[-1].strip().upper() == "ACTIVE"
                items.append((series_key(c.IB_PORT_STATE_ACTIVE, labels), 1.0 if active else 0.0))
            for counter, (metric, scale) in COUNTERS.items():
                text = _read(port_dir / "counters" / counter, items)
                if text is None:
                    continue
                try:
                    items.append((series_key(metric, labels), int(text) * scale))
                except ValueError:
                    items.append(Problem("parse", f"{port_dir / 'counters' / counter}: {text[:40]!r}"))
        return items


def _read(path: Path, items: list[Item]) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None  # not provided by this driver
    except OSError as exc:
        error = "permission" if exc.errno in (errno.EACCES, errno.EPERM) else "read"
        items.append(Problem(error, f"{path}: {exc.strerror}"))
        return None


def create(options: dict[str, Any], context: CollectorContext) -> InfinibandCollector:
    return InfinibandCollector(validate(InfinibandOptions, options, prefix=f"agent.collectors.{NAME}"))
