"""Probe definitions: the schema, the checks beyond it, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner
from vigil.alerting.canary.spec import ProbeError, load_paths, load_text

from vigil.cli.app import build_app
from vigil.cli.settings import load_config
from vigil.errors import ConfigError

GOOD = """\
probes:
  - name: digits
    protocol: oip_v2
    endpoint: http://127.0.0.1:8080/
    model: digits
    server: ml-1
    arms: [{name: v1, version: v1}, {name: serving}]
    baseline: v1
    schedule: {interval: 500ms, timeout: 2s}
    criteria: {window: 3, latency: {critical: true}}
    items:
      - id: zero
        inputs: [{name: predict, datatype: FP64, shape: [1, 2], data: [0.0, 1.0]}]
        expect: {equals: 0}
  - name: chat
    protocol: openai_chat
    endpoint: http://{node}:8000
    model: gemma
    nodes: [n1, n2]
    request: {temperature: 0, seed: 7}
    items:
      - id: capital
        prompt: What is the capital of France?
        response_format: {type: object, properties: {city: {type: string}}, required: [city]}
        select: city
        stream: true
        expect: {equals: Paris}
"""


def test_a_good_file_builds_arms_for_versions_and_nodes() -> None:
    digits, chat = load_text(GOOD, "good.yaml")
    assert digits.mode == "arms" and digits.baseline == "v1" and digits.server == "ml-1"
    assert [(a.name, a.version, a.endpoint) for a in digits.arms] == [
        ("v1", "v1", "http://127.0.0.1:8080"),
        ("serving", None, "http://127.0.0.1:8080"),
    ]
    assert digits.schedule.interval == 0.5 and digits.criteria.window == 3 and digits.criteria.latency.critical
    assert chat.mode == "nodes" and [a.endpoint for a in chat.arms] == ["http://n1:8000", "http://n2:8000"]
    assert chat.items[0].select == "city" and chat.items[0].request["stream"] is True


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("baseline: v1", "baseline: v3"), "bad.yaml:8: probes[0].baseline: no arm named 'v3' (arms: v1, serving)"),
        (("    baseline: v1\n", ""), "bad.yaml:2: probes[0].baseline: several arms need a baseline"),
        (("model: digits", "modle: digits"), "bad.yaml:2: probes[0]: 'model' is a required property"),
        (("interval: 500ms", "interval: 5 sec"), "bad.yaml:9: probes[0].schedule.interval: '5 sec' is not valid"),
        (("protocol: oip_v2", "protocol: grpc"), "bad.yaml:3: probes[0].protocol: 'grpc' is not one of"),
        (("expect: {equals: 0}", "expect: {regex: '('}"), "bad.yaml:14: probes[0].items[0].expect.regex: not a"),
        (("expect: {equals: 0}", "expect: {}"), "bad.yaml:14: probes[0].items[0].expect: {} should be non-empty"),
        (("inputs: [{name: predict, datatype: FP64, shape: [1, 2], data: [0.0, 1.0]}]", "prompt: hi"),
         "bad.yaml:12: probes[0].items[0]: a oip_v2 item needs inputs"),
        (("endpoint: http://{node}:8000", "endpoint: http://x:8000"), "bad.yaml:17: probes[1].endpoint: with nodes"),
        (("name: chat", "name: digits"), "bad.yaml:15: probes[1].name: probe 'digits' is defined twice"),
        (("response_format: {type: object,", "response_format: {type: objekt,"), "response_format: not a valid JSON"),
        (("criteria: {window: 3,", "criteria: {window: 1,"), "probes[0].criteria.window: 1 is less than"),
    ],
)
def test_errors_name_file_line_and_key(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ProbeError) as caught:
        load_text(GOOD.replace(*edit), "bad.yaml")
    assert message in str(caught.value)


def test_golden_sets_live_in_their_own_files_and_their_errors_name_them(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "probes: [{name: p, protocol: http_json, endpoint: 'http://127.0.0.1:1', model: m, golden: p.golden.yaml}]\n"
    )
    item = "items:\n  - id: a\n    body: {x: 1}\n"
    (tmp_path / "p.golden.yaml").write_text(item + "    expect: {number: 2, tolerance: 1}\n")
    [probe] = load_paths([tmp_path])  # the folder: golden files are not read as probe files
    assert probe.items[0].expect == {"number": 2, "tolerance": 1} and probe.mode == "single"
    (tmp_path / "p.golden.yaml").write_text(item + "    expect: {tolerance: 1}\n")
    with pytest.raises(ProbeError) as caught:
        load_paths([tmp_path])
    where = f"{tmp_path / 'p.golden.yaml'}:4: items[0].expect"
    assert f"{where}: 'number' is a dependency of 'tolerance'" in str(caught.value)


def test_the_config_refuses_bad_probe_files_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("probes: [{name: p}]\n")
    (tmp_path / "vigil.yaml").write_text(f"canary: {{probes: [{tmp_path / 'p.yaml'}]}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "vigil.yaml")
    text = str(caught.value)
    assert text.startswith("canary.probes: ")
    assert f"{tmp_path / 'p.yaml'}:1: probes[0]: 'protocol' is a required" in text


def test_vigil_canary_check(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    ok = CliRunner().invoke(build_app(), ["canary", "check", str(tmp_path)])
    assert ok.exit_code == 0 and "2 probes, 2 golden items" in ok.output
    (tmp_path / "good.yaml").write_text(GOOD.replace("baseline: v1", "baseline: v9"))
    bad = CliRunner().invoke(build_app(), ["canary", "check", str(tmp_path)])
    assert bad.exit_code == 1 and "good.yaml:8: probes[0].baseline: no arm named 'v9'" in bad.output
