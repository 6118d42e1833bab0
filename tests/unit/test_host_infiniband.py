"""InfiniBand counters from a sysfs tree laid out as Documentation/ABI/stable/sysfs-class-infiniband says."""

from __future__ import annotations

from pathlib import Path

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.host.infiniband import create

from vigil import catalog as c


def port(root: Path, device: str, number: int, state: str, **counters: int) -> Path:
    folder = root / device / "ports" / str(number)
    (folder / "counters").mkdir(parents=True)
    (folder / "state").write_text(f"{state}\n")
    (folder / "link_layer").write_text("InfiniBand\n")
    for name, value in counters.items():
        (folder / "counters" / name).write_text(f"{value}\n")
    return folder


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "class" / "infiniband"
    full = {
        "symbol_error": 0,
        "link_downed": 2,
        "link_error_recovery": 1,
        "port_rcv_errors": 5,
        "port_xmit_discards": 9,
    }
    port(root, "mlx5_0", 1, "4: ACTIVE", port_rcv_data=1_000_000, port_xmit_data=250, **full)
    port(root, "mlx5_1", 1, "1: DOWN", port_rcv_data=0, port_xmit_data=0)  # a driver without error counters
    return root


def test_counters_in_bytes_and_port_state(sysfs: Path) -> None:
    items = create({"sysfs_root": str(sysfs)}, CollectorContext("h")).collect()
    assert not [i for i in items if isinstance(i, Problem)]
    got = dict(i for i in items if isinstance(i, tuple))
    one = '{device="mlx5_0",port="1"}'
    assert got[c.IB_RECEIVE + one] == 4_000_000  # 4-byte words
    assert got[c.IB_TRANSMIT + one] == 1000
    assert got[c.IB_LINK_DOWNED + one] == 2
    assert got[c.IB_LINK_RECOVERY + one] == 1
    assert got[c.IB_RCV_ERRORS + one] == 5
    assert got[c.IB_XMIT_DISCARDS + one] == 9
    assert got[c.IB_SYMBOL_ERRORS + one] == 0
    assert got[c.IB_PORT_STATE_ACTIVE + one] == 1
    other = '{device="mlx5_1",port="1"}'
    assert got[c.IB_PORT_STATE_ACTIVE + other] == 0
    assert c.IB_LINK_DOWNED + other not in got  # not provided: skipped, not an error
    assert len(got) == 8 + 3


def test_no_infiniband_is_nothing_and_no_error(tmp_path: Path) -> None:
    assert create({"sysfs_root": str(tmp_path / "absent")}, CollectorContext("h")).collect() == []


def test_unreadable_or_garbled_counter_is_a_problem(sysfs: Path) -> None:
    counters = sysfs / "mlx5_0" / "ports" / "1" / "counters"
    (counters / "symbol_error").unlink()
    (counters / "symbol_error").mkdir()  # reading it fails (EISDIR), as a failing firmware query would
    (counters / "link_downed").write_text("N/A\n")
    items = create({"sysfs_root": str(sysfs)}, CollectorContext("h")).collect()
    assert [(p.error, Path(p.detail.split(":")[0]).name) for p in items if isinstance(p, Problem)] == [
        ("read", "symbol_error"),
        ("parse", "link_downed"),
    ]
    assert any(k.startswith(c.IB_RECEIVE) for k, _ in (i for i in items if isinstance(i, tuple)))
