"""Configuration: YAML into frozen pydantic models, with errors that name the key path.

Each service defines one frozen model (subclass :class:`FrozenModel`) for its own section; the CLI
composes them into the file format. The kernel owns the sections every service shares: where the
broker is (:class:`KafkaConfig`) and where local state lives (:class:`CommonConfig`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from vigil.errors import ConfigError
from vigil.topics import STREAMS

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
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {value!r}: not finite")
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: negative")
    return seconds


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError(f"must be a positive duration (got {seconds:g}s)")
    return seconds


# ``Duration`` is zero or more (a ``for: 0s``, a ``cooldown`` of none); ``PositiveDuration`` is for
# timeouts, intervals and backoffs, where zero would fail at run time or spin a loop.
Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


KeyProblem = tuple[tuple[str | int, ...], str, object]  # (key path inside the model, message, value)


def raise_key_errors(model: BaseModel, problems: Sequence[KeyProblem]) -> None:
    """For cross-field checks in a model validator: one error per problem at its own key path, so
    ``kafka.heartbeat_interval: must be shorter ...`` names the key, as a field's own error does."""
    if problems:
        details = [
            InitErrorDetails(type=PydanticCustomError("config", message), loc=loc, input=value)
            for loc, message, value in problems
        ]
        raise ValidationError.from_exception_data(type(model).__name__, details)


class FrozenModel(BaseModel):
    # No NaN or infinity in any number: a NaN threshold never fires, an infinite one overflows.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class TopicsConfig(FrozenModel):
    # Kafka topic names allow letters, digits, '.', '_' and '-' (249 characters in all).
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$", max_length=200)] = "vigil"
    partitions: dict[str, Annotated[int, Field(ge=1, le=1024)]] = Field(
        default_factory=lambda: {"telemetry": 8, "logs": 4, "training": 4}
    )

    @model_validator(mode="after")
    def _known_streams(self) -> TopicsConfig:
        known = ", ".join(STREAMS)
        unknown = sorted(set(self.partitions) - set(STREAMS))
        raise_key_errors(self, [(("partitions", s), f"unknown stream (known: {known})", s) for s in unknown])
        return self


class KafkaConfig(FrozenModel):
    """Empty ``bootstrap_servers``: Vigil starts its embedded broker and fills this in."""

    bootstrap_servers: list[str] = Field(default_factory=list)
    client_id: str = "vigil"
    compression: Literal["lz4", "zstd", "gzip", "snappy", "none"] = "lz4"
    linger: Annotated[Duration, Field(le=60)] = 0.005
    batch_bytes: Annotated[int, Field(ge=1024, le=64 * 2**20)] = 1_048_576
    # Tansu holds a JoinGroup for session_timeout/2: keep it short (6 s is also Kafka's minimum).
    # At most 5 minutes: kafka-python's consumer needs session_timeout + 5 s below its 9-minute
    # idle-connection limit, and brokers cap it (group.max.session.timeout.ms).
    session_timeout: Annotated[PositiveDuration, Field(le=300)] = 6.0
    heartbeat_interval: PositiveDuration = 1.0  # below session_timeout (kafka-python refuses otherwise)
    max_poll_records: Annotated[int, Field(ge=1, le=100_000)] = 500
    # Small per-partition fetches make a poll span every partition (hosts) over the same time range,
    # so the detectors' per-round vector work covers many series at once instead of one host's backlog.
    max_partition_fetch_bytes: Annotated[int, Field(ge=1024, le=64 * 2**20)] = 262_144
    request_timeout: Annotated[PositiveDuration, Field(le=300)] = 30.0
    # Idempotent producing (the broker drops a retried batch it already wrote). Off by default: the
    # embedded Tansu 0.6 answers a retried batch with OutOfOrderSequenceNumber, and may record a
    # producer's sequence before the batch itself, so a batch can be acknowledged and lost. Without
    # it every producer keeps one request in flight, so a retry is never overtaken (order holds) and
    # the worst case is a duplicate, which every consumer tolerates. Turn it on against Apache Kafka,
    # Redpanda or MSK (README "Delivery and the broker").
    idempotence: bool = False
    topics: TopicsConfig = Field(default_factory=TopicsConfig)

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> KafkaConfig:
        if self.heartbeat_interval >= self.session_timeout:
            message = f"must be shorter than session_timeout ({self.session_timeout:g}s)"
            raise_key_errors(self, [(("heartbeat_interval",), message, self.heartbeat_interval)])
        return self


class BrokerConfig(FrozenModel):
    """The embedded Tansu broker, used only when ``kafka.bootstrap_servers`` is empty."""

    storage: Literal["s3", "memory"] = "s3"
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: a free loopback port
    s3_port: Annotated[int, Field(ge=0, le=65535)] = 0

    @model_validator(mode="after")
    def _distinct_ports(self) -> BrokerConfig:
        if self.port and self.port == self.s3_port:
            raise_key_errors(self, [(("s3_port",), "must differ from port", self.s3_port)])
        return self


class ConsumerHealthConfig(FrozenModel):
    """When a consumer's ``/healthz`` answers 503 (``vigil.bus.watch``): its polling stalled, or its lag
    keeps growing. A broker outage alone is not a failure: restarting would not bring the broker back."""

    stalled_polls: Annotated[int, Field(ge=2, le=10_000)] = 30  # no poll for this many poll timeouts
    lag_every: PositiveDuration = 10.0  # how often the lag is measured (one offsets request)
    lag_checks: Annotated[int, Field(ge=0, le=1000)] = 6  # lag grew at each of this many checks in a row (0: off)
    lag_floor: Annotated[int, Field(ge=0)] = 10_000  # ... and is above this many records


class CommonConfig(FrozenModel):
    cluster: Annotated[str, Field(min_length=1)] = "default"
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


# Nodes that aliases may add to a document when expanded: anchors reused for a few notifiers or
# rules add tens; a "billion laughs" adds 10^9 and would be built in full by the first dump or copy.
MAX_ALIAS_EXPANSION = 10_000


class AliasBudgetError(yaml.YAMLError):
    """A document whose aliases expand beyond ``MAX_ALIAS_EXPANSION`` nodes, or refer to themselves."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _expansion(root: yaml.Node) -> tuple[int, int]:
    """(distinct nodes, nodes once every alias is expanded), walking the composed graph without
    expanding it: an alias is the anchored node object itself, so sizes are memoised by identity."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, not finished: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
        elif key in open_nodes:
            raise AliasBudgetError("a recursive YAML alias (a node that contains itself)")
        elif key not in sizes:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return len(sizes), sizes[id(root)]


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that measures alias expansion on the composed node graph before building
    any Python object, so an alias bomb is refused in microseconds instead of eating the memory."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        distinct, expanded = _expansion(node)
        if expanded - distinct > MAX_ALIAS_EXPANSION:
            raise AliasBudgetError(
                f"YAML aliases expand {distinct:,} written nodes to {expanded:,} (at most "
                f"{MAX_ALIAS_EXPANSION:,} more are allowed): an alias bomb? Write the values out instead"
            )
        return self.construct_document(node)


def safe_load_bounded(text: str) -> Any:
    """``yaml.safe_load`` with the alias budget; raises ``yaml.YAMLError`` (``AliasBudgetError``)."""
    return yaml.load(text, Loader=_BoundedLoader)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = safe_load_bounded(text)
    except AliasBudgetError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def load_yaml_files(paths: Path | Sequence[Path] | None) -> dict[str, Any]:
    """One config from several files, each merged over the ones before it (``-c base.yaml -c secrets.yaml``).

    Mappings merge key by key at every depth; any other value (a list, a scalar) in a later file replaces
    the earlier one whole, so a list such as ``alerting.notifiers`` lives in exactly one file. This lets a
    deployment keep its secrets in a separate file (a Kubernetes Secret beside the chart's ConfigMap).
    """
    if paths is None:
        return {}
    merged: dict[str, Any] = {}
    for path in [paths] if isinstance(paths, Path) else paths:
        merged = merge_mappings(merged, load_yaml(path))
    return merged


def merge_mappings(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            out[key] = merge_mappings(below, value)
        else:
            out[key] = value
    return out
