"""The routing tree with Alertmanager's semantics, and Alertmanager config pasted into Vigil's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner
from vigil.alerting.config import AlertingConfig
from vigil.alerting.routing import RouteConfig, build_tree
from vigil.alerting.topology import load_topology

from vigil.cli.app import build_app
from vigil.config import validate
from vigil.errors import ConfigError

TREE = {
    "receiver": "default",
    "group_by": ["alertname"],
    "group_wait": "10s",
    "routes": [
        {"matchers": ['team="gpu"'], "receiver": "gpu", "continue": True, "group_interval": "1m"},
        {"match": {"team": "gpu"}, "match_re": {"severity": "critical|page"}, "receiver": "gpu-pager"},
        {
            "matchers": ['job_id=~"llm-.*"'],
            "receiver": "ml",
            "group_by": ["..."],
            "routes": [{"matchers": ['severity="info"'], "receiver": "ml-quiet"}],
        },
    ],
}


def routes(labels: dict[str, str]) -> list[tuple[str, str]]:
    tree = build_tree(RouteConfig.model_validate(TREE))
    return [(r.id, r.settings.receiver) for r in tree.match(labels)]


def test_first_match_wins_unless_continue_and_the_root_keeps_the_rest() -> None:
    assert routes({"team": "gpu", "severity": "critical"}) == [("root/0", "gpu"), ("root/1", "gpu-pager")]
    assert routes({"team": "gpu", "severity": "warning"}) == [("root/0", "gpu")]
    assert routes({"job_id": "llm-70b", "severity": "info"}) == [("root/2/0", "ml-quiet")]
    assert routes({"job_id": "llm-70b"}) == [("root/2", "ml")]
    assert routes({"team": "storage"}) == [("root", "default")]


def test_children_inherit_what_they_do_not_set() -> None:
    tree = build_tree(RouteConfig.model_validate(TREE))
    gpu, pager, ml = tree.children
    assert (gpu.settings.group_wait, gpu.settings.group_interval, gpu.settings.group_by) == (10.0, 60.0, ("alertname",))
    assert pager.settings.group_interval == 300.0 and pager.settings.repeat_interval == 4 * 3600.0
    assert ml.settings.group_by is None and ml.children[0].settings.group_by is None  # "...": every label
    assert tree.settings.critical_group_wait == 0.0  # Vigil's default: a critical first page leaves at once


ALERTMANAGER_YAML = """
route:
  receiver: team-gpu-pager
  group_by: ['alertname', 'cluster']
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 3h
  routes:
    - matchers: ['severity="warning"']
      receiver: team-gpu-slack
      continue: true
    - match_re:
        service: ^(training|inference)$
      receiver: team-ml
      mute_time_intervals: [weekends]
receivers:
  - name: team-gpu-pager
    pagerduty_configs:
      - routing_key: 0123456789abcdef0123456789abcdef
        description: '{{ .CommonAnnotations.summary }}'
        severity: '{{ .CommonLabels.severity }}'
  - name: team-gpu-slack
    slack_configs:
      - api_url: https://hooks.slack.com/services/T000/B000/XXXX
        channel: '#gpu'
        send_resolved: true
        title: '{{ template "slack.title" . }}'
  - name: team-ml
    webhook_configs:
      - url: http://ml-bridge.internal:8080/alerts
    email_configs:
      - to: 'ml-oncall@example.com, ml-lead@example.com'
        from: alertmanager@example.com
        smarthost: smtp.example.com:587
        auth_username: am
        auth_password: s3cr3t-pw
inhibit_rules:
  - source_match:
      severity: critical
    target_match:
      severity: warning
    equal: ['alertname', 'cluster']
  - source_matchers: [alertname="NodeDown"]
    target_matchers: [alertname=~"Gpu.*"]
    equal: [host]
time_intervals:
  - name: weekends
    time_intervals:
      - weekdays: ['saturday', 'sunday']
"""


def test_a_pasted_alertmanager_config_works(tmp_path: Path) -> None:
    config = validate(AlertingConfig, yaml.safe_load(ALERTMANAGER_YAML), "alerting")
    assert config.receiver_integrations() == {
        "team-gpu-pager": ["team-gpu-pager/pagerduty-0"],
        "team-gpu-slack": ["team-gpu-slack/slack-0"],
        "team-ml": ["team-ml/webhook-0", "team-ml/email-0"],
    }
    email = config.integrations()["team-ml/email-0"]
    assert email.type == "email" and (email.host, email.port, email.to) == (  # type: ignore[union-attr]
        "smtp.example.com",
        587,
        ["ml-oncall@example.com", "ml-lead@example.com"],
    )
    assert "0123456789abcdef" not in repr(config) and "s3cr3t-pw" not in repr(config)  # kept as secrets
    tree = build_tree(config.route_config())
    assert [r.settings.receiver for r in tree.match({"severity": "warning", "service": "training"})] == [
        "team-gpu-slack",
        "team-ml",
    ]
    assert [r.source_matchers[0].value for r in config.inhibit_rules] == ["critical", "NodeDown"]
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump({"alerting": yaml.safe_load(ALERTMANAGER_YAML)}))
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(path)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"route": {"receiver": "nobody"}}, "alerting.route.receiver: unknown receiver 'nobody'"),
        (
            {"route": {"receiver": "team-ml", "routes": [{"receiver": "team-gpu-pager"}, {"receiver": "ops"}]}},
            "alerting.route.routes[1].receiver: unknown receiver 'ops'",
        ),
        (
            {
                "route": {
                    "receiver": "team-ml",
                    "routes": [{"matchers": ['service=~"(training"'], "receiver": "team-ml"}],
                }
            },
            "alerting.route.routes[0].matchers: invalid regular expression",
        ),
        (
            {"route": {"receiver": "team-ml", "routes": [{"matchers": ["service"], "receiver": "team-ml"}]}},
            "alerting.route.routes[0].matchers: not a matcher",
        ),
        ({"inhibit_rules": [{"source_matchers": ["a=~("], "target_matchers": ["b=c"]}]}, "alerting.inhibit_rules[0]"),
        (
            {"route": {"receiver": "team-ml", "mute_time_intervals": ["holidays"]}},
            "alerting.route.mute_time_intervals[0]: unknown time interval 'holidays'",
        ),
        (
            {"receivers": [{"name": "x", "pagerduty_configs": [{"service_key": "abc"}]}], "route": {"receiver": "x"}},
            "pagerduty_configs[0].service_key: not supported",
        ),
        ({"route": {"receiver": "team-ml", "group_wait": "3 sec"}}, "alerting.route.group_wait: invalid duration"),
    ],
)
def test_a_bad_route_or_receiver_fails_at_start_naming_the_key(change: dict[str, Any], named: str) -> None:
    data = {**yaml.safe_load(ALERTMANAGER_YAML), **change}
    with pytest.raises(ConfigError) as caught:
        validate(AlertingConfig, data, "alerting")
    assert named in str(caught.value)


def test_the_topology_file_is_checked_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text("nodes: {n1: {rack: r1}}\nracks: {r2: [n1]}\n")
    with pytest.raises(ConfigError, match=r"alerting\.topology\.file: node n1 is in rack r1 and rack r2"):
        load_topology(path)
    path.write_text("nodes: {n1: {rack: r1, gpus: -1}}\n")
    with pytest.raises(ConfigError, match=r"alerting.topology.file.nodes.n1.gpus"):
        load_topology(path)
    path.write_text("switches: {sw1: [n1, n2]}\njobs: {job-0: [n1, n2]}\nnodes: {n2: {gpus: 4}}\n")
    topology = load_topology(path)
    assert topology.switch == {"n1": "sw1", "n2": "sw1"} and topology.job_gpus("job-0") == 12
