"""Config errors name the key path; durations parse; models are frozen."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from vigil.config import Duration, FrozenModel, KafkaConfig, load_yaml, parse_duration, validate
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
