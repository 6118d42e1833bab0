"""Configuration: YAML into frozen pydantic models, with errors that name the key path.

Each service defines one frozen model (subclass :class:`FrozenModel`) for its own section; the CLI
composes them into the file format. The kernel owns the sections every service shares: where the
broker is (:class:`KafkaConfig`) and where local state lives (:class:`CommonConfig`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from vigil.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``"500ms"``, ``"10s"``, ``"5m"``, ``"1h"`` or a bare number of seconds, as float seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"invalid duration {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicsConfig(FrozenModel):
    prefix: str = "vigil"
    partitions: dict[str, Annotated[int, Field(ge=1, le=1024)]] = Field(
        default_factory=lambda: {"telemetry": 8, "logs": 4, "training": 4}
    )


class KafkaConfig(FrozenModel):
    """Empty ``bootstrap_servers``: Vigil starts its embedded broker and fills this in."""

    bootstrap_servers: list[str] = Field(default_factory=list)
    client_id: str = "vigil"
    compression: Literal["lz4", "zstd", "gzip", "snappy", "none"] = "lz4"
    linger: Duration = 0.005
    batch_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    # Tansu holds a JoinGroup for session_timeout/2: keep it short (6 s is also Kafka's minimum).
    session_timeout: Duration = 6.0
    heartbeat_interval: Duration = 1.0
    max_poll_records: Annotated[int, Field(ge=1)] = 500
    # Small per-partition fetches make a poll span every partition (hosts) over the same time range,
    # so the detectors' per-round vector work covers many series at once instead of one host's backlog.
    max_partition_fetch_bytes: Annotated[int, Field(ge=1024)] = 262_144
    # The broker's time for one fetch answer. The embedded Tansu 0.6 spends it reading partition after
    # partition and answers with what it has by then, so on a loaded machine the last partitions of a
    # request got nothing, every time (measured: 16 partitions, 50 ms: a busy partition got 0 of 3,003
    # records in 40 s; 500 ms under load: analytics' training partition stuck for minutes). New data
    # still comes back at once (median 100 ms produce-to-consume at 2 s, 77 ms at 500 ms).
    fetch_max_wait: Duration = 2.0
    request_timeout: Duration = 30.0
    # Idempotent producing (the broker drops a retried batch it already wrote). Off by default: the
    # embedded Tansu 0.6 answers a retried batch with OutOfOrderSequenceNumber, and may record a
    # producer's sequence before the batch itself, so a batch can be acknowledged and lost. Without
    # it every producer keeps one request in flight, so a retry is never overtaken (order holds) and
    # the worst case is a duplicate, which every consumer tolerates. Turn it on against Apache Kafka,
    # Redpanda or MSK (README "Delivery and the broker").
    idempotence: bool = False
    topics: TopicsConfig = Field(default_factory=TopicsConfig)


class BrokerConfig(FrozenModel):
    """The embedded Tansu broker, used only when ``kafka.bootstrap_servers`` is empty."""

    storage: Literal["s3", "memory"] = "s3"
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: a free loopback port
    s3_port: Annotated[int, Field(ge=0, le=65535)] = 0


class CommonConfig(FrozenModel):
    cluster: str = "default"
    data_dir: Path = Path(".vigil")
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """``routes[2].group_wait: invalid duration '3 sec'`` for every error, one per line."""
    lines = []
    for err in exc.errors():
        path = prefix
        for part in err["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not str(part).startswith("function-"):
                path += f".{part}" if path else str(part)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{path or '<root>'}: {message}")
    return "\n".join(lines)


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix)) from exc


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data
