"""Scalar twins of the vectorised z-score and post-rule, for the low-volume event paths.

They follow exactly the formulas of ``detectors/zscore.py`` (EWMA level, EW mean absolute
deviation scaled to sigma, relative scale floor; min-hits-in-window with hysteresis), so a
training job's loss is judged the way a GPU's temperature is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from vigil.analytics.config import ZScoreConfig

from vigil.events import Decision

MAD_TO_SIGMA = 1.2533


@dataclass(slots=True)
class RobustStat:
    n: int = 0
    mean: float = 0.0
    mad: float = 0.0

    def score(self, y: float, config: ZScoreConfig) -> float:
        if self.n < config.warmup or not math.isfinite(y):
            return 0.0
        scale = max(self.mad * MAD_TO_SIGMA, config.rel_floor * abs(self.mean), config.abs_floor)
        return (y - self.mean) / scale

    def learn(self, y: float, alpha: float) -> None:
        if not math.isfinite(y):
            return
        if self.n == 0:
            self.mean, self.mad = y, 0.0
        else:
            a = max(alpha, 1.0 / (self.n + 1))
            delta = y - self.mean
            self.mean += a * delta
            self.mad += a * (abs(delta) - self.mad)
        self.n += 1

    def dump(self) -> list[float]:
        return [self.n, self.mean, self.mad]

    @classmethod
    def load(cls, raw: Sequence[float]) -> RobustStat:
        return cls(int(raw[0]), float(raw[1]), float(raw[2]))


@dataclass(slots=True)
class Hysteresis:
    """Fire when min_hits of the last ``window`` samples exceed; resolve after clear_after calm ones."""

    hist: int = 0
    active: bool = False
    below: int = 0

    def update(self, exceed: bool, calm: bool, config: ZScoreConfig) -> Decision | None:
        self.hist = ((self.hist << 1) | int(exceed)) & ((1 << config.window) - 1)
        if not self.active:
            if bin(self.hist).count("1") >= config.min_hits:
                self.active, self.below = True, 0
                return "firing"
            return None
        self.below = self.below + 1 if calm else 0
        if self.below >= config.clear_after:
            self.active, self.below = False, 0
            return "resolved"
        return None

    def dump(self) -> list[int]:
        return [self.hist, int(self.active), self.below]

    @classmethod
    def load(cls, raw: Sequence[int]) -> Hysteresis:
        return cls(int(raw[0]), bool(raw[1]), int(raw[2]))
