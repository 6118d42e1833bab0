"""The incident engine as timelines (Alertmanager's acceptance-test style) on a fake clock: correlation
by failure domain, bursts, grouping timers, inhibition, silences, maintenance windows, escalation,
and what people do to incidents."""

from __future__ import annotations

from pathlib import Path

import pytest
from vigil.alerting.engine import IncidentError
from vigil.alerting.matchers import parse_matchers
from vigil.alerting.reader import AlertReader

from tests.scenarios.engine_timeline import T0, Timeline, alert

PD = {"type": "pagerduty", "name": "pd", "routing_key": "0123456789abcdef0123456789abcdef"}
SLACK = {"type": "slack", "name": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/X"}


def xid48(at: float = 0.0) -> list:  # type: ignore[type-arg]
    gpu = {"host": "node-02", "gpu_index": "5", "at": T0 + at}
    return [
        alert("GpuXidFatal", xid="48", **gpu),  # type: ignore[arg-type]
        alert("GpuXidError", severity="warning", xid="63", **gpu),  # type: ignore[arg-type]
        alert("GpuEccDbeIncrease", **gpu),  # type: ignore[arg-type]
    ]


def test_xid48_is_one_incident_and_one_page(tmp_path: Path) -> None:
    t = Timeline(tmp_path)
    t.at(0, *xid48())
    t.until(3600)
    [incident] = t.store.incidents()
    assert incident.domain.key == "gpu:node-02/gpu5" and incident.severity == "critical"
    assert t.reasons() == [(0, "first")]  # at once: critical
    [page] = t.told()
    assert sorted(m["alertname"] for m in page.payload["members"]) == [
        "GpuEccDbeIncrease",
        "GpuXidError",
        "GpuXidFatal",
    ]
    assert page.key == incident.key and page.payload["priority"] == incident.priority > 0


def test_alerts_of_one_gpu_join_its_incident_and_followers_wait_for_group_interval(tmp_path: Path) -> None:
    t = Timeline(tmp_path)
    t.at(0, alert("GpuOverTemperature", host="node-01", gpu_index="2"))
    t.at(10, alert("GpuTelemetryAnomaly", severity="warning", host="node-01", gpu_index="2"))
    t.at(20, alert("GpuOverTemperature", host="node-03", gpu_index="1"))  # another GPU: its own incident
    t.until(299)
    assert t.reasons() == [(0, "first"), (20, "first")]
    t.until(301)  # group_interval (5 min) after the first page: the follower is told
    assert t.reasons() == [(0, "first"), (20, "first"), (300, "new_alerts_in_group")]
    assert len(t.store.incidents()) == 2


def test_a_warning_incident_waits_group_wait_and_a_critical_follower_sends_it_at_once(tmp_path: Path) -> None:
    t = Timeline(tmp_path)
    t.at(0, alert("TrainingStraggler", severity="warning", host="node-05", gpu_index="2", rank="42"))
    t.until(10)
    assert t.reasons() == []  # group_wait: 30 s for a warning
    t.at(12, alert("GpuOverTemperature", host="node-05", gpu_index="2"))
    assert t.reasons() == [(12, "first")]  # a critical alert in the group: its first page leaves at once
    assert len(t.told()[0].payload["members"]) == 2


def test_a_critical_alert_that_fires_and_resolves_within_one_batch_is_still_paged(tmp_path: Path) -> None:
    # A backlog drained after an outage holds both ends of a 2-minute XID: it was paged live, so here too.
    t = Timeline(tmp_path)
    gpu = {"host": "node-04", "gpu_index": "1", "xid": "79"}
    fired = alert("GpuXidFatal", **gpu)  # type: ignore[arg-type]
    resolved = alert("GpuXidFatal", "resolved", at=T0 + 120, **gpu)  # type: ignore[arg-type]
    straggler = {"host": "node-06", "gpu_index": "0", "rank": "3"}
    warned = alert("TrainingStraggler", severity="warning", **straggler)
    warning_over = alert("TrainingStraggler", "resolved", "warning", at=T0 + 20, **straggler)
    t.at(0, fired, warned, resolved, warning_over)
    t.until(3600)
    assert t.reasons() == [(0, "first"), (300, "resolved")]  # the warning was over within its group_wait: quiet
    assert [m["labels"]["host"] for m in t.told()[0].payload["members"]] == ["node-04"]
    assert sorted(i.state for i in t.store.incidents()) == ["resolved", "resolved"]


def test_repeat_interval_and_resolve(tmp_path: Path) -> None:
    config = {
        "notifiers": [{"type": "log", "name": "pager"}],
        "route": {"receiver": "default", "repeat_interval": "1h"},
    }
    t = Timeline(tmp_path, config)
    t.at(0, alert("GpuMissing", host="node-01", gpu_index="0"))
    t.until(3 * 3600 + 10)
    assert t.reasons() == [
        (0, "first"),
        (3600, "repeat_interval_elapsed"),
        (7200, "repeat_interval_elapsed"),
        (10800, "repeat_interval_elapsed"),
    ]
    t.at(3 * 3600 + 20, alert("GpuMissing", "resolved", host="node-01", gpu_index="0", at=T0 + 3 * 3600 + 20))
    t.until(4 * 3600)
    assert t.reasons()[-1] == (3 * 3600 + 300, "resolved") and t.told()[-1].action == "resolve"
    assert t.store.incidents()[0].state == "resolved"
    t.until(6 * 3600)
    assert len(t.told()) == 5  # nothing after the resolve


def test_a_burst_under_one_switch_is_one_incident_at_the_switch(tmp_path: Path) -> None:
    topology = {"switches": {"sw1": [f"node-{i:03d}" for i in range(150)]}, "gpus_per_node": 8}
    t = Timeline(tmp_path, topology=topology)
    storm = [alert("NodeLinkDown", host=f"node-{i:03d}", port=str(p)) for i in range(150) for p in range(4)]
    t.at(0, *storm[:300])  # the storm arrives over two polls
    t.at(1, *storm[300:])
    [incident] = t.store.incidents()
    assert incident.domain.key == "switch:sw1" and incident.title == "150 nodes alerting under switch sw1"
    assert incident.detail["gpus"] == 150 * 8 and incident.priority == 150 * 8 * 0.5
    assert t.reasons() == [(0, "first")]
    t.until(301)
    assert t.reasons() == [(0, "first"), (300, "new_alerts_in_group")]  # followers batched: one update


def test_young_node_incidents_are_merged_when_a_burst_shows_the_common_domain(tmp_path: Path) -> None:
    topology = {"racks": {"r1": ["n1", "n2", "n3", "n4", "n5"]}}
    t = Timeline(tmp_path, topology=topology)
    t.at(0, alert("HostDown", host="n1"))  # one node: its own incident, paged
    t.at(2, *(alert("HostDown", host=h) for h in ("n2", "n3", "n4")))  # four nodes of r1 in 10 s: a burst
    incidents = {i.domain.key: i for i in t.store.incidents(limit=10)}
    assert incidents["node:n1"].state == "merged" and incidents["node:n1"].merged_into == incidents["rack:r1"].id
    assert incidents["rack:r1"].state == "open"
    t.until(301)
    reasons = [(r.reason, r.action, r.key) for r in t.told()]
    assert reasons == [
        ("first", "trigger", incidents["node:n1"].key),
        ("merged", "resolve", incidents["node:n1"].key),  # the node's page is closed into the rack's ...
        ("first", "trigger", incidents["rack:r1"].key),  # ... which pages once, naming every node
    ]
    assert t.told()[-1].hosts == ["n1", "n2", "n3", "n4"]


TOPOLOGY = {"jobs": {"job-0": [f"node-0{i}" for i in range(1, 9)]}}


def test_a_gpu_off_the_bus_inhibits_its_telemetry_alerts_and_the_jobs_hang(tmp_path: Path) -> None:
    t = Timeline(tmp_path, topology=TOPOLOGY)
    t.at(0, alert("GpuXidFatal", xid="79", host="node-05", gpu_index="6"))
    t.at(5, alert("GpuMissing", host="node-05", gpu_index="6"))
    t.at(12, alert("TrainingHang", job_id="job-0"))
    t.until(900)
    [incident] = t.store.incidents()
    members = {m.fingerprint: m.role for m in t.store.members(incident.id)}
    assert sorted(members.values()) == ["member", "symptom", "symptom"]
    assert t.reasons() == [(0, "first")]  # one page; the symptoms are on the incident, muted
    hang = next(s for s in t.store.of_incident(incident.id) if s.alert.labels["alertname"] == "TrainingHang")
    assert hang.muted == "inhibited:fatal-xid-hangs-the-job"
    trail = AlertReader(t.store.path).history(hang.alert.fingerprint)[0]["stages"]  # type: ignore[arg-type]
    inhibit = next(s for s in trail if s["stage"] == "inhibit")
    assert inhibit["decision"] == "mute" and inhibit["detail"]["rule"] == "fatal-xid-hangs-the-job"


def test_a_silence_mutes_and_its_expiry_lets_the_incident_be_told(tmp_path: Path) -> None:
    t = Timeline(tmp_path)
    silence = t.engine.silence(parse_matchers(['host="node-07"']), T0, T0 + 3600, "alice", "replacing PSU")
    t.at(10, alert("GpuOverTemperature", host="node-07", gpu_index="1"))
    t.until(600)
    assert t.reasons() == []
    [stored] = t.store.firing()
    assert stored.muted == f"silence:{silence.id}"
    assert t.engine.expire_silence(silence.id, "bob")
    t.until(1200)
    assert t.reasons() == [(610, "first")]  # looked at every group_interval while muted: told once it is not
    [kept] = t.store.silences()
    assert kept.expired_by == "bob" and kept.state(t.clock.now()) == "expired"  # kept for audit


def test_a_node_the_robot_drained_is_quiet_until_its_run_ends_but_a_new_xid_still_pages(tmp_path: Path) -> None:
    t = Timeline(tmp_path)
    t.at(0, alert("GpuXidFatal", xid="48", host="node-02", gpu_index="5"))
    [xid] = t.store.incidents()
    run = {"id": "rr-1", "incident_key": xid.key, "incident_id": xid.id, "runbook": "xid-48-double-bit-ecc",
           "mode": "execute", "state": "verifying", "labels": {"host": "node-02"}, "plan": {},
           "created_at": T0, "updated_at": T0, "next_at": None, "detail": {}}
    drain = {"key": "rr-1/steps/0", "run_id": "rr-1", "phase": "steps", "idx": 0, "name": "drain",
             "action": "slurm.drain", "params": {}, "target": "node-02", "job": None, "state": "succeeded",
             "attempts": 1, "result": {}}
    assert t.store.create_run(run, [drain])
    # The drained node's idle GPUs all look anomalous: muted, in the incident being remediated, no burst.
    t.at(10, *(alert("GpuTelemetryAnomaly", "firing", "warning", host="node-02", gpu_index=str(g)) for g in range(8)))
    t.until(600)
    assert t.reasons() == [(0, "first")] and [i.id for i in t.store.incidents()] == [xid.id]
    assert {s.muted for s in t.store.firing() if s.alert.labels["alertname"] == "GpuTelemetryAnomaly"} == {
        "remediation:rr-1"
    }
    t.at(620, alert("GpuXidFatal", xid="79", host="node-02", gpu_index="3"))  # a new XID is news: paged at once
    assert t.reasons()[-1] == (620, "first")
    t.store.update_run("rr-1", state="succeeded")  # back in service: the anomalies are no longer muted
    t.until(1500)
    assert [r for _, r in t.reasons()] == ["first", "first"]  # still firing, they wait for the incident's repeat
    assert len(t.store.incidents()) == 2


def test_a_recurring_maintenance_window_mutes_its_nodes_only(tmp_path: Path) -> None:
    config = {
        "notifiers": [{"type": "log", "name": "pager"}],
        "time_intervals": [
            {
                "name": "thursday-night",
                "time_intervals": [{"weekdays": ["thursday"], "times": [{"start_time": "00:00", "end_time": "02:00"}]}],
            }
        ],
        "maintenance": [
            {"name": "rack-3-firmware", "matchers": ['host=~"node-0[1-4]"'], "time_intervals": ["thursday-night"]}
        ],
    }
    t = Timeline(tmp_path, config)  # T0 is Thursday 00:00 UTC
    t.at(0, alert("GpuMissing", host="node-02", gpu_index="0"), alert("GpuMissing", host="node-09", gpu_index="0"))
    t.until(3600)
    assert [told.hosts for told in t.told()] == [["node-09"]]
    t.until(2 * 3600 + 300)  # the window ends at 02:00; the muted incident is told at its next look
    assert [told.hosts for told in t.told()] == [["node-09"], ["node-02"]]


ESCALATION = {
    "notifiers": [PD, SLACK, {"type": "log", "name": "manager"}],
    "receivers": [
        {"name": "primary", "notifiers": ["pd"]},
        {"name": "secondary", "notifiers": ["slack"]},
        {"name": "boss", "notifiers": ["manager"]},
    ],
    "route": {"receiver": "primary", "escalation": "gpu"},
    "escalation_policies": [
        {
            "name": "gpu",
            "assign": "gpu-oncall",
            "levels": [{"after": "15m", "receivers": ["secondary"]}, {"after": "30m", "receivers": ["boss"]}],
        }
    ],
    "oncall": [{"name": "gpu-oncall", "users": ["alice", "bob"], "shift": "1d", "start": "2025-12-31T00:00:00Z"}],
}


def test_an_unacknowledged_incident_escalates_level_by_level(tmp_path: Path) -> None:
    t = Timeline(tmp_path, ESCALATION)
    t.at(0, alert("GpuXidFatal", xid="79", host="node-05", gpu_index="6"))
    t.until(3 * 3600)
    assert [(round(x.at), x.receiver, x.reason) for x in t.told()] == [
        (0, "pd", "first"),
        (900, "slack", "escalated"),
        (2700, "manager", "escalated"),
    ]
    incident = t.store.incidents()[0]
    assert incident.assignee == "bob" and incident.escalation_level == 2 and incident.next_escalation_at is None
    assert [e.kind for e in t.store.timeline(incident.id)].count("escalated") == 2


def test_acknowledge_stops_escalation_and_is_sent_to_pagerduty_as_such(tmp_path: Path) -> None:
    t = Timeline(tmp_path, ESCALATION)
    t.at(0, alert("GpuXidFatal", xid="79", host="node-05", gpu_index="6"))
    incident = t.store.incidents()[0]
    t.until(600)
    t.engine.acknowledge(incident.id, "alice")
    t.until(4 * 3600)
    assert [(x.receiver, x.reason, x.action) for x in t.told()] == [
        ("pd", "first", "trigger"),
        ("pd", "acknowledged", "acknowledge"),  # the same dedup key: PagerDuty acknowledges its alert
    ]
    assert len({x.key for x in t.told()}) == 1
    t.engine.note(incident.id, "alice", "reseated the GPU")
    t.engine.assign(incident.id, "alice", "carol")
    t.engine.resolve(incident.id, "alice", "fixed")
    t.engine.reopen(incident.id, "bob", "it came back")
    kinds = [(e.kind, e.actor) for e in t.store.timeline(incident.id) if e.actor != "vigil"]
    assert kinds == [
        ("acknowledged", "alice"),
        ("note", "alice"),
        ("assigned", "alice"),
        ("resolved", "alice"),
        ("reopened", "bob"),
    ]
    assert [(x.reason, x.action) for x in t.told()][-2:] == [("resolved", "resolve"), ("reopened", "trigger")]
    assert t.store.incident(incident.id).assignee == "carol"  # type: ignore[union-attr]


def test_incident_actions_refuse_what_the_state_does_not_allow(tmp_path: Path) -> None:
    t = Timeline(tmp_path)
    t.at(0, alert("GpuMissing", host="node-01", gpu_index="0"))
    incident = t.store.incidents()[0]
    with pytest.raises(IncidentError, match="cannot be reopened"):
        t.engine.reopen(incident.id, "alice")
    with pytest.raises(IncidentError, match="no incident 99"):
        t.engine.acknowledge(99, "alice")
    with pytest.raises(IncidentError, match="actor"):
        t.engine.acknowledge(incident.id, " ")
