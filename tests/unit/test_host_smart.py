"""SMART from smartctl's JSON: parsing (tests/fixtures/smart, see SOURCE.md there), the exit status
bits through a real child process, and the real smartctl binary where it is installed."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.host.smart import SmartDevice, create, device_label, parse_report, scan_devices

from vigil import catalog as c
from vigil.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "smart"
ATTRS = frozenset({5, 9, 187, 188, 194, 197, 198, 199})


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return doc


def report(name: str, device: SmartDevice) -> dict[str, float]:
    return dict(parse_report(load(name), device, ATTRS))


def test_healthy_ata_disk() -> None:
    got = report("ata-healthy", SmartDevice(name="/dev/sda", type="sat"))
    who = 'device="sda",model="VIGIL_EXAMPLE_HDD_12TB",serial="EXA0001"'
    assert got[f"{c.DISK_SMART_HEALTHY}{{{who}}}"] == 1.0
    assert got[f"{c.DISK_TEMPERATURE}{{{who}}}"] == 36
    assert got[f"{c.DISK_POWER_ON}{{{who}}}"] == 21540 * 3600
    raw = {k.split('attr_id="')[1].split('"')[0]: v for k, v in got.items() if k.startswith(c.DISK_SMART_ATTRIBUTE)}
    assert raw == {"5": 0, "9": 21540, "187": 0, "188": 4295032833, "194": 36, "197": 0, "198": 0, "199": 3}
    assert got[f'{c.DISK_SMART_NORMALIZED}{{attr_id="194",{who}}}'] == 166
    assert not any('attr_id="1"' in k for k in got)  # not in the wanted list


def test_failing_ata_disk() -> None:
    got = report("ata-failing", SmartDevice(name="/dev/sdb"))
    who = 'device="sdb",model="VIGIL_EXAMPLE_HDD_12TB",serial="EXA0002"'
    assert got[f"{c.DISK_SMART_HEALTHY}{{{who}}}"] == 0.0
    assert got[f'{c.DISK_SMART_ATTRIBUTE}{{attr_id="5",{who}}}'] == 2048
    assert got[f'{c.DISK_SMART_NORMALIZED}{{attr_id="5",{who}}}'] == 3
    assert got[f'{c.DISK_SMART_ATTRIBUTE}{{attr_id="197",{who}}}'] == 16
    assert got[f'{c.DISK_SMART_ATTRIBUTE}{{attr_id="194",{who}}}'] == 41


def test_worn_nvme_drive() -> None:
    got = report("nvme-worn", SmartDevice(name="/dev/nvme0", type="nvme"))
    who = 'device="nvme0",model="VIGIL_EXAMPLE_NVME_3.84TB",serial="EXN0001"'
    assert got[f"{c.DISK_NVME_MEDIA_ERRORS}{{{who}}}"] == 3
    assert got[f"{c.DISK_NVME_PERCENT_USED}{{{who}}}"] == pytest.approx(1.12)
    assert got[f"{c.DISK_NVME_SPARE}{{{who}}}"] == pytest.approx(0.08)
    assert got[f"{c.DISK_NVME_SPARE_THRESHOLD}{{{who}}}"] == pytest.approx(0.10)
    assert got[f"{c.DISK_NVME_CRITICAL_WARNING}{{{who}}}"] == 1
    assert got[f"{c.DISK_TEMPERATURE}{{{who}}}"] == 41
    assert got[f"{c.DISK_POWER_ON}{{{who}}}"] == 25001 * 3600
    assert got[f"{c.DISK_SMART_HEALTHY}{{{who}}}"] == 0.0
    assert len([k for k in got if k.startswith(c.DISK_TEMPERATURE)]) == 1


def test_nvme_log_alone_still_gives_temperature_and_hours() -> None:
    doc = load("nvme-worn")
    del doc["temperature"], doc["power_on_time"]
    got = dict(parse_report(doc, SmartDevice(name="/dev/nvme0"), ATTRS))
    assert [v for k, v in got.items() if k.startswith(c.DISK_TEMPERATURE)] == [41]
    assert [v for k, v in got.items() if k.startswith(c.DISK_POWER_ON)] == [25001 * 3600]


def test_scan_and_device_labels() -> None:
    devices = scan_devices(load("scan"))
    assert [(d.name, d.type) for d in devices] == [
        ("/dev/sda", "sat"),
        ("/dev/nvme0", "nvme"),
        ("/dev/bus/0", "megaraid,0"),
    ]
    assert [device_label(d) for d in devices] == ["sda", "nvme0", "bus/0_megaraid_0"]  # no comma in a label


FAKE_SMARTCTL = """\
import json, pathlib, sys, time
args = sys.argv[1:]
fixtures = pathlib.Path(sys.argv[0]).parent
if "--scan" in args:
    print((fixtures / "scan.json").read_text()); sys.exit(0)
name = {"/dev/sda": "ata-healthy", "/dev/nvme0": "nvme-worn", "/dev/bus/0": "ata-failing",
        "/dev/sdc": "ata-standby", "/dev/sdd": "ata-partial"}.get(args[-1])
if args[-1] == "/dev/slow":
    time.sleep(30)
if name is None:
    print("not json at all"); sys.exit(2)
doc = json.loads((fixtures / (name + ".json")).read_text())
(fixtures / "calls.log").open("a").write(" ".join(args) + "\\n")
print(json.dumps(doc)); sys.exit(doc["smartctl"]["exit_status"])
"""


@pytest.fixture
def smartctl(tmp_path: Path) -> Path:
    """An executable that answers like smartctl from the fixtures (exit status included)."""
    for fixture in FIXTURES.glob("*.json"):
        shutil.copy(fixture, tmp_path)
    script = tmp_path / "smartctl"
    script.write_text(f"#!{sys.executable}\n{FAKE_SMARTCTL}")
    script.chmod(0o755)
    return script


def test_scanned_devices_through_a_child_process(smartctl: Path) -> None:
    items = create({"smartctl": str(smartctl)}, CollectorContext("h")).collect()
    assert not [i for i in items if isinstance(i, Problem)]  # bits 3 and 4 are findings, not failures
    devices = {k.split('device="')[1].split('"')[0] for k, _ in items}  # type: ignore[misc]
    assert devices == {"sda", "nvme0", "bus/0_megaraid_0"}
    calls = (smartctl.parent / "calls.log").read_text().splitlines()
    assert "-j -a -n standby -d megaraid,0 /dev/bus/0" in calls


def test_exit_bits_standby_partial_garbage_timeout(smartctl: Path, tmp_path: Path) -> None:
    devices = ["/dev/sdc", "/dev/sdd", "/dev/unknown", "/dev/slow"]
    items = create({"smartctl": str(smartctl), "devices": devices, "timeout": "1s"}, CollectorContext("h")).collect()
    problems = [(p.error, p.detail.split(":")[0]) for p in items if isinstance(p, Problem)]
    assert problems == [
        ("smart_command_failed", "/dev/sdd"),  # bit 2: data kept, problem counted
        ("parse", "/dev/unknown"),
        ("timeout", f"{smartctl} -j -a -n standby /dev/slow took more than 1s"),
    ]  # the sleeping /dev/sdc is skipped quietly
    samples = dict(i for i in items if isinstance(i, tuple))
    assert (
        samples[f'{c.DISK_SMART_ATTRIBUTE}{{attr_id="5",device="sdd",model="VIGIL_EXAMPLE_HDD_12TB",serial="EXA0004"}}']
        == 0
    )
    missing = create({"smartctl": str(tmp_path / "nope"), "devices": ["/dev/sda"]}, CollectorContext("h")).collect()
    assert [p.error for p in missing if isinstance(p, Problem)] == ["missing_binary"]


def test_options_are_checked() -> None:
    options = create({"devices": ["/dev/sda", {"name": "/dev/bus/0", "type": "megaraid,1"}]}, CollectorContext("h"))
    assert options.options.devices[1] == SmartDevice(name="/dev/bus/0", type="megaraid,1")
    with pytest.raises(ConfigError, match=r"agent\.collectors\.smart\.attributes\[0\]"):
        create({"attributes": [300]}, CollectorContext("h"))
    with pytest.raises(ConfigError, match=r"agent\.collectors\.smart\.timeout: invalid duration"):
        create({"timeout": "soon"}, CollectorContext("h"))


@pytest.mark.skipif(shutil.which("smartctl") is None, reason="smartmontools is not installed")
def test_real_smartctl_scan_and_a_device_it_cannot_open() -> None:
    # Whatever this machine has (nothing, on a VM with virtio disks): samples or Problems, never an exception.
    scanned = create({}, CollectorContext("h")).collect()
    assert all(isinstance(i, tuple | Problem) for i in scanned)
    forced = create({"devices": [{"name": "/dev/vda", "type": "sat"}, "/dev/nonexistent"]}, CollectorContext("h"))
    problems = [(p.error, p.detail) for p in forced.collect() if isinstance(p, Problem)]
    assert [e for e, _ in problems] == ["open_failed", "command_failed"]
    assert problems[1][1] == "/dev/nonexistent: /dev/nonexistent: Unable to detect device type"
