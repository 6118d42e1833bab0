"""The kernel log and host collectors honour the collector contract (collectors/base.py, registry.py):
built by name through the registry, ``collect()`` yields only Samples, LogEvents and Problems,
sample names are catalog metrics in base units with finite values (counters never negative), and
LogEvents survive the codec. Each runs on a real source or a real captured output."""

from __future__ import annotations

import itertools
import json
import lzma
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from vigil.collectors.base import Collector, CollectorContext, Problem
from vigil.collectors.registry import COLLECTORS, create_collector

from tests.shared_data import datasets_root
from vigil import catalog
from vigil.codec import decode, encode
from vigil.events import LogEvent, TelemetryBatch, parse_series_key, series_key

CONTEXT = CollectorContext("gpu-node-7", "dc1")
KINDS = {"xid", "sxid", "fallen_off_bus", "mce", "aer", "nccl", "peermem", "fabricmanager"}
CATALOG_NAMES = {v for k, v in vars(catalog).items() if k.isupper() and isinstance(v, str)}


def kernel_log_options(tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "dmesg.log"
    shutil.copyfile(datasets_root() / "fixtures" / "kernel-logs" / "dmesg-with-xid-119.log", log)
    return {"source": "file", "path": str(log), "start_at": "beginning", "state_dir": str(tmp_path / "state")}


def smart_options(tmp_path: Path) -> dict[str, Any]:
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "smart" / "nvme-worn.json"
    script = tmp_path / "smartctl"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({fixture.read_text()!r})\n")
    script.chmod(0o755)
    return {"smartctl": str(script), "devices": ["/dev/nvme0"]}


def ipmi_options(tmp_path: Path) -> dict[str, Any]:
    capture = datasets_root() / "fixtures" / "ipmi" / "2025-06-03" / "lichtmandce03-2025-06-03.txt.xz"
    with lzma.open(capture, "rt") as fh:  # the first run of `ipmitool sdr`, after the dataset's "Timestamp:" line
        dump = "".join(
            itertools.takewhile(lambda line: not line.startswith("Timestamp"), itertools.islice(fh, 1, None))
        )
    script = tmp_path / "ipmitool"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({dump!r})\n")
    script.chmod(0o755)
    return {"ipmitool": str(script)}


def infiniband_options(tmp_path: Path) -> dict[str, Any]:
    folder = tmp_path / "infiniband" / "mlx5_0" / "ports" / "1"
    (folder / "counters").mkdir(parents=True)
    (folder / "state").write_text("4: ACTIVE\n")
    for name in ("port_rcv_data", "port_xmit_data", "symbol_error", "link_downed", "port_rcv_errors"):
        (folder / "counters" / name).write_text("12345\n")
    return {"sysfs_root": str(tmp_path / "infiniband")}


OPTIONS = {
    "kernel_log": kernel_log_options,
    "host": lambda tmp_path: {},
    "smart": smart_options,
    "ipmi": ipmi_options,
    "infiniband": infiniband_options,
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_collector_contract(name: str, tmp_path: Path) -> None:
    assert name in COLLECTORS
    collector = create_collector(name, OPTIONS[name](tmp_path), CONTEXT)
    assert isinstance(collector, Collector) and collector.name == name
    items = [*collector.collect(), *collector.collect()]
    samples = [i for i in items if isinstance(i, tuple)]
    events = [i for i in items if isinstance(i, LogEvent)]
    problems = [i for i in items if isinstance(i, Problem)]
    assert len(samples) + len(events) + len(problems) == len(items)  # nothing else
    assert samples or events
    assert not problems
    for key, value in samples:
        metric, labels = parse_series_key(key)
        assert series_key(metric, labels) == key  # canonical: labels sorted, nothing lost
        assert metric in CATALOG_NAMES, metric
        assert isinstance(value, float | int) and math.isfinite(value), key
        if catalog.is_counter(metric):
            assert value >= 0, key
    for event in events:
        assert event.kind in KINDS and (event.host, event.cluster) == (CONTEXT.host, CONTEXT.cluster)
        assert math.isfinite(event.ts) and event.ts > 1e9
        assert decode(encode(event)) == event
    if samples:  # one tick of this collector goes into a TelemetryBatch and through the codec
        keys = tuple(dict.fromkeys(k for k, _ in samples))
        last = dict(samples)
        batch = TelemetryBatch("gpu-node-7", "dc1", np.array([1.8e9]), keys, np.array([[last[k] for k in keys]]))
        assert decode(encode(batch)).series == keys


def test_every_problem_label_is_short_and_stable(tmp_path: Path) -> None:
    """Problems become label values of vigil_collector_errors_total: short snake_case words."""
    broken = {
        "kernel_log": {"source": "file", "path": str(tmp_path / "absent.log"), "state_dir": None},
        "smart": {"smartctl": str(tmp_path / "absent"), "devices": ["/dev/sda"]},
        "ipmi": {"ipmitool": str(tmp_path / "absent")},
    }
    for name, options in broken.items():
        problems = [i for i in create_collector(name, options, CONTEXT).collect() if isinstance(i, Problem)]
        assert problems, name
        assert all(p.error.replace("_", "").isalpha() and p.error.islower() for p in problems), problems


def test_smart_fixture_files_are_json() -> None:
    for path in (Path(__file__).resolve().parents[1] / "fixtures" / "smart").glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict), path
