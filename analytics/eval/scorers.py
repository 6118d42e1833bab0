"""How a detector's scores are made for an honest threshold: calibration scores from train, causal test scores.

Every scorer returns the raw scores of two stretches, each row scored by a model that had not
learnt it:

- *calibration*: rows of train. An online model (``adaptive_mspc``, ``robust_z``,
  ``var_residual_online``) runs over all of train, score first then learn, and its scores from
  ``CALIBRATION_START`` of train on are the calibration scores (the first fifth is its warm-up).
  A frozen model (``mspc``, ``var_residual``, the honest PCA) is fitted on the first
  ``1 - HOLDOUT`` of train and scores the rest.
- *test*: the online model goes on over test without a restart; the frozen one scores it as it is.

An ensemble (``a+b``) is made in :mod:`.honest` from its members' scores. Nothing here reads a test
label or a test statistic, and no score depends on a later row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits
from vigil.analytics.eval import baselines
from vigil.analytics.eval.metrics import FloatArray
from vigil.analytics.eval.smd_data import Machine
from vigil.analytics.models.adaptive_mspc import AdaptiveMSPC
from vigil.analytics.models.base import Detector
from vigil.analytics.models.forecast import VARResidual
from vigil.analytics.models.mspc import MSPCDetector
from vigil.analytics.models.robust import RobustZ

CALIBRATION_START = 0.2  # online models: train rows from here on are calibration scores
HOLDOUT = 0.2  # frozen models: the last fifth of train is held out of the fit and scored
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Scores:
    calibration: FloatArray  # raw scores of train rows ``start`` .. end of train
    test: FloatArray  # raw scores of every test row
    start: int  # the train row the calibration scores begin at


def causal_mean(x: FloatArray, window: int) -> FloatArray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start): uses no future sample."""
    cum = np.concatenate(([0.0], np.cumsum(x)))
    stop = np.arange(1, len(x) + 1)
    start = np.maximum(stop - window, 0)
    result: FloatArray = (cum[stop] - cum[start]) / (stop - start)
    return result


def _features(machine: Machine) -> list[str]:
    return [f"metric_{i}" for i in range(machine.train.shape[1])]


def _online(model: Detector, machine: Machine) -> Scores:
    with threadpool_limits(limits=1, user_api="blas"):  # d x d solves: more threads only contend on 2 cores
        train, test = model.process_many(machine.train), model.process_many(machine.test)
    start = int(len(machine.train) * CALIBRATION_START)
    return Scores(train[start:], test, start)


def _frozen(model: Detector, machine: Machine) -> Scores:
    start = int(len(machine.train) * (1 - HOLDOUT))
    with threadpool_limits(limits=1, user_api="blas"):
        model.learn_many(machine.train[:start])
        rows = np.concatenate((machine.train[start:], machine.test))  # consecutive: lags run across the seam
        scores = model.score_many(rows)
    return Scores(scores[: len(machine.train) - start], scores[len(machine.train) - start :], start)


def adaptive_mspc(machine: Machine) -> Scores:
    """The online adaptive MSPC with its defaults, durations turned into rows at the machine's interval."""
    per_day = DAY_S / machine.interval_s
    model = AdaptiveMSPC(
        _features(machine),
        half_life=0.5 * per_day,
        memory=30.0 * per_day,
        accept_after=max(1, round(0.25 * per_day)),
    )
    return _online(model, machine)


def _pca(how: str) -> Callable[[Machine], Scores]:
    def scorer(machine: Machine) -> Scores:
        start = int(len(machine.train) * (1 - HOLDOUT))
        calibration, test = baselines.pca_honest(machine.train[:start], machine.train[start:], machine.test, how)
        return Scores(calibration, test, start)

    return scorer


SCORERS: dict[str, Callable[[Machine], Scores]] = {
    "adaptive_mspc": adaptive_mspc,
    "mspc": lambda m: _frozen(MSPCDetector(_features(m)), m),
    "var_residual": lambda m: _frozen(VARResidual(_features(m)), m),
    "var_residual_online": lambda m: _online(VARResidual(_features(m)), m),
    "robust_z": lambda m: _online(RobustZ(_features(m)), m),
    **{f"pca_{how}": _pca(how) for how in baselines.HONEST_PCA},
}
