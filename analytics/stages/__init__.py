"""Detectors, created by name from config through a registry built on demand (no import-time state).

Two shapes (``base.py``): ``TelemetryDetector`` scores a whole poll's telemetry frame with numpy
(``zscore``, ``peers``, ``threshold``, ``truthfulness``); ``EventDetector`` handles log and training
events one by one and has a clock ``tick`` (``xid``, ``training``).
"""

from __future__ import annotations

from typing import Any

from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.stages.base import AnyDetector, EventDetector, TelemetryDetector
from vigil.analytics.stages.peers import PeersDetector
from vigil.analytics.stages.slots import SlotTable
from vigil.analytics.stages.threshold import ThresholdDetector
from vigil.analytics.stages.training import TrainingDetector
from vigil.analytics.stages.truthfulness import TruthfulnessDetector
from vigil.analytics.stages.xid import XidDetector
from vigil.analytics.stages.zscore import ZScoreDetector

from vigil.registry import Registry
from vigil.xid import XidCatalog

__all__ = ["AnyDetector", "EventDetector", "TelemetryDetector", "build_registry"]


def _zscore(config: AnalyticsConfig, slots: SlotTable, **_: Any) -> AnyDetector:
    return ZScoreDetector(config.zscore, slots)


def _peers(config: AnalyticsConfig, slots: SlotTable, **_: Any) -> AnyDetector:
    return PeersDetector(config.peers, slots)


def _threshold(config: AnalyticsConfig, slots: SlotTable, **_: Any) -> AnyDetector:
    return ThresholdDetector(config.rules, slots)


def _xid(config: AnalyticsConfig, catalog: XidCatalog | None = None, **_: Any) -> AnyDetector:
    return XidDetector(config.xid, catalog if catalog is not None else XidCatalog.load())


def _training(config: AnalyticsConfig, **_: Any) -> AnyDetector:
    return TrainingDetector(config.training, config.hang, config.zscore)


def _truthfulness(config: AnalyticsConfig, slots: SlotTable, **_: Any) -> AnyDetector:
    return TruthfulnessDetector(config.truthfulness, slots)


def build_registry() -> Registry[AnyDetector]:
    """Every detector this package ships; factories take ``config``, ``slots`` and ``catalog``."""
    registry: Registry[AnyDetector] = Registry("detector")
    registry.add("zscore", _zscore)
    registry.add("peers", _peers)
    registry.add("threshold", _threshold)
    registry.add("xid", _xid)
    registry.add("training", _training)
    registry.add("truthfulness", _truthfulness)
    return registry
