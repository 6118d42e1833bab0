"""The detector API: score first, then learn; one stream of feature vectors per instance.

A sample is either a mapping ``{feature: value}`` (``learn_one``/``score_one``) or a row of a 2-D
float array whose columns are :attr:`Detector.features` in order (``learn_many``/``score_many``).
Missing features are NaN and ignored; a feature seen for the first time is added. Scores are
finite floats, higher is more anomalous, 0.0 when the model knows nothing yet.

``score_many`` never learns; ``process_many`` is the causal loop (each row scored with the state
learnt from the rows before it, then learnt), which evaluation and the service use. Models that
can vectorise it override it; the default loops over rows. A model whose learning is one costly
step per batch (an eigen-solve) may declare ``block > 1``: ``process_many`` then scores each block
of that many rows with the state learnt before the block, still causal, at most ``block - 1`` rows
stale; the contract suite checks exactly that.

Construction from config goes through :meth:`Detector.from_config` (the registry calls it), so a
bad option fails at start naming its key. A model that also works as a *bank* (thousands of
independent univariate series, state in numpy columns, one vector step per round) returns one
from :meth:`Detector.make_bank`; the live telemetry path and ``vigil bench detectors`` use it.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt
from vigil.analytics.models.columns import ColumnStore, IntArray

from vigil.config import FrozenModel, validate
from vigil.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


class SnapshotMismatch(ValueError):
    """A snapshot written by another model, or by another version of this one."""


@runtime_checkable
class Bank(Protocol):
    """The vectorised form of a univariate model over many series; state lives in store columns."""

    def columns(self) -> list[str]:
        """The store columns holding its state (to snapshot, and to size: bytes per series)."""

    def process(self, slots: IntArray, y: FloatArray) -> FloatArray:
        """Score ``y[i]`` for series ``slots[i]`` (each slot at most once), then learn it."""


class Detector(ABC):
    name: ClassVar[str]
    version: ClassVar[int] = 1
    # The options model, validated from config and passed to the constructor as ``options=``;
    # None: the config's options are the constructor's keyword arguments.
    Options: ClassVar[type[FrozenModel] | None] = None
    # True when scores are already robust sigmas (the decision layer then needs no calibration).
    calibrated: ClassVar[bool] = False
    # Rows scored together with the state from before them in process_many (see the module doc).
    block: ClassVar[int] = 1
    # How closely the conformance checks (``checks.py``) expect batched and row-by-row scores to agree;
    # a float32 model (torch) rounds a batch unlike one row at a time.
    check_rtol: ClassVar[float] = 1e-9

    @classmethod
    def test_options(cls) -> dict[str, Any]:
        """Small options for the conformance checks and tests (River's per-class test parameters):
        windows short enough that the model's fits happen within a few hundred rows."""
        return {}

    @classmethod
    def from_config(
        cls, options: Mapping[str, Any] | None = None, features: Sequence[str] = (), key: str = "options"
    ) -> Self:
        """A model from config; an unknown or invalid option raises ConfigError naming ``key.option``."""
        opts = dict(options or {})
        if cls.Options is not None:
            return cls(features, options=validate(cls.Options, opts, key))  # type: ignore[call-arg]
        params = inspect.signature(cls).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(opts) - set(params) - {"features"})
            if unknown:
                raise ConfigError(f"{key}.{unknown[0]}: unknown key")
        return cls(features, **opts)

    @classmethod
    def make_bank(
        cls, options: Mapping[str, Any], store: ColumnStore, prefix: str = "", key: str = "options"
    ) -> Bank | None:
        """The bank form with its columns in ``store`` (names prefixed), or None when the model has none."""
        return None

    def __init__(self, features: Sequence[str] = ()) -> None:
        self.features: list[str] = list(features)
        self._index: dict[str, int] = {f: i for i, f in enumerate(self.features)}

    # -- mapping <-> row
    def row(self, x: Mapping[str, float]) -> FloatArray:
        """``x`` as a row over :attr:`features`, adding features not seen before (NaN where missing)."""
        for key in x:
            if key not in self._index:
                self._index[key] = len(self.features)
                self.features.append(key)
                self._grow(len(self.features))
        out = np.full(len(self.features), np.nan)
        for key, value in x.items():
            out[self._index[key]] = value
        return out

    def _grow(self, n_features: int) -> None:  # noqa: B027
        """Resize per-feature state after a new feature appeared (models with such state override)."""

    def learn_one(self, x: Mapping[str, float]) -> None:
        self.learn_many(self.row(x)[None, :])

    def score_one(self, x: Mapping[str, float]) -> float:
        known = {k: v for k, v in x.items() if k in self._index}  # scoring must not add features
        row = np.full(len(self.features), np.nan)
        for key, value in known.items():
            row[self._index[key]] = value
        return float(self.score_many(row[None, :])[0])

    @abstractmethod
    def learn_many(self, X: FloatArray) -> None:
        """Learn rows in time order."""

    @abstractmethod
    def score_many(self, X: FloatArray) -> FloatArray:
        """One finite score per row, without learning."""

    def explain_many(self, X: FloatArray) -> FloatArray:
        """Each feature's share of each row's score (rows x features, higher = more to blame), without
        learning; NaN where the model cannot attribute. The decision layer names the top feature."""
        return np.full(np.shape(X), np.nan)

    def process_many(self, X: FloatArray) -> FloatArray:
        out = np.empty(len(X))
        for i in range(len(X)):
            out[i] = self.score_many(X[i : i + 1])[0]
            self.learn_many(X[i : i + 1])
        return out

    # -- state
    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything learnt, as msgpack-able values (lists, numbers, strings)."""

    @abstractmethod
    def load_state(self, state: Mapping[str, Any]) -> None: ...

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "features": list(self.features), "state": self.state()}

    def restore(self, blob: Mapping[str, Any]) -> None:
        if blob.get("name") != self.name or blob.get("version") != self.version:
            raise SnapshotMismatch(
                f"snapshot is {blob.get('name')} v{blob.get('version')}, this is {self.name} v{self.version}"
            )
        self.features = list(blob["features"])
        self._index = {f: i for i, f in enumerate(self.features)}
        self.load_state(blob["state"])
