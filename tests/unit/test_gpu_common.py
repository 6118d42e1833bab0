"""What the GPU sources share: PCI ids, label values, series keys."""

from __future__ import annotations

import pytest
from vigil.collectors.base import Collector, CollectorContext
from vigil.collectors.gpu.common import SeriesKeys, clean_label_value, gpu_labels, info_sample, normalise_pci
from vigil.collectors.registry import create_collector

from vigil.events import parse_series_key


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00000000:18:00.0", "0000:18:00.0"),  # NVML and nvidia-smi
        ("0000:18:00.0", "0000:18:00.0"),  # lspci and the kernel
        ("00000000:0C:00.0", "0000:0c:00.0"),
        ("00000001:AB:1F.3", "0001:ab:1f.3"),
        ("18:00.0", "0000:18:00.0"),
        ("not a pci id", "not a pci id"),
    ],
)
def test_pci_ids_take_one_form(raw: str, expected: str) -> None:
    assert normalise_pci(raw) == expected


def test_label_values_never_break_a_series_key() -> None:
    assert clean_label_value(' NVIDIA "H100", 80GB {x=1}\n') == "NVIDIA _H100__ 80GB _x_1_"
    key, _ = info_sample(SeriesKeys(gpu_labels(0)), {"model": 'A,"B"', "serial": ""})
    assert parse_series_key(key) == ("gpu_info", {"gpu_index": "0", "model": "A__B_"})


def test_series_keys_are_canonical_and_cached() -> None:
    keys = SeriesKeys(gpu_labels(3, mig_instance="9", pod="p-1", namespace=""))
    first = keys("gpu_throttle", reason="hw_slowdown")
    assert first == 'gpu_throttle{gpu_index="3",mig_instance="9",pod="p-1",reason="hw_slowdown"}'
    assert keys("gpu_throttle", reason="hw_slowdown") is first


@pytest.mark.parametrize("name", ["nvml", "dcgm", "nvidia_smi", "sim_gpu"])
def test_each_gpu_collector_is_created_by_its_registered_name(name: str) -> None:
    collector = create_collector(name, {}, CollectorContext(host="h"))
    assert isinstance(collector, Collector) and collector.name == name
