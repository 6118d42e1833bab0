"""Scoring a run: attribution of pages to injected faults, latency, and unattributed noise."""

from __future__ import annotations

from vigil.cli.report import Notification, score_run
from vigil.events import FaultInjection

T0 = 1_790_000_000.0


def page(at: float, **labels: str) -> Notification:
    return Notification(T0 + at, "firing", "fp-" + "-".join(labels.values()), labels, "first")


def test_pages_are_attributed_by_shared_identity_and_time() -> None:
    faults = [
        FaultInjection("f1", "thermal", {"host": "node-01", "gpu_index": "2"}, T0 + 10, None),
        FaultInjection("f1", "thermal", {"host": "node-01", "gpu_index": "2"}, T0 + 10, T0 + 70),
        FaultInjection("f2", "xid79", {"host": "node-05", "gpu_index": "6"}, T0 + 60, T0 + 85, {"job_id": "job-0"}),
        FaultInjection("f3", "straggler", {"job_id": "job-0", "rank": "42"}, T0 + 200, T0 + 210),
    ]
    pages = [
        page(13.5, alertname="GpuTelemetryAnomaly", host="node-01", gpu_index="2"),
        page(14.0, alertname="GpuOverTemperature", host="node-01", gpu_index="2"),
        page(61.0, alertname="GpuXid", host="node-05", gpu_index="6"),
        page(70.0, alertname="TrainingHang", job_id="job-0"),  # disturbed job of f2
        page(30.0, alertname="GpuTelemetryAnomaly", host="node-01", gpu_index="3"),  # other GPU: noise
        page(5.0, alertname="GpuTelemetryAnomaly", host="node-01", gpu_index="2"),  # before the fault
    ]
    report = score_run(faults, pages)
    by_id = {row["fault_id"]: row for row in report["faults"]}
    assert by_id["f1"]["detected"] and by_id["f1"]["latency_s"] == 3.5
    assert by_id["f1"]["alerts"] == ["GpuOverTemperature", "GpuTelemetryAnomaly"]
    assert by_id["f1"]["ended_at"] == T0 + 70
    assert by_id["f2"]["latency_s"] == 1.0 and "TrainingHang" in by_id["f2"]["alerts"]
    assert not by_id["f3"]["detected"] and by_id["f3"]["latency_s"] is None
    assert report["false_alerts"] == 2
    assert report["notifications"] == 6


def test_a_job_wide_alert_is_attributed_but_does_not_time_a_gpu_fault() -> None:
    thermal = FaultInjection("f1", "thermal", {"host": "node-01", "gpu_index": "2"}, T0, T0 + 60, {"job_id": "job-0"})
    hang = FaultInjection("f2", "hang", {"job_id": "job-0"}, T0, T0 + 30)
    pages = [
        page(1.0, alertname="TrainingHang", job_id="job-0"),  # the hang's page, not the thermal's
        page(4.0, alertname="GpuOverTemperature", host="node-01", gpu_index="2"),
    ]
    report = score_run([thermal, hang], pages)
    by_id = {row["fault_id"]: row for row in report["faults"]}
    assert by_id["f1"]["latency_s"] == 4.0 and by_id["f1"]["alerts"] == ["GpuOverTemperature", "TrainingHang"]
    assert by_id["f2"]["latency_s"] == 1.0
    assert report["false_alerts"] == 0


def test_an_incident_names_every_fault_its_members_name_and_only_pages_count_as_pages() -> None:
    xid48 = FaultInjection("f1", "xid48", {"host": "node-02", "gpu_index": "5"}, T0, T0 + 20)
    members = (
        {"alertname": "GpuXidFatal", "host": "node-02", "gpu_index": "5", "xid": "48"},
        {"alertname": "GpuXidError", "host": "node-02", "gpu_index": "5", "xid": "63"},
    )
    notes = [
        Notification(T0 + 0.1, "firing", "7", members[0], "first", "key-7", members[:1]),
        Notification(T0 + 300, "firing", "7", members[0], "new_alerts_in_group", "key-7", members),  # an update
        Notification(T0 + 600, "resolved", "7", members[0], "resolved", "key-7", members),
    ]
    report = score_run([xid48], notes)
    [row] = report["faults"]
    assert row["pages"] == 1 and row["incidents"] == ["7"] and row["latency_s"] == 0.1
    assert (report["incidents"], report["notifications"], report["false_alerts"]) == (1, 3, 0)
