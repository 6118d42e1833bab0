"""Configuration: YAML into frozen pydantic models, with errors that name the key path.

Each service defines one frozen model (subclass :class:`FrozenModel`) for its own section; the CLI
composes them into the file format. The kernel owns the sections every service shares: where the
broker is (:class:`KafkaConfig`) and where local state lives (:class:`CommonConfig`).
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from vigil.errors import ConfigError
from vigil.secret import Secret
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


class TlsConfig(FrozenModel):
    """TLS to the brokers. ``tls: {}`` turns it on with the system's trusted CAs."""

    ca_file: Path | None = None  # PEM CA bundle that signed the brokers' certificates (None: system store)
    cert_file: Path | None = None  # client certificate (PEM), for brokers that require mutual TLS
    key_file: Path | None = None  # its private key (PEM); None: in cert_file
    key_password: Secret | None = None  # for an encrypted key_file
    # Off only for brokers reached by an address their certificate does not name; the chain is
    # still verified against ca_file either way.
    check_hostname: bool = True

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        problems: list[KeyProblem] = []
        for name in ("key_file", "key_password"):
            if getattr(self, name) is not None and self.cert_file is None:
                problems.append(((name,), "needs cert_file (the client certificate it belongs to)", None))
        raise_key_errors(self, problems)
        return self


class SaslConfig(FrozenModel):
    """SASL authentication. SCRAM never sends the password; PLAIN does, so use PLAIN only with ``tls``."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: Annotated[str, Field(min_length=1)]
    password: Secret  # {file: PATH} or {env: NAME}; inline works but is warned about at start


class KafkaConfig(FrozenModel):
    """Empty ``bootstrap_servers``: Vigil starts its embedded broker and fills this in."""

    bootstrap_servers: list[str] = Field(default_factory=list)
    client_id: str = "vigil"
    tls: TlsConfig | None = None  # None: plain TCP
    sasl: SaslConfig | None = None  # None: no authentication
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
    # Topics Vigil creates: a production cluster wants 3 replicas (with min.insync.replicas=2 set on
    # the broker or the topics, producers' acks=all then survives one broker down without loss).
    replication_factor: Annotated[int, Field(ge=1, le=32)] = 1
    # False: use topics an operator created; a missing one stops the service at start, named.
    create_topics: bool = True
    topics: TopicsConfig = Field(default_factory=TopicsConfig)

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> KafkaConfig:
        if self.heartbeat_interval >= self.session_timeout:
            message = f"must be shorter than session_timeout ({self.session_timeout:g}s)"
            raise_key_errors(self, [(("heartbeat_interval",), message, self.heartbeat_interval)])
        return self

    @model_validator(mode="after")
    def _security_needs_servers(self) -> KafkaConfig:
        problems: list[KeyProblem] = []
        for name in ("tls", "sasl"):
            if getattr(self, name) is not None and not self.bootstrap_servers:
                message = "needs bootstrap_servers (the embedded broker speaks plain TCP on loopback)"
                problems.append(((name,), message, None))
        raise_key_errors(self, problems)
        return self

    @property
    def security_protocol(self) -> str:
        """Kafka's name for the transport: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
        if self.sasl is None:
            return "SSL" if self.tls else "PLAINTEXT"
        return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"

    def inline_secrets(self) -> list[str]:
        """Key paths of secrets written in the config file itself (warned about at start)."""
        found = []
        if self.sasl is not None and self.sasl.password.source == "inline":
            found.append("kafka.sasl.password")
        if self.tls is not None and self.tls.key_password is not None and self.tls.key_password.source == "inline":
            found.append("kafka.tls.key_password")
        return found


class BrokerConfig(FrozenModel):
    """The embedded Tansu broker, used only when ``kafka.bootstrap_servers`` is empty."""

    storage: Literal["s3", "memory"] = "s3"
    # Loopback unless asked: a broker on 0.0.0.0 takes records from anyone who can reach the port
    # (it has no TLS or authentication). ``advertised_host`` is the name clients are told to use
    # (default: ``host``, or the machine's name when ``host`` is a wildcard address).
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    advertised_host: Annotated[str, Field(min_length=1)] | None = None
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: a free port
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


# ---------------------------------------------------------------------------- environment overrides

ENV_PREFIX = "VIGIL_"
ENV_NESTING = "__"  # VIGIL_ALERTING__API__PORT -> alerting.api.port


def load_layers(
    model: type[BaseModel],
    paths: Path | Sequence[Path] | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config's layers merged, lowest first: the files in order, then ``VIGIL_*`` variables
    (:func:`env_overrides`), then ``overrides`` (command-line options). Unvalidated, so the model's
    validation names the key of whatever is wrong, whichever layer set it."""
    data = load_yaml_files(paths)
    data = merge_mappings(data, env_overrides(model, os.environ if environ is None else environ))
    return merge_mappings(data, overrides or {})


def env_overrides(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, Any]:
    """``VIGIL_<KEY>[__<KEY>...]=value`` for any key of ``model``, pydantic-settings style:
    ``VIGIL_KAFKA__BOOTSTRAP_SERVERS=a:9092,b:9092`` -> ``{"kafka": {"bootstrap_servers": [...]}}``.

    Names are matched case-insensitively and only where the first key is a field of ``model``, so
    other ``VIGIL_*`` variables (``VIGIL_DATASETS``, a secret's ``{env: VIGIL_HOOK_SECRET}``) are left
    alone; a misspelt deeper key is an unknown key at validation. A value is read as a YAML scalar or
    flow collection (``8080``, ``true``, ``[a, b]``, ``{k: v}``); for a text field it stays text, and
    for a list field a plain ``a,b`` is split at the commas.
    """
    out: dict[str, Any] = {}
    for name in sorted(environ):
        path = _env_path(model, name)
        if path is None:
            continue
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:-1])} is set whole by another variable")
        node[path[-1]] = _env_value(environ[name], _leaf_type(model, path))
    return out


def validate_layers(
    model: type[M],
    paths: Path | Sequence[Path] | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> M:
    """:func:`load_layers` validated as ``model``; an error in a key that a variable set says which
    (``alerting.api.port: Input should be a valid integer ... (from VIGIL_ALERTING__API__PORT)``)."""
    env = os.environ if environ is None else environ
    try:
        return validate(model, load_layers(model, paths, env, overrides))
    except ConfigError as exc:
        sources = {".".join(path): name for name in env if (path := _env_path(model, name)) is not None}
        lines = [_with_source(line, sources) for line in str(exc).splitlines()]
        raise ConfigError("\n".join(lines)) from exc


def _with_source(line: str, sources: Mapping[str, str]) -> str:
    key = line.split(": ", 1)[0]
    for path, name in sources.items():
        if key == path or key.startswith((path + ".", path + "[")):
            return f"{line} (from {name})"
    return line


def without_env_overrides(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` less the variables :func:`env_overrides` reads: for a child process whose config
    file already holds them (applied again they could only contradict it)."""
    return {name: value for name, value in environ.items() if _env_path(model, name) is None}


def _env_path(model: type[BaseModel], name: str) -> list[str] | None:
    if not name.upper().startswith(ENV_PREFIX):
        return None
    path = [part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING)]
    return path if path[0] in model.model_fields and "" not in path else None


def _env_value(raw: str, leaf: Any) -> Any:
    if leaf is str or (isinstance(leaf, type) and issubclass(leaf, Path)):
        return raw
    try:
        value = safe_load_bounded(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    if typing.get_origin(leaf) in (list, tuple, set) and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _leaf_type(model: type[BaseModel], path: Sequence[str]) -> Any:
    """The annotation at ``path`` inside ``model`` (None where a path leaves the known fields)."""
    current: Any = model
    for key in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(key)
            current = field.annotation if field is not None else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    return _unwrap(current)


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
