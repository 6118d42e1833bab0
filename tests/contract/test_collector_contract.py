"""Every collector honours the Collector contract, checked the same way for each.

To add a collector, append a :class:`Case` (a working source, ideally real captured output, with a
few spot values read off that output) to ``CASES`` and its unreadable variants to ``BROKEN``.

Checked for every case: metric names are Prometheus-style (snake_case, a base-unit suffix or a
documented unitless exception, ``_total`` counters that never go down, no non-base unit words) and
are in :mod:`vigil.catalog` or the pending list reported to the lead; label names are valid; series
keys are canonical; values are finite floats, ratios within 0..1; LogEvent times are UTC epoch floats
within sane bounds; spot values read off the capture match after unit conversion. For every broken
source (missing file or binary, NVML init failure, connection refused, garbage text) ``collect()``
raises nothing and yields a Problem with a label fit for ``vigil_collector_errors_total{error}``.
"""

from __future__ import annotations

import itertools
import math
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from vigil.collectors.base import Collector, CollectorContext, Item, Problem
from vigil.collectors.gpu.dcgm import DcgmCollector, DcgmOptions
from vigil.collectors.gpu.nvidia_smi import NvidiaSmiCollector, SmiOptions
from vigil.collectors.gpu.nvml import NvmlCollector
from vigil.collectors.gpu.nvml_pynvml import PynvmlReader
from vigil.collectors.gpu.nvml_reader import NvmlError, RecordedNvml
from vigil.collectors.sim import gpu_source

from tests.gpu_fixtures import fake_smi, fixtures_dir, smi_captures, smi_xml
from vigil import catalog
from vigil.clock import FakeClock
from vigil.events import LogEvent, parse_series_key, series_key

CTX = CollectorContext(host="node-a", cluster="test")
MIB = float(1 << 20)
SCRIPTED = Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "scripted_h100.json"

# --- naming rules
NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ERROR_LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
UNIT_SUFFIXES = (
    "_total", "_bytes", "_hertz", "_celsius", "_watts", "_joules", "_ratio", "_seconds", "_info",
    "_bytes_per_second", "_rpm", "_volts", "_amperes",
)  # fmt: skip
# Unitless gauges, on purpose: counts of things, states, bitmasks and enums have no unit.
UNITLESS = frozenset({
    catalog.GPU_THROTTLE_REASONS, catalog.GPU_THROTTLE, catalog.GPU_RETIRED_PAGES, catalog.GPU_RETIRED_PAGES_PENDING,
    catalog.GPU_REMAP_PENDING, catalog.GPU_REMAP_FAILURE, catalog.GPU_REMAPPED_ROWS, catalog.GPU_XID_LAST,
    "gpu_xid_errors_in_window", "gpu_clock_events_in_window", "gpu_performance_state", "gpu_vgpu_license_status",
    "gpu_health_status", "gpu_p2p_status", catalog.HOST_LOAD1, catalog.HOST_LOAD5, catalog.HOST_LOAD15,
    catalog.HOST_FS_FILES_FREE, catalog.DISK_SMART_ATTRIBUTE, catalog.DISK_SMART_NORMALIZED,
    catalog.DISK_SMART_HEALTHY, catalog.DISK_NVME_CRITICAL_WARNING, catalog.IPMI_SENSOR_OK,
    catalog.IB_PORT_STATE_ACTIVE,
})  # fmt: skip
# NVMe "percentage used" is an estimate of life used that the spec lets exceed 100% (up to 255%).
OVER_ONE = frozenset({catalog.DISK_NVME_PERCENT_USED})
NON_BASE_UNITS = re.compile(
    r"_(percent|pct|mib|mb|kb|kib|gib|mhz|khz|ghz|milliwatts|mw|millijoules|mj|ms|us|ns|"
    r"microseconds|milliseconds|nanoseconds|fahrenheit|kelvin|minutes|hours)(_|$)"
)
CATALOG_NAMES = frozenset(v for k, v in vars(catalog).items() if k.isupper() and isinstance(v, str))
KNOWN_NAMES = CATALOG_NAMES
SANE_TS = (datetime(2001, 1, 1, tzinfo=UTC).timestamp(), datetime(2100, 1, 1, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Collector]
    ticks: int = 2
    spot: Mapping[str, float] = field(default_factory=dict)  # series key -> value on the last tick
    min_events: int = 0
    needs: str | None = None  # a shared-datasets fixture folder it reads
    samples: bool = True  # False for an event-only source (the kernel log)


@dataclass(frozen=True)
class Broken:
    name: str
    make: Callable[[Path], Collector]
    errors: tuple[str, ...]  # it must yield a Problem with one of these labels
    needs: str | None = None


def _dataset(name: str, file: str) -> Path:
    folder = fixtures_dir(name)
    if folder is None:
        pytest.skip("shared datasets are not present (set VIGIL_DATASETS)")
    return folder / file


def _capture(part: str) -> Path:
    found = [p for p in smi_captures() if part in p.name]
    if not found:
        pytest.skip("shared datasets are not present (set VIGIL_DATASETS)")
    return found[0]


@dataclass
class _OneSecondPerCollection:
    """Moves the fake clock a second before each collection, as real time does under the agent."""

    inner: Collector
    clock: FakeClock

    @property
    def name(self) -> str:
        return self.inner.name

    def collect(self) -> Iterable[Item]:
        self.clock.advance(1.0)
        return self.inner.collect()


def _sim(_: Path) -> Collector:
    clock = FakeClock()
    fault = {"kind": "xid79", "at": 1.5, "duration": 2, "host": "node-00", "gpu_index": 5}
    return _OneSecondPerCollection(gpu_source.create({"faults": [fault]}, CTX, clock=clock), clock)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _garbage_smi(tmp: Path) -> Collector:
    script = tmp / "nvidia-smi"
    script.write_text("#!/bin/sh\necho 'Segmentation fault, core dumped ;;; \\x00'\necho ',,,'\n")
    script.chmod(0o755)
    return NvidiaSmiCollector(CTX, SmiOptions(binary=str(script), mode="csv"))


def _failing_smi(tmp: Path) -> Collector:
    script = tmp / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n"
    )
    script.chmod(0o755)
    return NvidiaSmiCollector(CTX, SmiOptions(binary=str(script)))


def _real_nvml(_: Path) -> Collector:
    reader = PynvmlReader()
    try:
        reader.init()
    except NvmlError:  # the expected path on a GPU-less machine: the collector must report it
        return NvmlCollector(PynvmlReader(), CTX)
    reader.shutdown()
    pytest.skip("NVML initialises on this machine: nothing broken to test")


CASES: list[Case] = [
    Case(
        "nvml-scripted-h100",
        lambda _: NvmlCollector(RecordedNvml.load(SCRIPTED), CTX, clock=FakeClock()),
        spot={
            'gpu_power_watts{gpu_index="0"}': 588.39,
            'gpu_power_limit_watts{gpu_index="0"}': 700.0,
            'gpu_memory_used_bytes{gpu_index="0"}': 19818 * MIB,
            'gpu_utilization_ratio{gpu_index="0"}': 1.0,
            'gpu_memory_utilization_ratio{gpu_index="0"}': 0.11,
            'gpu_energy_joules_total{gpu_index="0"}': 1235156.28,
            'gpu_sm_clock_hertz{gpu_index="1"}': 1.98e9,
            'gpu_throttle{gpu_index="0",reason="sw_power_cap"}': 1.0,
            'gpu_memory_total_bytes{gpu_index="1",mig_instance="2"}': 40448 * MIB,
            'gpu_pcie_replay_total{gpu_index="1"}': 9.0,
        },
        min_events=1,
    ),
    Case(
        "sim_gpu",
        _sim,
        ticks=4,
        spot={'gpu_memory_total_bytes{gpu_index="0"}': 81559 * MIB, 'gpu_power_limit_watts{gpu_index="3"}': 700.0},
        min_events=1,
    ),
    Case(
        "dcgm-metrics-sample",
        lambda _: DcgmCollector(CTX, DcgmOptions(file=_dataset("dcgm-exporter", "metrics-sample.txt"))),
        spot={
            'gpu_sm_clock_hertz{gpu_index="0"}': 300e6,
            'gpu_memory_clock_hertz{gpu_index="0"}': 405e6,
            'gpu_power_watts{gpu_index="0"}': 8.969,
            'gpu_energy_joules_total{gpu_index="0"}': 128996.013,
            'gpu_memory_free_bytes{gpu_index="0"}': 15109 * MIB,
            'gpu_slowdown_temperature_celsius{gpu_index="0"}': 93.0,
            'gpu_power_limit_watts{gpu_index="0"}': 70.0,
            'gpu_throttle{gpu_index="0",reason="gpu_idle"}': 1.0,
            'gpu_dram_active_ratio{container="ray-worker",gpu_index="0",namespace="ray-llm",pod="ray-1111111"}': 3e-6,
        },
        needs="dcgm-exporter",
    ),
    Case(
        "nvidia_smi-h200-mig-auto",
        lambda tmp: NvidiaSmiCollector(
            CTX, SmiOptions(binary=str(fake_smi(tmp, _capture("h200-mig"), "load", xml=smi_xml("h200-mig"))))
        ),
        spot={
            'gpu_memory_total_bytes{gpu_index="0",mig_instance="2"}': 71424 * MIB,
            'gpu_memory_used_bytes{gpu_index="0",mig_instance="3"}': 17 * MIB,
            'gpu_memory_free_bytes{gpu_index="0",mig_instance="10"}': 16376 * MIB,
        },
        needs="nvidia-smi",
    ),
    Case(
        "nvidia_smi-h100-xml",
        lambda tmp: NvidiaSmiCollector(
            CTX, SmiOptions(binary=str(fake_smi(tmp, _capture("h100-80gb"), xml=smi_xml("h100-80gb"))), mode="q")
        ),
        spot={
            'gpu_temperature_celsius{gpu_index="0"}': 59.0,
            'gpu_memory_temperature_celsius{gpu_index="0"}': 55.0,
            'gpu_power_watts{gpu_index="0"}': 588.39,
            'gpu_power_limit_watts{gpu_index="0"}': 700.0,
            'gpu_sm_clock_hertz{gpu_index="0"}': 1980e6,
            'gpu_memory_total_bytes{gpu_index="0"}': 81559 * MIB,
            'gpu_utilization_ratio{gpu_index="0"}': 1.0,
            'gpu_pcie_replay_total{gpu_index="0"}': 9.0,
        },
        needs="nvidia-smi",
    ),
    Case(
        "nvidia_smi-v100-xml-old-layout",
        lambda tmp: NvidiaSmiCollector(
            CTX, SmiOptions(binary=str(fake_smi(tmp, smi_xml("v100"), xml=smi_xml("v100"))), mode="q")
        ),
        spot={
            'gpu_slowdown_temperature_celsius{gpu_index="0"}': 87.0,
            'gpu_power_watts{gpu_index="0"}': 287.52,
            'gpu_ecc_sbe_volatile_total{gpu_index="0"}': 3.0,
            'gpu_temperature_celsius{gpu_index="1"}': 89.0,
            'gpu_throttle{gpu_index="1",reason="hw_thermal_slowdown"}': 1.0,
        },
    ),
]

def _from_registry(name: str) -> Callable[[Path], Collector]:
    """A host-side collector built from the registry with the options its own contract test uses,
    so the naming, unit and finiteness rules here cover every collector, not only the GPU ones."""
    from vigil.collectors.registry import create_collector

    from tests.contract import test_kernelhost_collectors as kh

    return lambda tmp: create_collector(name, kh.OPTIONS[name](tmp), CTX)


CASES += [Case(f"registry-{n}", _from_registry(n)) for n in ("host", "smart", "ipmi", "infiniband")]
CASES.append(Case("registry-kernel_log", _from_registry("kernel_log"), min_events=1, samples=False))

BROKEN: list[Broken] = [
    Broken(
        "nvml-init-fails",
        lambda _: NvmlCollector(RecordedNvml({"calls": {"init": [{"error": "driver_not_loaded"}]}}), CTX),
        ("driver_not_loaded",),
    ),
    Broken("nvml-no-driver-here", _real_nvml, ("library_not_found", "driver_not_loaded")),
    Broken(
        "dcgm-missing-file", lambda tmp: DcgmCollector(CTX, DcgmOptions(file=tmp / "absent.txt")), ("missing_file",)
    ),
    Broken(
        "dcgm-connection-refused",
        lambda _: DcgmCollector(CTX, DcgmOptions(url=f"http://127.0.0.1:{_closed_port()}/metrics", timeout=2)),
        ("unreachable",),
    ),
    Broken(
        "dcgm-garbage", lambda tmp: DcgmCollector(CTX, DcgmOptions(file=_write(tmp, "<html>nope</html>\n"))), ("parse",)
    ),
    Broken(
        "nvidia_smi-missing-binary",
        lambda tmp: NvidiaSmiCollector(CTX, SmiOptions(binary=str(tmp / "none"))),
        ("missing_binary",),
    ),
    Broken("nvidia_smi-garbage", _garbage_smi, ("parse",)),
    Broken("nvidia_smi-driver-gone", _failing_smi, ("nvidia_smi_failed",)),
]


def _write(tmp: Path, text: str) -> Path:
    path = tmp / "scrape.txt"
    path.write_text(text)
    return path


def _run(case: Case, tmp: Path) -> tuple[list[dict[str, float]], list[LogEvent], list[Problem]]:
    collector = case.make(tmp)
    assert isinstance(collector, Collector) and collector.name
    ticks, events, problems = [], [], []
    for _ in range(case.ticks):
        values: dict[str, float] = {}
        for item in collector.collect():
            if isinstance(item, LogEvent):
                events.append(item)
            elif isinstance(item, Problem):
                problems.append(item)
            else:
                key, value = item
                assert isinstance(key, str) and type(value) is float, item
                values[key] = value
        ticks.append(values)
    return ticks, events, problems


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_names_labels_and_values(case: Case, tmp_path: Path) -> None:
    ticks, _, problems = _run(case, tmp_path)
    assert ticks[-1] or not case.samples, f"{case.name} yielded no samples (problems: {problems[:3]})"
    for values in ticks:
        for key, value in values.items():
            metric, labels = parse_series_key(key)
            assert key == series_key(metric, labels), f"not canonical: {key}"
            assert NAME.match(metric), f"not snake_case: {metric}"
            assert metric in KNOWN_NAMES, f"{metric} is neither in vigil.catalog nor reported as new"
            assert metric.endswith(UNIT_SUFFIXES) or metric in UNITLESS, f"{metric}: no base-unit suffix"
            assert not NON_BASE_UNITS.search(metric), f"{metric}: not a base unit"
            assert all(LABEL.match(n) and not n.startswith("__") for n in labels), key
            assert math.isfinite(value), f"{key} = {value}"
            if metric.endswith("_ratio") and metric not in OVER_ONE:
                assert 0.0 <= value <= 1.0, f"{key} = {value}: a ratio (percent not converted?)"
            if metric.endswith(("_total", "_bytes", "_hertz", "_watts", "_joules")):
                assert value >= 0.0, f"{key} = {value}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_counters_never_go_down(case: Case, tmp_path: Path) -> None:
    ticks, _, _ = _run(case, tmp_path)
    for before, after in itertools.pairwise(ticks):
        for key, value in after.items():
            if parse_series_key(key)[0].endswith("_total") and key in before:
                assert value >= before[key], f"{key}: {before[key]} -> {value}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_spot_values_match_the_capture(case: Case, tmp_path: Path) -> None:
    ticks, _, _ = _run(case, tmp_path)
    last = ticks[-1]
    for key, expected in case.spot.items():
        assert key in last, f"{key} missing; have {sorted(k for k in last if k.startswith(key.split('{')[0]))}"
        assert last[key] == pytest.approx(expected, rel=1e-9), key


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_log_events(case: Case, tmp_path: Path) -> None:
    _, events, _ = _run(case, tmp_path)
    assert len(events) >= case.min_events
    for event in events:
        assert type(event.ts) is float and SANE_TS[0] < event.ts < SANE_TS[1]
        assert datetime.fromtimestamp(event.ts, tz=UTC).tzinfo is UTC
        assert event.host == CTX.host and event.cluster == CTX.cluster
        assert event.kind == "xid" and isinstance(event.code, int) and event.code > 0
        assert event.gpu_index is None or event.gpu_index >= 0


@pytest.mark.parametrize("broken", BROKEN, ids=lambda b: b.name)
def test_unreadable_source_yields_a_counted_problem(broken: Broken, tmp_path: Path) -> None:
    collector = broken.make(tmp_path)
    for _ in range(2):  # and again: a broken source stays a Problem, never an exception
        items = list(collector.collect())
        problems = Counter(item.error for item in items if isinstance(item, Problem))
        assert set(broken.errors) & set(problems), f"expected one of {broken.errors}, got {dict(problems)}"
        assert all(ERROR_LABEL.match(error) for error in problems)
        assert not any(isinstance(item, tuple) for item in items), "no samples from a source that cannot be read"


# The text captures have no XML report beside them (the two synthesized ones are paired here), so
# the others run the CSV path with MIG slices off; every XML report runs in mode q.
XML_OF = {"h100-80gb-hbm3__590": "h100-80gb", "h200-mig__590": "h200-mig"}
SMI_RUNS = [
    (capture, mode, state)
    for capture in smi_captures()
    for state in ("idle", "load")
    for mode in ("auto", "q")
    if mode == "auto" or (state == "load" and any(k in capture.name for k in XML_OF))
]


@pytest.mark.parametrize(("capture", "mode", "state"), SMI_RUNS, ids=lambda v: getattr(v, "stem", v))
def test_every_nvidia_smi_capture_parses(capture: Path, mode: str, state: str, tmp_path: Path) -> None:
    xml = next((smi_xml(part) for key, part in XML_OF.items() if key in capture.name), None)
    options = SmiOptions(binary=str(fake_smi(tmp_path, capture, state, xml=xml)), mode=mode, mig=xml is not None)  # type: ignore[arg-type]
    collector = NvidiaSmiCollector(CTX, options)
    items = list(collector.collect())
    samples = {item[0]: item[1] for item in items if isinstance(item, tuple)}
    errors = {item.error for item in items if isinstance(item, Problem)}
    assert errors <= {"not_supported"}, errors  # only fields the board lacks, never a parse failure
    model = next(word for word in capture.name.split("__")[1].split("-") if any(ch.isdigit() for ch in word))
    info = [k for k in samples if k.startswith("gpu_info") and "mig_instance" not in k]
    assert len(info) == 1 and "model=" in info[0] and model in info[0].lower(), info  # h100, 2080, l40s...
    assert samples['gpu_memory_total_bytes{gpu_index="0"}'] > 4 * (1 << 30)
    assert 10.0 <= samples['gpu_temperature_celsius{gpu_index="0"}'] <= 100.0
    assert 'gpu_throttle{gpu_index="0",reason="sw_thermal_slowdown"}' in samples
    if "mig" in capture.name and xml is not None:
        assert any("mig_instance" in k for k in samples), "MIG slices missing"
