"""The live stages, created by name from ``analytics.stages`` through a registry built on demand.

Two shapes (``base.py``): a ``TelemetryStage`` scores a whole poll's telemetry frame with numpy
(``zscore``, ``peers``, ``threshold``, ``truthfulness``, and ``model``: any registered model per host
or GPU); an ``EventStage`` handles log and training events and has a clock ``tick`` (``xid``,
``training``). The engine (``engine.py``) runs them over the slot table (``slots.py``) and keeps
their state per partition; ``state.py`` stores it.
"""

from __future__ import annotations

from typing import Any

from vigil.analytics.config import AnalyticsConfig, StageConfig
from vigil.analytics.stages.base import AnyStage, EventStage, TelemetryStage
from vigil.analytics.stages.model import ModelStage
from vigil.analytics.stages.peers import PeersStage
from vigil.analytics.stages.slots import SlotTable
from vigil.analytics.stages.threshold import ThresholdStage
from vigil.analytics.stages.training import TrainingStage
from vigil.analytics.stages.truthfulness import TruthfulnessStage
from vigil.analytics.stages.xid import XidStage
from vigil.analytics.stages.zscore import ZScoreStage

from vigil.registry import Registry
from vigil.xid import XidCatalog

__all__ = ["AnyStage", "EventStage", "TelemetryStage", "build_registry"]


def _zscore(config: AnalyticsConfig, slots: SlotTable, **_: Any) -> AnyStage:
    return ZScoreStage(config.zscore, slots)


def _peers(config: AnalyticsConfig, slots: SlotTable, **_: Any) -> AnyStage:
    return PeersStage(config.peers, slots)


def _threshold(config: AnalyticsConfig, slots: SlotTable, **_: Any) -> AnyStage:
    return ThresholdStage(config.rules, slots)


def _xid(config: AnalyticsConfig, catalog: XidCatalog | None = None, **_: Any) -> AnyStage:
    return XidStage(config.xid, catalog if catalog is not None else XidCatalog.load())


def _training(config: AnalyticsConfig, **_: Any) -> AnyStage:
    return TrainingStage(config.training, config.hang, config.zscore)


def _truthfulness(config: AnalyticsConfig, slots: SlotTable, **_: Any) -> AnyStage:
    return TruthfulnessStage(config.truthfulness, slots)


def _model(spec: StageConfig, slots: SlotTable, **_: Any) -> AnyStage:
    return ModelStage(spec, slots)


def build_registry() -> Registry[AnyStage]:
    """Every stage this package ships; factories take ``spec``, ``config``, ``slots`` and ``catalog``."""
    registry: Registry[AnyStage] = Registry("stage")
    registry.add("zscore", _zscore)
    registry.add("peers", _peers)
    registry.add("threshold", _threshold)
    registry.add("xid", _xid)
    registry.add("training", _training)
    registry.add("truthfulness", _truthfulness)
    registry.add("model", _model)
    return registry
