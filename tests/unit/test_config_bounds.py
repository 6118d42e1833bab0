"""Config that validates must also run: zero durations, impossible bounds and YAML alias bombs fail
``vigil check-config`` (exit 2) naming the key or the file, instead of passing and failing later."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner
from vigil.collectors.agent import AgentConfig
from vigil.collectors.agent.factory import create_collectors
from vigil.collectors.base import CollectorContext

from vigil.cli.app import build_app
from vigil.cli.settings import VigilConfig, dump_config, load_config
from vigil.config import load_yaml, validate
from vigil.errors import ConfigError

# An alias bomb inside a collector's options: a few hundred bytes that expand to 10^9 strings.
BOMB = """\
agent:
  collectors:
    host:
      interval: 10s
      payload:
        a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
        d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
        f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
        h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
        i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "vigil.yaml"
    path.write_text(text)
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(path)])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("kafka: {request_timeout: 0}", "kafka.request_timeout: must be a positive duration"),
        ("kafka: {session_timeout: 0}", "kafka.session_timeout: must be a positive duration"),
        ("kafka: {heartbeat_interval: 0s}", "kafka.heartbeat_interval: must be a positive duration"),
        ("alerting: {dispatch_interval: 0}", "alerting.dispatch_interval: must be a positive duration"),
        ("alerting: {retry: {initial_backoff: 0}}", "alerting.retry.initial_backoff: must be a positive duration"),
        ("alerting: {retry: {max_backoff: 0ms}}", "alerting.retry.max_backoff: must be a positive duration"),
        ("agent: {reconnect_backoff_max: 0}", "agent.reconnect_backoff_max: must be a positive duration"),
    ],
)
def test_zero_durations_named_in_the_issue_fail_check_config(tmp_path: Path, text: str, named: str) -> None:
    code, output = check(tmp_path, text)
    assert code == 2, output
    assert named in output


def test_a_yaml_alias_bomb_fails_check_config_naming_the_file(tmp_path: Path) -> None:
    code, output = check(tmp_path, BOMB)
    assert code == 2, output
    assert "vigil.yaml" in output and "alias" in output


def test_a_recursive_alias_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("agent:\n  collectors:\n    host: {payload: &x [*x]}\n")
    with pytest.raises(ConfigError, match=r"loop\.yaml: .*recursive"):
        load_yaml(path)


def test_a_config_with_a_few_anchors_still_loads(tmp_path: Path) -> None:
    text = """\
alerting:
  notifiers:
    - &hook {type: webhook, name: first, url: "http://127.0.0.1:9000/hook", timeout: 2s}
    - {<<: *hook, name: second}
analytics:
  rules:
    - &hot {name: GpuHot, metric: gpu_temperature_celsius, op: ">", value: 85, for: 10s}
    - {<<: *hot, name: GpuVeryHot, value: 95}
"""
    code, output = check(tmp_path, text)
    assert code == 0, output
    data = load_yaml(tmp_path / "vigil.yaml")
    assert data["alerting"]["notifiers"][1]["url"] == "http://127.0.0.1:9000/hook"
    assert data["analytics"]["rules"][1] == {
        "name": "GpuVeryHot",
        "metric": "gpu_temperature_celsius",
        "op": ">",
        "value": 95,
        "for": "10s",
    }


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"kafka": {"heartbeat_interval": "6s"}}, "kafka.heartbeat_interval: must be shorter than session_timeout"),
        ({"kafka": {"session_timeout": "1h"}}, "kafka.session_timeout: Input should be less than or equal to 300"),
        ({"kafka": {"linger": float("nan")}}, "kafka.linger: invalid duration nan: not finite"),
        ({"kafka": {"request_timeout": ".inf"}}, "kafka.request_timeout: invalid duration"),
        ({"kafka": {"topics": {"prefix": "my topics"}}}, "kafka.topics.prefix: String should match pattern"),
        ({"kafka": {"topics": {"partitions": {"telemetri": 4}}}}, "kafka.topics.partitions.telemetri: unknown stream"),
        ({"broker": {"port": 9092, "s3_port": 9092}}, "broker.s3_port: must differ from port"),
        ({"cluster": ""}, "cluster: String should have at least 1 character"),
        ({"analytics": {"poll_timeout": 0}}, "analytics.poll_timeout: must be a positive duration"),
        ({"analytics": {"stages": ["zscore", "zcore"]}}, "analytics.stages[1].stage: unknown stage 'zcore'"),
        (
            {"analytics": {"stages": ["zscore", "seasonal"]}},  # a model is not a stage: check-config says how
            "analytics.stages[1].stage: unknown stage 'seasonal' (known: zscore, peers, threshold, xid, training, "
            "truthfulness, model); 'seasonal' is a model: {stage: model, model: seasonal, ...}",
        ),
        (
            {"analytics": {"stages": [{"stage": "model", "name": "m", "model": "seasonall", "metrics": ["x"]}]}},
            "analytics.stages[0].model: unknown model 'seasonall' (known: adaptive_mspc, autoencoder,",
        ),
        (
            {
                "analytics": {
                    "stages": [
                        {"stage": "model", "name": "m", "model": "pca", "metrics": ["x"], "options": {"windw": 5}}
                    ]
                }
            },
            "analytics.stages[0].options.windw: unknown key",
        ),
        (
            {
                "analytics": {
                    "stages": [
                        {"stage": "model", "name": "m", "model": "robust_z", "metrics": ["x"], "options": {"alpha": 2}}
                    ]
                }
            },
            "analytics.stages[0].options.alpha: Input should be less than 1",
        ),
        (
            {
                "analytics": {
                    "stages": [
                        {"stage": "model", "name": "m", "model": "pca", "metrics": ["x"], "options": {"variance": 2}}
                    ]
                }
            },
            "analytics.stages[0].options: variance must be in (0, 1], got 2",
        ),
        ({"analytics": {"stages": [{"stage": "model", "model": "pca"}]}}, "analytics.stages[0].name: required"),
        ({"analytics": {"stages": [{"stage": "zscore", "metrics": ["x"]}]}}, "analytics.stages[0].metrics: only for"),
        ({"analytics": {"stages": ["zscore", "zscore"]}}, "analytics.stages[1].name: a second stage called 'zscore'"),
        ({"analytics": {"hang": {"forget_after": "5m"}}}, "analytics.hang.forget_after: must be longer than"),
        ({"analytics": {"hang": {"min_timeout": 0}}}, "analytics.hang.min_timeout: must be a positive duration"),
        ({"analytics": {"xid": {"quiet_period": 0}}}, "analytics.xid.quiet_period: must be a positive duration"),
        ({"analytics": {"predict": {"every": 0}}}, "analytics.predict.every: must be a positive duration"),
        ({"analytics": {"truthfulness": {"forget_after": "4s"}}}, "analytics.truthfulness.forget_after: must be"),
        ({"analytics": {"rules": [{"name": "x", "metric": "m", "op": ">", "value": ".nan"}]}}, "rules[0].value"),
        (
            {"alerting": {"retry": {"initial_backoff": "10s", "max_backoff": "1s"}}},
            "alerting.retry.max_backoff: must not",
        ),
        (
            {"alerting": {"notifiers": [{"type": "webhook", "url": "http://x", "timeout": 0}]}},
            "alerting.notifiers[0].timeout: must be a positive duration",
        ),
        ({"sim": {"interval": 0}}, "sim.interval: must be a positive duration"),
        ({"sim": {"seed": -1}}, "sim.seed: Input should be greater than or equal to 0"),
        (
            {"sim": {"faults": [{"kind": "thermal", "at": 5, "duration": 0}]}},
            "sim.faults[0].duration: must be a positive",
        ),
        ({"agent": {"tick": 0}}, "agent.tick: must be a positive duration"),
        (
            {"agent": {"buffer": {"spill_after": "500ms"}}},
            "agent.buffer.spill_after: Input should be greater than or equal to 1",
        ),
        (
            {"agent": {"collectors": {"host": {"timeout": 0}}}},
            "agent.collectors.host.timeout: must be a positive duration",
        ),
    ],
)
def test_meaningless_values_fail_naming_the_key(data: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as failure:
        validate(VigilConfig, data)
    assert named in str(failure.value)


def test_the_defaults_and_the_written_effective_config_validate(tmp_path: Path) -> None:
    config = validate(VigilConfig, {})
    dump_config(config, tmp_path / "run" / "vigil.yaml")
    assert load_config(tmp_path / "run" / "vigil.yaml") == config


def test_collector_options_reject_a_negative_index_at_agent_start() -> None:
    options = {"gpus": {"0000:3b:00.0": {"index": -1}}}
    config = AgentConfig.model_validate({"collectors": {"kernel_log": options}})
    named = r"agent\.collectors\.kernel_log\.gpus\.0000:3b:00\.0\.index: Input should be"
    with pytest.raises(ConfigError, match=named):
        create_collectors(config, CollectorContext("n"))


def test_vigil_up_refuses_the_alias_bomb_before_starting_anything(tmp_path: Path) -> None:
    path = tmp_path / "vigil.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n" + BOMB)
    result = CliRunner().invoke(build_app(), ["up", "-c", str(path), "--duration", "1", "--report", "r.json"])
    assert result.exit_code == 2 and "alias" in result.output
    assert not (tmp_path / "data").exists()  # no broker, no state: nothing to clean up
