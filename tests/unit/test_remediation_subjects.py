"""What a notification asks the robot to act on (``subjects_of``): an incident that spans hosts is
planned per host, each from its own members, so a runbook's ``{host}`` is never another node's."""

from __future__ import annotations

from datetime import UTC, datetime

from vigil.alerting.notifiers.base import Member, Notification
from vigil.alerting.runbooks.runner import subjects_of

AT = datetime(2026, 12, 6, tzinfo=UTC)


def member(name: str, severity: str = "critical", **labels: str) -> Member:
    return Member(alertname=name, labels={"alertname": name, **labels}, severity=severity, starts_at=AT)  # type: ignore[arg-type]


def notification(*members: Member) -> Notification:
    return Notification(
        dedup_key="vigil-job-1", action="trigger", reason="first", summary="s", severity="critical",
        source="job-0", timestamp=AT, incident_id="7", members=members,
    )


def test_an_incident_on_one_host_is_one_subject_with_its_own_key() -> None:
    [subject] = subjects_of(notification(
        member("GpuEccDbeIncrease", host="node-02", gpu_index="5"),
        member("GpuXidFatal", host="node-02", gpu_index="5", xid="48"),
    ))
    assert subject.key == "vigil-job-1" and subject.incident_id == 7
    assert subject.labels["xid"] == "48" and subject.labels["host"] == "node-02"
    assert subject.labels["incident"] == "7" and subject.labels["incident_key"] == "vigil-job-1"


def test_a_job_incident_over_several_hosts_is_planned_per_host_from_that_host_s_members() -> None:
    # The thermal alert came first; the XID 79 is node-05's. Planning the XID with the first member's
    # host would drain and reboot the wrong node.
    subjects = subjects_of(notification(
        member("GpuOverTemperature", host="node-01", gpu_index="2", job_id="job-0"),
        member("TrainingStraggler", "warning", host="node-05", gpu_index="2", rank="42", job_id="job-0"),
        member("GpuXidFatal", host="node-05", gpu_index="6", xid="79"),
        member("TrainingHang", job_id="job-0"),
    ))
    by_host = {s.labels["host"]: s for s in subjects}
    assert set(by_host) == {"node-01", "node-05"}
    assert by_host["node-05"].labels["xid"] == "79" and by_host["node-05"].labels["gpu_index"] == "6"
    assert by_host["node-05"].key == "vigil-job-1@node-05"
    assert "xid" not in by_host["node-01"].labels and by_host["node-01"].labels["gpu_index"] == "2"
    assert all(s.labels["job_id"] == "job-0" for s in subjects)  # the job-wide member goes with each host
