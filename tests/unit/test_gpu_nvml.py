"""The NVML collector over recordings: conversions, MIG, XID events, not-supported memory, lost GPUs,
init retry, the recording format, the pynvml adapter's error translation, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.gpu import nvml
from vigil.collectors.gpu.common import THROTTLE_REASONS
from vigil.collectors.gpu.nvml import NvmlCollector, NvmlOptions
from vigil.collectors.gpu.nvml_pynvml import PynvmlReader
from vigil.collectors.gpu.nvml_reader import NvmlError, RecordedNvml, RecordingReader

from vigil.clock import FakeClock
from vigil.errors import ConfigError
from vigil.events import LogEvent

SCRIPTED = Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "scripted_h100.json"
CTX = CollectorContext(host="node-a", cluster="c1")
MIB = float(1 << 20)


def _split(items: list[Any]) -> tuple[dict[str, float], list[LogEvent], list[Problem]]:
    samples = {i[0]: i[1] for i in items if isinstance(i, tuple)}
    return samples, [i for i in items if isinstance(i, LogEvent)], [i for i in items if isinstance(i, Problem)]


def _scripted(**calls: Any) -> dict[str, Any]:
    doc = json.loads(SCRIPTED.read_text())
    doc["calls"].update({k.replace("__", " "): v for k, v in calls.items()})
    return doc


def test_scripted_h100_converts_to_base_units_and_reports_mig_slices() -> None:
    collector = NvmlCollector(RecordedNvml.load(SCRIPTED), CTX, clock=FakeClock())
    samples, events, _ = _split(list(collector.collect()))
    assert samples['gpu_utilization_ratio{gpu_index="0"}'] == 1.0
    assert samples['gpu_memory_utilization_ratio{gpu_index="0"}'] == pytest.approx(0.11)
    assert samples['gpu_memory_free_bytes{gpu_index="0"}'] == 61263 * MIB
    assert samples['gpu_memory_clock_hertz{gpu_index="0"}'] == 2619e6
    assert samples['gpu_power_watts{gpu_index="1"}'] == pytest.approx(444.72)
    assert samples['gpu_energy_joules_total{gpu_index="0"}'] == pytest.approx(1234567.89)
    assert samples['gpu_memory_temperature_celsius{gpu_index="1"}'] == 58.0
    assert samples['gpu_nvlink_errors_total{gpu_index="0",kind="replay"}'] == 0.0
    assert samples['gpu_remapped_rows{cause="uncorrectable",gpu_index="0"}'] == 0.0
    # MIG: one series set per GPU instance, identity on its own gpu_info
    assert samples['gpu_memory_used_bytes{gpu_index="1",mig_instance="9"}'] == 9 * MIB
    assert 'gpu_info{gpu_index="1",mig_instance="10",uuid="MIG-00000000-0000-0000-0000-00000000000a"}' in samples
    info = [k for k in samples if k.startswith("gpu_info") and 'gpu_index="0"' in k]
    assert info == [
        'gpu_info{driver_version="590.48.01",gpu_index="0",model="NVIDIA H100 80GB HBM3",pci_bus_id="0000:00:09.0",'
        'serial="0000000000000",uuid="GPU-00000000-0000-0000-0000-000000000000"}'
    ]
    assert not events  # the first poll of the event set is empty in the script


def test_throttle_reasons_are_decoded_into_named_flags() -> None:
    collector = NvmlCollector(RecordedNvml(_scripted(throttle_reasons__0=[0x24])), CTX)
    samples, _, _ = _split(list(collector.collect()))
    assert samples['gpu_throttle_reasons{gpu_index="0"}'] == float(0x24)
    on = {k for k, v in samples.items() if k.startswith("gpu_throttle{") and 'gpu_index="0"' in k and v == 1.0}
    assert on == {
        'gpu_throttle{gpu_index="0",reason="sw_power_cap"}',
        'gpu_throttle{gpu_index="0",reason="sw_thermal_slowdown"}',
    }


def test_throttle_bits_are_nvmls() -> None:
    for bit, reason in THROTTLE_REASONS:
        camel = "".join(part.capitalize() for part in reason.split("_"))  # sw_power_cap -> SwPowerCap
        assert getattr(pynvml, f"nvmlClocksEventReason{camel}") == bit, reason
        assert getattr(pynvml, f"nvmlClocksThrottleReason{camel}") == bit, reason


def test_xid_event_carries_the_gpus_identity() -> None:
    clock = FakeClock()
    collector = NvmlCollector(RecordedNvml.load(SCRIPTED), CTX, clock=clock)
    list(collector.collect())
    clock.advance(10)
    _, events, _ = _split(list(collector.collect()))
    assert len(events) == 1
    event = events[0]
    assert (event.kind, event.code, event.source, event.gpu_index) == ("xid", 48, "nvml", 0)
    assert event.gpu_uuid == "GPU-00000000-0000-0000-0000-000000000000" and event.gpu_pci == "0000:00:09.0"
    assert (event.ts, event.host, event.cluster) == (clock.now(), "node-a", "c1")


def test_not_supported_is_reported_once_and_not_asked_again() -> None:
    reader = RecordedNvml.load(SCRIPTED)
    collector = NvmlCollector(reader, CTX)
    _, _, first = _split(list(collector.collect()))
    calls_first = reader.calls_made
    _, _, second = _split(list(collector.collect()))
    unsupported = [p for p in first if p.error == "not_supported"]
    assert len(unsupported) == 16 and len({p.detail for p in unsupported}) == 16
    assert not [p for p in second if p.error == "not_supported"]
    # the second collection skips the 16 unsupported calls and the identity/registration reads
    assert reader.calls_made - calls_first < calls_first - 16


def test_a_lost_gpu_stops_only_its_own_reads_and_comes_back() -> None:
    reader = RecordedNvml(_scripted(temperature__1=[{"error": "gpu_lost", "detail": "GPU is lost"}, 50]))
    collector = NvmlCollector(reader, CTX)
    samples, _, problems = _split(list(collector.collect()))
    assert [p.error for p in problems].count("gpu_lost") == 1
    assert 'gpu_power_watts{gpu_index="1"}' not in samples  # read after the temperature: skipped
    assert samples['gpu_power_watts{gpu_index="0"}'] == pytest.approx(588.39)  # the other GPU is whole
    samples, _, problems = _split(list(collector.collect()))
    assert samples['gpu_temperature_celsius{gpu_index="1"}'] == 50.0 and "gpu_lost" not in {p.error for p in problems}


def test_other_errors_are_reported_every_time_and_retried() -> None:
    reader = RecordedNvml(_scripted(power__0=[{"error": "nvml_error", "detail": "Unknown Error"}] * 2 + [500000]))
    collector = NvmlCollector(reader, CTX)
    for _ in range(2):
        samples, _, problems = _split(list(collector.collect()))
        assert any(p.error == "nvml_error" and "power on gpu 0" in p.detail for p in problems)
        assert 'gpu_power_watts{gpu_index="0"}' not in samples
    samples, _, _ = _split(list(collector.collect()))
    assert samples['gpu_power_watts{gpu_index="0"}'] == 500.0


def test_init_failure_is_a_problem_retried_after_the_interval() -> None:
    clock = FakeClock()
    reader = RecordedNvml(_scripted(init=[{"error": "driver_not_loaded", "detail": "Driver Not Loaded"}, None]))
    collector = NvmlCollector(reader, CTX, NvmlOptions(init_retry=30), clock)
    for _ in range(3):
        items = list(collector.collect())
        assert [type(i) for i in items] == [Problem] and items[0].error == "driver_not_loaded"  # type: ignore[union-attr]
        clock.advance(10)
    assert reader.calls_made == 1  # one attempt within 30 s
    clock.advance(1)
    samples, _, _ = _split(list(collector.collect()))
    assert samples['gpu_temperature_celsius{gpu_index="0"}'] == 59.0


def test_the_driver_going_away_drops_the_session_and_inits_again() -> None:
    clock = FakeClock()
    reader = RecordedNvml(_scripted(device_count=[2, {"error": "uninitialized"}, 2]))
    collector = NvmlCollector(reader, CTX, NvmlOptions(init_retry=5), clock)
    assert _split(list(collector.collect()))[0]
    assert [p.error for p in collector.collect()] == ["uninitialized"]  # type: ignore[union-attr]
    calls = reader.calls_made
    assert [p.error for p in collector.collect()] == ["uninitialized"]  # type: ignore[union-attr]  # still down
    assert reader.calls_made == calls  # and NVML is not touched until the retry interval has passed
    clock.advance(6)
    assert _split(list(collector.collect()))[0]


def test_a_recording_replays_what_was_recorded() -> None:
    recorder = RecordingReader(RecordedNvml.load(SCRIPTED), source="test")
    original = [list(NvmlCollector(recorder, CTX, clock=FakeClock()).collect())]  # type: ignore[arg-type]
    replay = RecordedNvml(json.loads(json.dumps(recorder.dump())))
    assert [list(NvmlCollector(replay, CTX, clock=FakeClock()).collect())] == original
    assert recorder.dump()["calls"]["memory 1 mig0"] == [[40448 * MIB, 11091 * MIB, 29357 * MIB]]


def test_cli_prints_one_collection(capsys: pytest.CaptureFixture[str]) -> None:
    assert nvml.main(["--recording", str(SCRIPTED)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# collection 1"
    assert 'gpu_power_watts{gpu_index="0"} 588.39' in out
    assert any(line.startswith("PROBLEM not_supported: retired_pages_sbe on gpu 0") for line in out)


def test_create_validates_options() -> None:
    assert nvml.create({"recording": str(SCRIPTED)}, CTX).name == "nvml"
    with pytest.raises(ConfigError, match=r"agent\.collectors\.nvml\.init_rety: unknown key"):
        nvml.create({"init_rety": 5}, CTX)
    with pytest.raises(ConfigError, match=r"agent\.collectors\.nvml\.recording: cannot load"):
        nvml.create({"recording": "/nonexistent/recording.json"}, CTX)


# --------------------------------------------------------------------------- the pynvml adapter


def _fake_pynvml(**overrides: Any) -> SimpleNamespace:
    """pynvml's constants and exception classes, with the calls a test needs replaced."""
    module = SimpleNamespace(**{k: getattr(pynvml, k) for k in dir(pynvml) if not k.startswith("__")})
    module.nvmlInit = lambda: None
    for name, fn in overrides.items():
        setattr(module, name, fn)
    return module


def _reader(module: SimpleNamespace) -> PynvmlReader:
    reader = PynvmlReader()
    reader._nv = module  # type: ignore[assignment]
    reader._labels = {pynvml.NVML_ERROR_NOT_SUPPORTED: "not_supported", pynvml.NVML_ERROR_GPU_IS_LOST: "gpu_lost"}
    reader._labels[pynvml.NVML_ERROR_TIMEOUT] = "timeout"
    return reader


def test_pynvml_errors_become_labelled_nvml_errors() -> None:
    def lost(handle: Any) -> Any:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    reader = _reader(_fake_pynvml(nvmlDeviceGetHandleByIndex=lambda i: f"h{i}", nvmlDeviceGetPowerUsage=lost))
    with pytest.raises(NvmlError) as caught:
        reader.power(0)
    assert caught.value.label == "gpu_lost"


def test_pynvml_field_values_skip_failed_fields_and_raise_when_all_fail() -> None:
    def values(handle: Any, ids: list[int]) -> list[Any]:
        out = []
        for i in ids:
            ok = i != pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL
            value = SimpleNamespace(ullVal=7 if ok else 0)
            out.append(
                SimpleNamespace(
                    nvmlReturn=pynvml.NVML_SUCCESS if ok else pynvml.NVML_ERROR_NOT_SUPPORTED,
                    valueType=pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
                    value=value,
                )
            )
        return out

    reader = _reader(_fake_pynvml(nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetFieldValues=values))
    assert reader.nvlink_errors(0) == {"crc_flit": 7.0, "crc_data": 7.0, "recovery": 7.0}
    with pytest.raises(NvmlError) as caught:
        reader._field_values(0, {"replay": pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL})
    assert caught.value.label == "not_supported"


def test_pynvml_xid_events_drain_until_timeout() -> None:
    queue = [SimpleNamespace(eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=79, device="h3")]

    def wait(event_set: Any, timeout_ms: int) -> Any:
        assert timeout_ms == 0  # never blocks a collection
        if not queue:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
        return queue.pop()

    registered: list[Any] = []
    module = _fake_pynvml(
        nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
        nvmlEventSetCreate=lambda: "set",
        nvmlDeviceRegisterEvents=lambda h, kinds, s: registered.append((h, kinds, s)),
        nvmlEventSetWait=wait,
        nvmlDeviceGetIndex=lambda h: int(h[1:]),
    )
    reader = _reader(module)
    assert reader.xid_events() == []  # nothing registered yet
    reader.register_xid_events(3)
    assert registered == [("h3", pynvml.nvmlEventTypeXidCriticalError, "set")]
    events = reader.xid_events()
    assert [(e.gpu, e.code) for e in events] == [(3, 79)] and reader.xid_events() == []
