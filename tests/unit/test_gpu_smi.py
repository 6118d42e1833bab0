"""nvidia-smi: the CSV parser on every real capture, the ``-q -x`` (XML) parser on the synthesized
reports of tests/fixtures/nvidia-smi (values of the real text captures, see its README), and the
collector's subprocess path against a fake nvidia-smi replaying them: field rejection, fallback,
MIG, failures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.gpu import nvidia_smi
from vigil.collectors.gpu.nvidia_smi import NvidiaSmiCollector, SmiOptions, run_command
from vigil.collectors.gpu.smi_parse import Missing, parse_csv, parse_xml, to_number

from tests.gpu_fixtures import capture_csv, capture_sections, fake_smi, smi_captures, smi_xml, smi_xml_reports
from vigil.errors import ConfigError

CTX = CollectorContext(host="node-a")
MIB = float(1 << 20)
CAPTURES = smi_captures()


def _capture(part: str) -> Path:
    found = [p for p in CAPTURES if part in p.name]
    if not found:
        pytest.skip("shared datasets are not present (set VIGIL_DATASETS)")
    return found[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("81559 MiB", 81559.0),
        ("71.15 W", 71.15),
        ("100.00 %", 100.0),
        ("0x0000000000000024", 36.0),
        ("P8", 8.0),
        ("Not Active", 0.0),
        ("Active", 1.0),
        ("Yes", 1.0),
        ("-2 C", -2.0),
        ("9", 9.0),
    ],
)
def test_values(raw: str, expected: float) -> None:
    assert to_number(raw) == expected


@pytest.mark.parametrize(
    ("raw", "label"),
    [("[N/A]", "not_supported"), ("[Not Supported]", "not_supported"), ("[GPU is lost]", "gpu_lost"),
     ("[Unknown Error]", "unknown_error"), ("[Insufficient Permissions]", "permission"), ("banana", "parse"),
     ("[Requested functionality has been deprecated]", "not_supported")],
)  # fmt: skip
def test_placeholders_are_missing_values_with_a_reason(raw: str, label: str) -> None:
    value = to_number(raw)
    assert isinstance(value, Missing) and value == label


def test_csv_with_and_without_header() -> None:
    with_header = "index, memory.total [MiB], clocks.sm [MHz]\n0, 81559 MiB, 345 MHz\n1, 81559 MiB, [N/A]\n"
    rows = parse_csv(with_header)
    assert rows == [
        {"index": "0", "memory.total": "81559 MiB", "clocks.current.sm": "345 MHz"},
        {"index": "1", "memory.total": "81559 MiB", "clocks.current.sm": "[N/A]"},
    ]
    assert parse_csv("0, 81559\n", ["index", "memory.total"]) == [{"index": "0", "memory.total": "81559"}]
    with pytest.raises(ValueError, match="3 columns where 2"):
        parse_csv("0, 1, 2\n", ["index", "memory.total"])


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
@pytest.mark.parametrize("state", ["idle", "load"])
def test_every_captured_csv_parses(capture: Path, state: str) -> None:
    sections = capture_sections(capture)
    header, _ = capture_csv(sections, state)
    (row,) = parse_csv(sections[(state, "query-gpu (csv, what the exporter parses)")])
    assert len(row) == len(header) and row["index"] == "0" and row["uuid"].startswith("GPU-")
    assert not isinstance(to_number(row["memory.total"]), Missing)


@pytest.mark.parametrize("report", smi_xml_reports(), ids=lambda p: p.stem)
def test_every_xml_report_parses(report: Path) -> None:
    parsed = parse_xml(report.read_text())
    assert parsed.driver_version == report.stem.split("__")[2]
    assert parsed.gpus and all(g.values["uuid"].startswith("GPU-") for g in parsed.gpus)
    for gpu in parsed.gpus:
        assert gpu.values["pci.bus_id"] == gpu.bus_id and ":" in gpu.bus_id
        for field in ("memory.total", "temperature.gpu", "power.draw", "clocks.current.sm"):
            assert not isinstance(to_number(gpu.values[field]), Missing), field
        assert gpu.values["clocks_throttle_reasons.active"].startswith("0x")


def test_xml_values_match_the_h100_text_capture() -> None:
    """The synthesized H100 report carries the real capture's load values: the same readings come out."""
    gpu = parse_xml(smi_xml("h100-80gb").read_text()).gpus[0]
    assert gpu.values["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu.values["memory.used"] == "19818 MiB" and gpu.values["temperature.memory"] == "55 C"
    assert gpu.values["power.draw"] == "588.39 W"  # the instantaneous reading, not the average (629.45 W)
    assert gpu.values["enforced.power.limit"] == "700.00 W"
    assert gpu.values["q.pcie.replays"] == "9"
    assert gpu.values["ecc.errors.corrected.volatile.total"] == "0"
    assert gpu.values["ecc.errors.uncorrected.aggregate.total"] == "0"
    assert gpu.values["remapped_rows.pending"] == "No" and gpu.values["retired_pages.pending"] == "N/A"
    assert gpu.values["clocks_throttle_reasons.active"] == "0x0" and gpu.mig == []
    sections = capture_sections(_capture("h100-80gb"))
    csv_row = parse_csv(sections[("load", "query-gpu (csv, what the exporter parses)")])[0]
    assert csv_row["uuid"] == gpu.values["uuid"] and csv_row["pci.bus_id"] == gpu.bus_id


def test_xml_mig_devices_and_the_old_layout() -> None:
    mig = parse_xml(smi_xml("h200-mig").read_text()).gpus[0]
    assert mig.values["mig.mode.current"] == "Enabled"
    assert [d["gpu_instance"] for d in mig.mig] == ["2", "2", "3", "9", "10"]  # two compute instances in 2
    assert mig.mig[0]["memory.total"] == "71424 MiB" and mig.values["remapped_rows.pending"] == "N/A"
    old = parse_xml(smi_xml("v100").read_text())
    first, second = old.gpus
    assert first.values["power.draw"] == "287.52 W" and first.values["enforced.power.limit"] == "300.00 W"
    assert first.values["ecc.errors.corrected.volatile.total"] == "3"
    assert first.values["ecc.errors.uncorrected.aggregate.total"] == "1"
    assert first.values["retired_pages.single_bit_ecc.count"] == "2"
    assert first.values["q.temperature.slowdown"] == "87 C"
    assert first.values["clocks_throttle_reasons.active"] == "0x4"  # sw_power_cap
    assert second.values["clocks_throttle_reasons.active"] == "0x48"  # hw_slowdown + hw_thermal_slowdown
    assert to_number(second.values["utilization.gpu"]) == "gpu_lost"


@pytest.mark.parametrize(
    ("text", "message"),
    [("hello\nworld : 1\n", "not XML"), ("<html><body/></html>", "not an nvidia-smi -q -x report")],
)
def test_what_is_not_an_xml_report_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_xml(text)


# ----------------------------------------------------------------------- the collector, via subprocess


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        self.calls.append(list(argv[1:]))
        return run_command(argv, timeout)


def _collect(collector: NvidiaSmiCollector) -> tuple[dict[str, float], list[Problem]]:
    items: list[Any] = list(collector.collect())
    return {i[0]: i[1] for i in items if isinstance(i, tuple)}, [i for i in items if isinstance(i, Problem)]


def test_a_field_the_driver_rejects_is_dropped_reported_once_and_the_query_retried(tmp_path: Path) -> None:
    runner = Recorder()
    collector = NvidiaSmiCollector(CTX, SmiOptions(binary=str(fake_smi(tmp_path, _capture("l40s")))), run=runner)
    collector._query.insert(3, "clocks.brand_new_field")
    samples, problems = _collect(collector)
    assert samples['gpu_power_limit_watts{gpu_index="0"}'] == 350.0
    rejected = [p for p in problems if "clocks.brand_new_field" in p.detail]
    assert len(rejected) == 1 and rejected[0].error == "not_supported"
    assert len(runner.calls) == 2 and "clocks.brand_new_field" not in runner.calls[1][0]
    _collect(collector)
    assert len(runner.calls) == 3  # remembered: one query per collection from now on


def test_when_the_csv_query_fails_the_q_report_is_read(tmp_path: Path) -> None:
    runner = Recorder()
    binary = fake_smi(tmp_path, _capture("h100-80gb"), "load", fail_query=True, xml=smi_xml("h100-80gb"))
    samples, problems = _collect(NvidiaSmiCollector(CTX, SmiOptions(binary=str(binary)), run=runner))
    assert [p.error for p in problems] == [
        "nvidia_smi_failed",
        "not_supported",
        "not_supported",
        "not_supported",
        "not_supported",
    ]
    assert "Failed to initialize NVML" in problems[0].detail
    assert runner.calls[1] == ["-q", "-x"]
    assert samples['gpu_memory_used_bytes{gpu_index="0"}'] == 19818 * MIB
    assert samples['gpu_pcie_replay_total{gpu_index="0"}'] == 9.0
    csv_only = NvidiaSmiCollector(CTX, SmiOptions(binary=str(binary), mode="csv"))
    assert [type(i) for i in csv_only.collect()] == [Problem]


def test_mig_slices_come_from_q_once_per_gpu_instance(tmp_path: Path) -> None:
    runner = Recorder()
    binary = fake_smi(tmp_path, _capture("h200-mig"), xml=smi_xml("h200-mig"))
    collector = NvidiaSmiCollector(CTX, SmiOptions(binary=str(binary)), run=runner)
    samples, _ = _collect(collector)
    assert [c[0] for c in runner.calls] == [runner.calls[0][0], "-q"]  # the CSV said MIG is on
    slices = sorted(k for k in samples if k.startswith("gpu_memory_total_bytes") and "mig_instance" in k)
    assert len(slices) == 4  # GPU instance 2 holds two compute instances sharing its memory
    assert samples['gpu_memory_total_bytes{gpu_index="0",mig_instance="2"}'] == 71424 * MIB
    no_mig = NvidiaSmiCollector(
        CTX, SmiOptions(binary=str(fake_smi(tmp_path, _capture("h200-mig"))), mig=False), run=runner
    )
    _collect(no_mig)
    assert runner.calls[-1][0] != "-q"


def test_a_hung_binary_times_out(tmp_path: Path) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\nexec sleep 5\n")
    script.chmod(0o755)
    _, problems = _collect(NvidiaSmiCollector(CTX, SmiOptions(binary=str(script), timeout=0.3, mode="csv")))
    assert [p.error for p in problems] == ["timeout"]


def test_gpu_lost_values_are_reported_every_time(tmp_path: Path) -> None:
    def runner(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        fields = argv[1].split("=", 1)[1].split(",")
        values = {"index": "0", "uuid": "GPU-1", "temperature.gpu": "[GPU is lost]", "memory.total": "1024"}
        return 0, ", ".join(values.get(f, "[N/A]") for f in fields) + "\n", ""

    collector = NvidiaSmiCollector(CTX, SmiOptions(mode="csv"), run=runner)
    for _ in range(2):
        samples, problems = _collect(collector)
        assert samples['gpu_memory_total_bytes{gpu_index="0"}'] == 1024 * MIB
        assert [p.error for p in problems if p.error != "not_supported"] == ["gpu_lost"]


def test_options() -> None:
    assert nvidia_smi.create({"binary": "/opt/nvidia/bin/nvidia-smi", "mode": "q"}, CTX).name == "nvidia_smi"
    with pytest.raises(ConfigError, match=r"agent\.collectors\.nvidia_smi\.mode"):
        nvidia_smi.create({"mode": "xml"}, CTX)
