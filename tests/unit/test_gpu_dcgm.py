"""The dcgm-exporter collector: the field table against the exporter's counter CSVs, the real sample
scrape, pod/job labels, XID events, and what an unreadable scrape does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.gpu import dcgm, dcgm_fields
from vigil.collectors.gpu.dcgm import DcgmCollector, DcgmOptions

from tests.gpu_fixtures import fixtures_dir
from vigil.clock import FakeClock
from vigil.errors import ConfigError
from vigil.events import LogEvent

CTX = CollectorContext(host="node-a", cluster="c1")
MIB = float(1 << 20)
FIELD_LINE = re.compile(r"^#?\s*(DCGM_\w+)\s*,\s*(\w+)\s*,")


def _folder() -> Path:
    folder = fixtures_dir("dcgm-exporter")
    if folder is None:
        pytest.skip("shared datasets are not present (set VIGIL_DATASETS)")
    return folder


def _fields(csv: Path) -> list[tuple[str, str]]:
    """(field, type) of every field line, enabled or commented out."""
    return [m.groups() for line in csv.read_text().splitlines() if (m := FIELD_LINE.match(line.strip()))]


@pytest.mark.parametrize("csv", ["default-counters.csv", "dcp-metrics-included.csv"])
def test_every_field_of_the_exporters_counter_files_is_mapped(csv: str) -> None:
    fields = _fields(_folder() / csv)
    field_lines = [
        line for line in (_folder() / csv).read_text().splitlines() if "DCGM_" in line and line.count(",") >= 2
    ]
    assert len(fields) == len(field_lines) > 50  # every field line was read, enabled or not
    for name, kind in fields:
        if kind == "label":
            assert name in dcgm_fields.INFO_LABELS, f"{name}: a label field with no gpu_info label"
        else:
            assert dcgm_fields.lookup(name) is not None or name in dcgm_fields.THROTTLE_FIELDS, f"{name} unmapped"


def test_units_follow_the_help_texts() -> None:
    for name, scale in (
        ("DCGM_FI_DEV_SM_CLOCK", 1e6),  # MHz
        ("DCGM_FI_DEV_FB_USED", float(1 << 20)),  # MiB
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e-3),  # mJ
        ("DCGM_FI_DEV_GPU_UTIL", 0.01),  # %
        ("DCGM_FI_DEV_POWER_VIOLATION", 1e-9),  # ns
        ("DCGM_FI_PROF_SM_ACTIVE", 1.0),  # already a ratio
    ):
        mapping = dcgm_fields.lookup(name)
        assert mapping is not None and mapping.scale == scale, name
    lane = dcgm_fields.lookup("DCGM_FI_DEV_NVLINK_BANDWIDTH_L0")
    assert lane is not None and lane.metric == "gpu_nvlink_link_bytes_total" and ("link", "0") in lane.labels


def _collect(collector: DcgmCollector) -> tuple[dict[str, float], list[LogEvent], list[Problem]]:
    items: list[Any] = list(collector.collect())
    samples = {i[0]: i[1] for i in items if isinstance(i, tuple)}
    return samples, [i for i in items if isinstance(i, LogEvent)], [i for i in items if isinstance(i, Problem)]


def test_the_real_sample_scrape() -> None:
    collector = DcgmCollector(CTX, DcgmOptions(file=_folder() / "metrics-sample.txt"))
    samples, events, problems = _collect(collector)
    assert samples['gpu_memory_total_bytes{gpu_index="0"}'] == 15109 * MIB
    assert samples['gpu_temperature_celsius{gpu_index="0"}'] == 25.0
    assert samples['gpu_performance_state{gpu_index="0"}'] == 8.0
    assert samples['gpu_throttle_reasons{gpu_index="0"}'] == 1.0
    assert samples['gpu_xid_last{gpu_index="0"}'] == 0.0 and not events
    # identity on gpu_info (one per distinct GPU identity: the file joins three exporters' output)
    infos = [k for k in samples if k.startswith("gpu_info")]
    assert len(infos) == 3
    assert (
        'gpu_info{brand="NVIDIA",cuda_driver_version="12010",device="nvidia0",driver_version="470.182.03",'
        'gpu_index="0",hostname="551bdf382151",minor_number="0",model="Tesla T4",nvml_version="11.470.182.03",'
        'serial="1565220008176",uuid="GPU-9ef1b6d0-3643-5dd7-b823-c0ec20dcf2d5",vbios_version="90.04.96.00.02"}'
    ) in infos
    # no identity label leaks onto the other series; pod labels stay on them
    assert all("uuid" not in k and "Hostname" not in k for k in samples if not k.startswith("gpu_info"))
    pod = 'gpu_dram_active_ratio{container="ray-worker",gpu_index="0",namespace="ray-llm",pod="ray-1111111"}'
    assert samples[pod] == pytest.approx(3e-6)
    # the file's dummy block has no gpu label: each such field is reported once, then quietly skipped
    no_gpu = [p for p in problems if p.error == "no_gpu_label"]
    assert len(no_gpu) == 14 and any("DCGM_FI_PROF_SM_OCCUPANCY" in p.detail for p in no_gpu)
    assert _collect(collector)[2] == []


def _scrape(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "metrics.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


LABELS = 'gpu="{gpu}",UUID="GPU-{gpu}",pci_bus_id="00000000:{gpu}B:00.0",modelName="NVIDIA H100 80GB HBM3"'


def _xid(gpu: int, value: int) -> str:
    return f"DCGM_FI_DEV_XID_ERRORS{{{LABELS.format(gpu=gpu)}}} {value}"


def test_xid_last_value_changes_become_events_but_the_first_scrape_is_a_baseline(tmp_path: Path) -> None:
    clock = FakeClock()
    path = _scrape(tmp_path, _xid(0, 31), _xid(1, 0))
    collector = DcgmCollector(CTX, DcgmOptions(file=path), clock)
    samples, events, _ = _collect(collector)
    assert samples['gpu_xid_last{gpu_index="0"}'] == 31.0 and events == []  # sticky, undated: not re-paged
    history = [
        (_xid(0, 31), _xid(1, 79)),
        (_xid(0, 31), _xid(1, 79)),
        (_xid(0, 48), _xid(1, 0)),
        (_xid(0, 48), _xid(1, 13)),
    ]
    seen = []
    for lines in history:
        _scrape(tmp_path, *lines)
        clock.advance(5)
        seen.append([(e.gpu_index, e.code) for e in _collect(collector)[1]])
    assert seen == [[(1, 79)], [], [(0, 48)], [(1, 13)]]  # a change to 0 is no XID
    event = _collect(collector)[1] or None
    assert event is None


def test_xid_event_fields(tmp_path: Path) -> None:
    clock = FakeClock()
    path = _scrape(tmp_path, _xid(2, 0))
    collector = DcgmCollector(CTX, DcgmOptions(file=path), clock)
    _collect(collector)
    _scrape(tmp_path, _xid(2, 79))
    (event,) = _collect(collector)[1]
    assert (event.kind, event.code, event.source, event.gpu_index) == ("xid", 79, "dcgm", 2)
    assert (event.gpu_uuid, event.gpu_pci, event.ts, event.host) == ("GPU-2", "0000:2b:00.0", clock.now(), "node-a")


def test_the_xid_total_counter_drives_events_when_present(tmp_path: Path) -> None:
    def lines(last: int, totals: dict[int, int]) -> list[str]:
        total = [f'DCGM_EXP_XID_ERRORS_TOTAL{{{LABELS.format(gpu=0)},xid="{x}"}} {n}' for x, n in totals.items()]
        return ["# TYPE DCGM_EXP_XID_ERRORS_TOTAL counter", *total, _xid(0, last)]

    path = _scrape(tmp_path, *lines(79, {79: 1}))
    collector = DcgmCollector(CTX, DcgmOptions(file=path))
    samples, events, _ = _collect(collector)
    assert samples['gpu_xid_errors_total{gpu_index="0",xid="79"}'] == 1.0 and events == []
    _scrape(tmp_path, *lines(79, {79: 2}))  # the same XID again: the last value cannot show it, the counter does
    assert [(e.code, e.raw) for e in _collect(collector)[1]] == [(79, "dcgm-exporter: XID 79 count 1 -> 2 on GPU 0")]
    _scrape(tmp_path, *lines(48, {79: 2, 48: 1}))  # a new xid label: its first sight counts from nothing
    assert [e.code for e in _collect(collector)[1]] == []


def test_windowed_xid_count_is_a_gauge_not_a_counter(tmp_path: Path) -> None:
    line = f'DCGM_EXP_XID_ERRORS_COUNT{{{LABELS.format(gpu=0)},xid="43",window_size_in_ms="300000"}} 2'
    samples, _, _ = _collect(DcgmCollector(CTX, DcgmOptions(file=_scrape(tmp_path, line))))
    assert samples == {
        'gpu_xid_errors_in_window{gpu_index="0",window_ms="300000",xid="43"}': 2.0,
        'gpu_info{gpu_index="0",model="NVIDIA H100 80GB HBM3",pci_bus_id="0000:0b:00.0",uuid="GPU-0"}': 1.0,
    }


def test_mig_instance_and_hpc_job_labels(tmp_path: Path) -> None:
    mig = f'DCGM_FI_DEV_FB_USED{{{LABELS.format(gpu=1)},GPU_I_ID="3",GPU_I_PROFILE="1g.10gb",hpc_job="4711"}} 17'
    samples, _, _ = _collect(DcgmCollector(CTX, DcgmOptions(file=_scrape(tmp_path, mig))))
    assert samples['gpu_memory_used_bytes{gpu_index="1",hpc_job="4711",mig_instance="3"}'] == 17 * MIB
    assert any(k.startswith('gpu_info{gpu_index="1",mig_instance="3",mig_profile="1g.10gb"') for k in samples)


def test_unknown_fields_are_reported_once_not_passed_through(tmp_path: Path) -> None:
    path = _scrape(
        tmp_path, 'DCGM_FI_DEV_SOMETHING_NEW{gpu="0"} 5', 'DCGM_FI_DEV_GPU_TEMP{gpu="0"} 40', "go_goroutines 12"
    )
    collector = DcgmCollector(CTX, DcgmOptions(file=path))
    samples, _, problems = _collect(collector)
    assert samples == {'gpu_temperature_celsius{gpu_index="0"}': 40.0, 'gpu_info{gpu_index="0"}': 1.0}
    assert [(p.error, "DCGM_FI_DEV_SOMETHING_NEW" in p.detail) for p in problems] == [("unmapped_field", True)]
    assert _collect(collector)[2] == []


def test_unreadable_scrapes(tmp_path: Path) -> None:
    def problems(text: str) -> list[str]:
        return [p.error for p in _collect(DcgmCollector(CTX, DcgmOptions(file=_scrape(tmp_path, text))))[2]]

    assert problems("this is not { prometheus") == ["parse"]
    assert problems("node_load1 0.5") == ["no_dcgm_fields"]
    assert problems('DCGM_FI_DEV_GPU_TEMP{gpu="0"} NaN') == ["invalid_value"]
    (tmp_path / "dir").mkdir()
    assert [p.error for p in DcgmCollector(CTX, DcgmOptions(file=tmp_path / "dir")).collect()] == ["unreadable"]  # type: ignore[union-attr]


def test_options() -> None:
    assert dcgm.create({}, CTX).source == dcgm.DEFAULT_URL  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="set url or file, not both"):
        dcgm.create({"url": "http://x/metrics", "file": "/tmp/x"}, CTX)
    with pytest.raises(ConfigError, match=r"agent\.collectors\.dcgm\.timeout"):
        dcgm.create({"timeout": "soon"}, CTX)
