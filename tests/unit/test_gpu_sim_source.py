"""sim_gpu: the real NVML collector over one simulated node's GPUs."""

from __future__ import annotations

from typing import Any

import pytest
from vigil.collectors.base import Collector, CollectorContext, Problem
from vigil.collectors.registry import create_collector
from vigil.collectors.sim import gpu_source

from vigil.clock import FakeClock
from vigil.errors import ConfigError
from vigil.events import LogEvent

CTX = CollectorContext(host="gpu-host-7", cluster="sim")


def _tick(collector: Collector, clock: FakeClock) -> tuple[dict[str, float], list[LogEvent], list[Problem]]:
    clock.advance(1.0)
    items: list[Any] = list(collector.collect())
    samples = {i[0]: i[1] for i in items if isinstance(i, tuple)}
    return samples, [i for i in items if isinstance(i, LogEvent)], [i for i in items if isinstance(i, Problem)]


def test_eight_gpus_with_identity_and_every_field_the_collector_reads() -> None:
    clock = FakeClock()
    collector = gpu_source.create({}, CTX, clock=clock)
    samples, events, problems = _tick(collector, clock)
    assert collector.name == "sim_gpu" and not events
    infos = sorted(k for k in samples if k.startswith("gpu_info"))
    assert len(infos) == 8 and all('model="NVIDIA H100 80GB HBM3"' in k and 'uuid="GPU-' in k for k in infos)
    per_gpu = {k.split("{")[0] for k in samples if 'gpu_index="7"' in k}
    assert len(per_gpu) >= 25  # utilisation, memory, clocks, temperatures, power, energy, ECC, rows, NVLink...
    assert 0.5 < samples['gpu_utilization_ratio{gpu_index="0"}'] <= 1.0
    assert 55.0 < samples['gpu_temperature_celsius{gpu_index="0"}'] < 75.0
    assert 500.0 < samples['gpu_power_watts{gpu_index="0"}'] < 700.0
    # H100s remap rows instead of retiring pages: reported once per GPU, then not asked again
    assert {p.error for p in problems} == {"not_supported"} and len(problems) == 8 * 3
    _, _, problems = _tick(collector, clock)
    assert problems == []


def test_energy_integrates_power_over_time() -> None:
    clock = FakeClock()
    collector = gpu_source.create({"gpus": 2}, CTX, clock=clock)
    first, _, _ = _tick(collector, clock)
    clock.advance(9.0)  # ten seconds between the two collections
    second, _, _ = _tick(collector, clock)
    key = 'gpu_energy_joules_total{gpu_index="1"}'
    watts = second['gpu_power_watts{gpu_index="1"}']
    assert second[key] - first[key] == pytest.approx(10.0 * watts)


def test_thermal_fault_heats_throttles_and_is_flagged() -> None:
    clock = FakeClock()
    fault = {"kind": "thermal", "at": 0.5, "duration": 60, "host": "node-00", "gpu_index": 2}
    collector = gpu_source.create({"gpus": 4, "faults": [fault]}, CTX, clock=clock)
    for _ in range(12):
        samples, _, _ = _tick(collector, clock)
    assert samples['gpu_temperature_celsius{gpu_index="2"}'] > 85.0
    assert samples['gpu_throttle{gpu_index="2",reason="sw_thermal_slowdown"}'] == 1.0
    assert samples['gpu_throttle{gpu_index="1",reason="sw_thermal_slowdown"}'] == 0.0
    assert samples['gpu_sm_clock_hertz{gpu_index="2"}'] < 0.7 * samples['gpu_sm_clock_hertz{gpu_index="1"}']


def test_gpu_falling_off_the_bus_is_an_xid_event_then_a_lost_gpu_until_it_returns() -> None:
    clock = FakeClock()
    fault = {"kind": "xid79", "at": 1.5, "duration": 3, "host": "node-00", "gpu_index": 5}
    collector = gpu_source.create({"faults": [fault]}, CTX, clock=clock)
    _tick(collector, clock)
    samples, events, problems = _tick(collector, clock)
    assert [(e.code, e.gpu_index, e.source, e.host) for e in events] == [(79, 5, "nvml", "gpu-host-7")]
    assert events[0].gpu_pci == "0000:ab:00.0" and events[0].gpu_uuid
    assert [p.error for p in problems] == ["gpu_lost"]
    assert not any('gpu_index="5"' in k and "info" not in k for k in samples)
    assert 'gpu_power_watts{gpu_index="4"}' in samples
    for _ in range(3):
        samples, events, problems = _tick(collector, clock)
    assert 'gpu_power_watts{gpu_index="5"}' in samples and not events


def test_registered_by_name_and_options_validated() -> None:
    collector = create_collector("sim_gpu", {"gpus": 2, "seed": 3}, CTX)
    assert collector.name == "sim_gpu"
    with pytest.raises(ConfigError, match=r"agent\.collectors\.sim_gpu\.gpus"):
        gpu_source.create({"gpus": 0}, CTX)
    with pytest.raises(ConfigError, match="faults"):
        gpu_source.create({"faults": [{"kind": "thermal", "at": 1, "host": "node-03"}]}, CTX)
