"""Models by name: the one registry, a line per model in :data:`MODELS`; created from config by :func:`create`.

The table maps a name to ``module:Class`` and is imported lazily, so listing or creating a light
model never imports a heavy one (torch, scikit-learn). Each class declares its own ``name`` (the
key it is listed under), its ``Options`` and its small ``test_options()``; to add a model, add its
line here and the conformance checks (``checks.py``, run by ``tests/contract``), ``vigil bench
detectors`` and the live ``model`` stage pick it up. Config form: ``{"name": "robust_z", "options":
{...}}`` (:class:`ModelSpec`); a bad option raises ``ConfigError`` naming its key path.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from pydantic import Field, ValidationError
from vigil.analytics.models.base import Detector

from vigil.config import FrozenModel, validate
from vigil.errors import ConfigError
from vigil.registry import Registry

MODELS: dict[str, str] = {
    "robust_z": "vigil.analytics.models.robust:RobustZ",
    "context_likelihood": "vigil.analytics.models.context_likelihood:ContextLikelihood",
    "mspc": "vigil.analytics.models.mspc:MSPCDetector",
    "adaptive_mspc": "vigil.analytics.models.adaptive_mspc:AdaptiveMSPC",
    "seasonal": "vigil.analytics.models.seasonal:SeasonalDetector",
    "iforest": "vigil.analytics.models.iforest:IsolationForestDetector",
    "pca": "vigil.analytics.models.pca:PCADetector",
    "autoencoder": "vigil.analytics.models.autoencoder:AutoencoderDetector",  # extra `deep` (torch)
    "peer_gpu": "vigil.analytics.models.peers:PeerDetector",
    "peer_rank": "vigil.analytics.models.peers:RankPeerDetector",
    "frozen": "vigil.analytics.models.truthfulness:FrozenDetector",
    "changepoint": "vigil.analytics.models.changepoint:ChangePointDetector",
    "var_residual": "vigil.analytics.models.forecast:VARResidual",
}


class ModelSpec(FrozenModel):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


def load_class(path: str) -> type[Detector]:
    module, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise TypeError(f"{path} is not a Detector subclass")
    return cls


def _factory(path: str, options: Mapping[str, Any], features: Sequence[str], key: str) -> Detector:
    cls = load_class(path)
    try:
        return cls.from_config(options, features, key)
    except (ValueError, TypeError) as exc:  # a constructor's own check of an option's value
        raise ConfigError(f"{key}: {exc}") from exc
    except ImportError as exc:  # an optional extra (torch for the autoencoder) is not installed
        raise ConfigError(f"{key}: model {cls.name!r} cannot be made here: {exc}") from exc


def build_registry(table: Mapping[str, str] | None = None) -> Registry[Detector]:
    """A fresh registry over ``table`` (default :data:`MODELS`); built on demand, no global state."""
    registry: Registry[Detector] = Registry("model")
    for name, path in (MODELS if table is None else table).items():
        registry.add(name, partial(_factory, path))
    return registry


def names() -> list[str]:
    return sorted(MODELS)


def _unknown(name: str, key: str) -> ConfigError:
    return ConfigError(f"{key}: unknown model {name!r} (known: {', '.join(names())})")


def model_class(name: str, key: str = "model.name") -> type[Detector]:
    if name not in MODELS:
        raise _unknown(name, key)
    return load_class(MODELS[name])


Loc = tuple[str | int, ...]


def option_problems(name: str, options: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """What is wrong with ``options`` for the model ``name``: (key path within the options, message)
    pairs, empty when a model can be made from them. For config checks that name every bad key."""
    cls = model_class(name)
    if cls.Options is not None:
        try:
            cls.Options.model_validate(dict(options))
        except ValidationError as exc:
            return [(tuple(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
    else:
        params = inspect.signature(cls).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(options) - set(params) - {"features"})
            if unknown:
                return [((key,), "unknown key") for key in unknown]
    try:
        build_registry().create(name, options=dict(options), features=[], key="options")
    except ConfigError as exc:
        return [((), str(exc).removeprefix("options: ").removeprefix("options."))]
    return []


def create(
    name: str, options: Mapping[str, Any] | None = None, features: Sequence[str] = (), key: str = "model"
) -> Detector:
    """A model by name; ``key`` is where its config sits (``analytics.models[0]``), for error messages."""
    registry = build_registry()
    if name not in registry:
        raise _unknown(name, f"{key}.name")
    return registry.create(name, options=dict(options or {}), features=features, key=f"{key}.options")


def create_spec(spec: ModelSpec | Mapping[str, Any], features: Sequence[str] = (), key: str = "model") -> Detector:
    """A model from its config section (a :class:`ModelSpec` or the mapping it validates)."""
    parsed = spec if isinstance(spec, ModelSpec) else validate(ModelSpec, spec, key)
    return create(parsed.name, parsed.options, features, key)
