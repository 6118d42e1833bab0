"""Config errors name the key path; durations parse; models are frozen."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from vigil.config import (
    Duration,
    FrozenModel,
    KafkaConfig,
    load_yaml,
    load_yaml_files,
    merge_mappings,
    parse_duration,
    validate,
)
from vigil.errors import ConfigError


class Route(FrozenModel):
    group_wait: Duration = 30.0


class Routing(FrozenModel):
    routes: list[Route] = Field(default_factory=list)


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("10s", 10), ("5m", 300), ("1h", 3600), (3, 3.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_errors_name_the_key_path() -> None:
    with pytest.raises(ConfigError) as err:
        validate(Routing, {"routes": [{}, {}, {"group_wait": "3 sec"}]})
    assert "routes[2].group_wait: invalid duration '3 sec'" in str(err.value)


def test_unknown_keys_are_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_server: unknown key"):
        validate(KafkaConfig, {"bootstrap_server": ["x"]}, prefix="kafka")


def test_models_are_frozen() -> None:
    config = KafkaConfig()
    with pytest.raises(ValueError):
        config.compression = "zstd"  # type: ignore[misc]


def test_yaml_errors_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml(tmp_path / "missing.yaml")


def test_merge_mappings_merges_at_every_depth_and_replaces_everything_else() -> None:
    base = {"a": {"b": {"c": 1, "d": 2}, "l": [1, 2]}, "x": 1}
    over = {"a": {"b": {"d": 3}, "l": [9]}, "y": None}
    assert merge_mappings(base, over) == {"a": {"b": {"c": 1, "d": 3}, "l": [9]}, "x": 1, "y": None}
    assert base == {"a": {"b": {"c": 1, "d": 2}, "l": [1, 2]}, "x": 1}  # inputs untouched


def test_load_yaml_files_reads_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "1.yaml", tmp_path / "2.yaml"
    first.write_text("kafka: {client_id: a, linger: 1}\n")
    second.write_text("kafka: {client_id: b}\n")
    assert load_yaml_files([first, second]) == {"kafka": {"client_id": "b", "linger": 1}}
    assert load_yaml_files(first) == {"kafka": {"client_id": "a", "linger": 1}}
    assert load_yaml_files(None) == {}
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml_files([first, tmp_path / "missing.yaml"])
