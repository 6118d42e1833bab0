"""The XID catalog is data: it loads, every entry is valid, and the codes that matter are right."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vigil.errors import ConfigError
from vigil.xid import ACTIONS, SEVERITIES, XidCatalog

REQUIRED = {13, 31, 32, 43, 45, 48, 61, 62, 63, 64, 68, 69, 74, 79, 92, 94, 95, 119, 120, 121, 140}


def test_catalog_loads_with_every_required_code_and_valid_entries() -> None:
    catalog = XidCatalog.load()
    assert set(catalog) >= REQUIRED
    for code, entry in catalog.items():
        assert entry.code == code
        assert entry.severity in SEVERITIES and entry.action in ACTIONS
        assert entry.name.strip() and len(entry.meaning) > 20


def test_fallen_off_the_bus_is_fatal_and_takes_the_gpu_out() -> None:
    entry = XidCatalog.load()[79]
    assert entry.fatal and entry.severity == "critical"
    assert entry.action in {"reset_gpu", "drain_and_rma"}


def test_application_xids_are_not_fatal_and_ecc_containment_is_told_apart() -> None:
    catalog = XidCatalog.load()
    for code in (13, 31, 43, 45, 68):
        assert not catalog[code].fatal, code
    assert not catalog[94].fatal and catalog[94].action == "restart_app"  # contained to the app
    assert catalog[95].fatal and catalog[95].action == "reset_gpu"  # uncontained: reset
    assert catalog[64].action == "drain_and_rma"  # the remap could not be recorded


def test_unknown_code_classifies_as_a_warning_not_a_page() -> None:
    entry = XidCatalog.load().classify(9999)
    assert entry.code == 9999 and entry.severity == "warning" and not entry.fatal


@pytest.mark.parametrize(
    "entry, where",
    [
        ("{code: 1, name: x, meaning: y, severity: loud, fatal: false, action: none}", "entries[0].severity"),
        ("{code: 1, name: x, meaning: y, severity: info, fatal: false, action: pray}", "entries[0].action"),
        ("{code: -1, name: x, meaning: y, severity: info, fatal: false, action: none}", "entries[0].code"),
        ("{code: 1, name: x, meaning: y, severity: info, fatal: maybe, action: none}", "entries[0].fatal"),
    ],
)
def test_invalid_entry_is_rejected_naming_the_entry(tmp_path: Path, entry: str, where: str) -> None:
    path = tmp_path / "xid.yaml"
    path.write_text(f"version: 1\nentries:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=re.escape(where)):
        XidCatalog.load(path)
