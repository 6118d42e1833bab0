"""ipmitool sdr output: every dump of the real captures in datasets/fixtures/ipmi (FASRC HPC
sustainability dataset, MIT; one day of 1-minute `ipmitool sdr` from three nodes, a power-on after
a data-centre outage included), the elist shape, and the real ipmitool where it is installed."""

from __future__ import annotations

import lzma
import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.host.ipmi import Reading, create, parse_sdr, samples

from tests.shared_data import datasets_root
from vigil import catalog as c

NODES = ("holy7c18205", "holygpu8a11101", "lichtmandce03")


def dumps(node: str) -> Iterator[tuple[str, str]]:
    """(timestamp, sdr text) for each run in a capture: the dataset puts ``Timestamp: ...`` before each."""
    path = datasets_root() / "fixtures" / "ipmi" / "2025-06-03" / f"{node}-2025-06-03.txt.xz"
    stamp, lines = None, []
    with lzma.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("Timestamp: "):
                if stamp is not None:
                    yield stamp, "".join(lines)
                stamp, lines = line.removeprefix("Timestamp: ").strip(), []
            else:
                lines.append(line)
    if stamp is not None:
        yield stamp, "".join(lines)


@pytest.fixture(scope="module")
def parsed() -> dict[str, list[tuple[str, dict[str, float]]]]:
    return {node: [(ts, dict(samples(parse_sdr(text)))) for ts, text in dumps(node)] for node in NODES}


def test_every_dump_parses(parsed: dict[str, list[tuple[str, dict[str, float]]]]) -> None:
    for node, runs in parsed.items():
        assert len(runs) == 1440, node  # one a minute, all day
        for _, got in runs:
            assert all(math.isfinite(v) for v in got.values())
            assert {k.split("{")[0] for k in got} <= {
                c.IPMI_TEMPERATURE,
                c.IPMI_FAN_SPEED,
                c.IPMI_POWER,
                c.IPMI_VOLTAGE,
                c.IPMI_CURRENT,
                c.IPMI_SENSOR_OK,
            }
    # the BMCs did not answer while the data centre was down: empty dumps, nothing parsed
    assert sum(1 for _, got in parsed["holy7c18205"] if got) == 280
    assert sum(1 for _, got in parsed["holygpu8a11101"] if got) == 284
    assert sum(1 for _, got in parsed["lichtmandce03"] if got) == 1440


def test_spot_values(parsed: dict[str, list[tuple[str, dict[str, float]]]]) -> None:
    runs = dict(parsed["holy7c18205"])
    assert runs["2025-06-03 00:00:02 UTC"]['ipmi_power_watts{sensor="sys_power"}'] == 10  # standby power
    assert runs["2025-06-03 00:00:02 UTC"]['ipmi_voltage_volts{sensor="cmos_battery"}'] == 3.13
    assert runs["2025-06-03 02:38:01 UTC"] == {}
    on = runs["2025-06-03 21:58:01 UTC"]  # the first dump after power came back
    assert on['ipmi_power_watts{sensor="sys_power"}'] == 170
    assert on['ipmi_power_watts{sensor="cpu_power"}'] == 110
    assert on['ipmi_temperature_celsius{sensor="rear_board_temp"}'] == 27
    assert on['ipmi_voltage_volts{sensor="sysbrd_12v"}'] == 12.04
    assert runs["2025-06-03 23:59:01 UTC"]['ipmi_power_watts{sensor="sys_power"}'] == 220

    gpu = dict(parsed["holygpu8a11101"])["2025-06-03 00:00:08 UTC"]
    assert gpu['ipmi_power_watts{sensor="chassis_power"}'] == 450
    assert gpu['ipmi_fan_speed_rpm{sensor="psu4_fan_a"}'] == 8950
    assert gpu['ipmi_temperature_celsius{sensor="inlet_water_temp"}'] == 24
    assert 'ipmi_sensor_ok{sensor="psu4_fan_a_duty"}' in gpu  # percent: status only

    big = dict(parsed["lichtmandce03"])["2025-06-03 00:00:11 UTC"]
    assert big['ipmi_fan_speed_rpm{sensor="fan_1_tach"}'] == 7728
    assert big['ipmi_temperature_celsius{sensor="cpu_4_temp"}'] == 25
    assert big['ipmi_power_watts{sensor="psu2_ac_in_pwr"}'] == 160
    assert big['ipmi_sensor_ok{sensor="cpu_1_dts"}'] == 1  # "-51 unspecified": no unit we know, status only
    assert 'ipmi_sensor_ok{sensor="progress"}' not in big  # "Not Readable | ns": absent, not failing
    assert len([k for k in big if k.startswith(c.IPMI_FAN_SPEED)]) == 6


def test_elist_shape_status_and_units() -> None:
    text = (
        "Inlet Temp       | 04h | ok  |  7.1 | 23 degrees C\n"
        "Exhaust Temp     | 01h | ucr |  7.1 | 95 degrees F\n"
        "Fan1A            | 30h | ok  |  7.1 | 5880 RPM\n"
        "Current 1        | 6Ah | ok  | 10.1 | 0.60 Amps\n"
        "Pwr Consumption  | 77h | ok  |  7.1 | 252 Watts\n"
        "PS Redundancy    | 74h | cr  |  7.1 | Redundancy Lost\n"
        "Temp             | 0Eh | ns  |  3.1 | Disabled\n"
        "Fan1A            | 31h | ok  |  7.1 | 5760 RPM\n"
        "garbage line without separators\n"
    )
    readings = parse_sdr(text)
    assert readings[0] == Reading("inlet_temp", "7.1", "ok", c.IPMI_TEMPERATURE, 23.0)
    assert [r.sensor for r in readings][-1] == "fan1a_2"  # a repeated name stays a separate series
    got = dict(samples(readings))
    assert got['ipmi_temperature_celsius{entity="7.1",sensor="exhaust_temp"}'] == pytest.approx(35.0)
    assert got['ipmi_sensor_ok{entity="7.1",sensor="exhaust_temp"}'] == 0  # upper critical
    assert got['ipmi_current_amperes{entity="10.1",sensor="current_1"}'] == 0.6
    assert got['ipmi_sensor_ok{entity="7.1",sensor="ps_redundancy"}'] == 0
    assert not any('sensor="temp"' in k for k in got)


def fake_ipmitool(tmp_path: Path, output: str, code: int) -> Path:
    script = tmp_path / "ipmitool"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({output!r})\nsys.exit({code})\n")
    script.chmod(0o755)
    return script


def test_collector_through_a_child_process(tmp_path: Path) -> None:
    ok = fake_ipmitool(tmp_path, "Sys Power | 10 Watts | ok\n", 0)
    assert create({"ipmitool": str(ok)}, CollectorContext("h")).collect() == [
        ('ipmi_power_watts{sensor="sys_power"}', 10.0),
        ('ipmi_sensor_ok{sensor="sys_power"}', 1.0),
    ]
    partial = fake_ipmitool(tmp_path, "Sys Power | 10 Watts | ok\n", 1)
    items: list[Any] = create({"ipmitool": str(partial)}, CollectorContext("h")).collect()
    assert [type(i).__name__ for i in items] == ["tuple", "tuple", "Problem"]
    missing = create({"ipmitool": str(tmp_path / "nope")}, CollectorContext("h")).collect()
    assert [p.error for p in missing if isinstance(p, Problem)] == ["missing_binary"]


@pytest.mark.skipif(shutil.which("ipmitool") is None, reason="ipmitool is not installed")
def test_real_ipmitool_without_a_bmc_is_a_problem() -> None:
    if Path("/dev/ipmi0").exists():
        pytest.skip("this machine has a BMC")
    items = create({}, CollectorContext("h")).collect()
    assert [p.error for p in items if isinstance(p, Problem)] == ["command_failed"]
    assert "Could not open device" in next(p.detail for p in items if isinstance(p, Problem))
