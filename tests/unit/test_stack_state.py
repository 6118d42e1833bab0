"""`vigil up` keeps service state as long as the broker's records: durable by default, per run when ephemeral."""

from __future__ import annotations

from pathlib import Path

from vigil.cli.settings import VigilConfig
from vigil.cli.stack import Stack


def config(tmp_path: Path) -> VigilConfig:
    return VigilConfig.model_validate({"data_dir": str(tmp_path / "data")})


def test_durable_stack_keeps_state_in_the_data_dir(tmp_path: Path) -> None:
    assert Stack(config(tmp_path)).services_state_dir() == tmp_path / "data"


def test_each_ephemeral_run_starts_from_empty_state(tmp_path: Path) -> None:
    first = Stack(config(tmp_path), ephemeral=True).services_state_dir()
    (first / "alerts.db").write_bytes(b"an earlier run's alerts")
    second = Stack(config(tmp_path), ephemeral=True).services_state_dir()
    assert first != second and first.parent == second.parent == tmp_path / "data"
    assert list(second.iterdir()) == []
