"""The command line's conventions (``vigil/cli/common.py``), held by walking the whole command tree:
any command added later that breaks one fails here.

- every command and group has a one-line help;
- every command with ``--json`` prints one parseable JSON document on stdout and nothing else: the
  cheap ones are run here for real (small options, synthetic or public data); the expensive ones
  must be named in ``RUN_ELSEWHERE`` with the test that runs them;
- every long-running service is in the "Services" panel and takes ``--metrics-address`` and
  ``--metrics-port``; no other command does;
- the data a command reads is ``--data`` (older spellings only as hidden aliases);
- building the tree imports no library of an extra (a node agent's install builds it too).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.scenarios.test_eval_nab_cli import write_nab
from tests.unit.test_eval_smd import write_machine
from vigil.cli.app import build_app
from vigil.cli.common import SERVICES

ROOT = Path(__file__).resolve().parents[2]
KNOWN_SERVICES = {"agent", "analytics", "alerting", "sim"}
# Commands with --json that take minutes or a whole stack: the test that runs them and checks the JSON.
RUN_ELSEWHERE = {
    "bench pipeline": "tests/integration/test_bench_pipeline.py",
    "bench agent": "tests/integration/test_agent_bench.py",
    "bench api": "tests/integration/test_bench_api.py",
    "bench alerting": "tests/integration/test_bench_alerting.py",
    "bench reporter": "tests/integration/test_training_sdk.py",
    "bench sink": "tests/integration/test_bench_sink.py",
    "canary run": "tests/integration/test_canary_cli.py",
    "chaos": "tests/integration/test_chaos.py",
    "dashboards push": "tests/contract/test_grafana_push.py",
    "status": "tests/integration/test_status_cli.py",
    "train disk": "tests/unit/test_disk_predictor.py",
}
OLD_DATA_SPELLINGS = {"--datasets", "--dataset", "--data-path", "--corpus", "--folder"}
# Options spelled like an old data option that name something else: the command and what it is.
NOT_DATA = {"dashboards push": {"--folder"}}  # the Grafana folder the dashboards go into


# Click's command objects, duck-typed: typer vendors its own copy of click in recent versions.
Command = Any


def walk(command: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Command]]:
    yield " ".join(path), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, (*path, name))


def tree() -> dict[str, Command]:
    return dict(walk(typer.main.get_command(build_app())))


def options(command: Command, hidden: bool = False) -> set[str]:
    return {
        opt
        for p in command.params
        if p.param_type_name == "option" and (hidden or not p.hidden)
        for opt in (*p.opts, *p.secondary_opts)
    }


def leaves() -> dict[str, Command]:
    return {name: cmd for name, cmd in tree().items() if name and not hasattr(cmd, "commands")}


def test_every_command_and_group_has_a_one_line_help() -> None:
    for name, command in tree().items():
        text = (command.help or command.short_help or "").strip()
        assert text, f"`vigil {name}` has no help"
        first = text.splitlines()[0]
        assert len(first) > 10 and not first.endswith(":"), f"`vigil {name}`: {first!r} is not a one-line help"


def test_services_take_the_listener_options_and_nothing_else_does() -> None:
    services = {name for name, cmd in leaves().items() if getattr(cmd, "rich_help_panel", None) == SERVICES}
    assert services >= KNOWN_SERVICES
    for name, command in leaves().items():
        has = options(command) & {"--metrics-address", "--metrics-port"}
        if name in services:
            assert has == {"--metrics-address", "--metrics-port"}, f"`vigil {name}` is a service: it needs both"
        else:
            assert not has, f"`vigil {name}` takes {has} but is not registered as a service (service_command)"


def test_the_data_option_has_one_name() -> None:
    for name, command in leaves().items():
        old = options(command) & OLD_DATA_SPELLINGS - NOT_DATA.get(name, set())
        assert not old, f"`vigil {name}` spells its data option {old}; use --data (keep old ones hidden)"


def test_every_json_command_is_run_here_or_by_a_named_test() -> None:
    with_json = {name for name, cmd in leaves().items() if "--json" in options(cmd)}
    unaccounted = with_json - set(CHEAP_RUNS) - set(RUN_ELSEWHERE)
    assert not unaccounted, f"add these to CHEAP_RUNS or RUN_ELSEWHERE: {sorted(unaccounted)}"
    for name, test_file in RUN_ELSEWHERE.items():
        assert name in with_json, f"`vigil {name}` has no --json"
        text = (ROOT / test_file).read_text()
        assert "--json" in text and name.split()[-1] in text, f"{test_file} does not run `vigil {name} --json`"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-data")
    (root / "smd").mkdir()
    for i in range(2):
        write_machine(root / "smd", f"machine-9-{i}", seed=i)
    write_nab(root / "nab")
    (root / "vigil.yaml").write_text(f"data_dir: {root / 'state'}\n")  # a store of its own for `tokens list`
    return root


CHEAP_RUNS: dict[str, list[str]] = {
    "check-config": [],
    "agent": ["--once", "--collectors", "counter=tests.agent_collectors"],
    "eval nab": ["--data", "{data}/nab"],
    "eval smd": ["--data", "{data}/smd"],
    "eval smd-select": ["--data", "{data}/smd"],
    "eval smd-dev": ["--data", "{data}/smd"],
    "eval disk": [],  # the default public data (skipped without it, as every dataset test is)
    "bench detectors": ["--series", "100", "--ticks", "20", "--repeats", "1"],
    "tokens list": ["-c", "{data}/vigil.yaml"],
    "dashboards build": ["--out", "{data}/dashboards"],
    "bench remediation": ["--incidents", "100", "--nodes", "200", "--repeats", "1", "--live", "2"],
    "bench canary": ["--seconds", "0.5", "--rounds", "20", "--items", "5"],
}


@pytest.mark.parametrize("name", sorted(CHEAP_RUNS))
def test_json_is_one_document_on_stdout(name: str, data: Path) -> None:
    if name == "eval disk":
        from tests.shared_data import datasets_root

        datasets_root()
    args = [*name.split(), "--json", *(a.format(data=data) for a in CHEAP_RUNS[name])]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the whole of stdout: nothing printed beside the document
    assert isinstance(doc, dict) and doc


def test_without_json_a_readable_summary_and_no_json() -> None:
    result = CliRunner().invoke(build_app(), ["check-config"])
    assert result.exit_code == 0 and result.stdout.startswith("ok ")
    args = ["bench", "detectors", "--series", "50", "--ticks", "10", "--repeats", "1"]
    detectors = CliRunner().invoke(build_app(), args)
    assert detectors.exit_code == 0 and "samples_per_s" in detectors.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(detectors.stdout)


def test_version_log_level_and_usage_errors() -> None:
    runner = CliRunner()
    version = runner.invoke(build_app(), ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("vigil 0.")
    assert runner.invoke(build_app(), ["--log-level", "loud", "check-config"]).exit_code == 2
    assert runner.invoke(build_app(), ["check-config", "--no-such-option"]).exit_code == 2
    bad_env = runner.invoke(build_app(), ["check-config"], env={"VIGIL_LOG_LEVEL": "loud"})
    assert bad_env.exit_code == 2  # an environment override is checked like the option


def test_building_the_command_tree_imports_no_library_of_an_extra() -> None:
    script = (
        "import sys\n"
        "import typer\n"
        "from vigil.cli.app import build_app\n"
        "typer.main.get_command(build_app())\n"
        "from vigil.cli.extras import EXTRA_OF\n"
        "print(sorted(m for m in EXTRA_OF if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_command_whose_extra_is_missing_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    result = CliRunner().invoke(build_app(), ["analytics"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "vigil analytics needs the server extra (sklearn not installed): pip install 'vigil-aiops[server]'"
    )


def test_a_missing_module_of_an_extra_anywhere_in_a_command_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fallback of ``vigil.cli.main`` for an import deep inside a command, past ``require``."""
    import vigil.cli.app
    from vigil.cli import main

    def needs_pandas() -> None:
        """A command whose library imports pandas when it runs."""
        raise ModuleNotFoundError("No module named 'pandas'", name="pandas")

    def app(only: str | None = None) -> typer.Typer:
        built = typer.Typer()
        built.command()(needs_pandas)
        return built

    monkeypatch.setattr(vigil.cli.app, "build_app", app)
    monkeypatch.setattr(sys, "argv", ["vigil"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "vigil: pandas is not installed; it comes with the server extra: pip install 'vigil-aiops[server]'"
    )
