"""The context_likelihood detector: causal, batch-invariant, restorable, and it sees what it should."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from vigil.analytics.models import registry
from vigil.analytics.models.context_likelihood import ContextLikelihood

from vigil.errors import ConfigError


def periodic(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 20 * np.sin(2 * np.pi * t / 96) + rng.normal(0, 1.0, n)


def test_registered_by_name() -> None:
    assert registry.model_class("context_likelihood") is ContextLikelihood


def test_warmup_scores_nothing_and_scores_stay_in_unit_interval() -> None:
    x = periodic(3000)
    scores = ContextLikelihood(["v"], warmup=500).process_many(x[:, None])
    assert np.all(scores[:500] == 0.0)
    assert scores.min() >= 0.0 and scores.max() <= 1.0


def test_causal_a_prefix_scores_the_same_whatever_follows() -> None:
    x = periodic(2500)
    y = x.copy()
    y[2000:] += 100.0  # a different future
    a = ContextLikelihood(["v"], warmup=400).process_many(x[:, None])
    b = ContextLikelihood(["v"], warmup=400).process_many(y[:, None])
    np.testing.assert_array_equal(a[:2000], b[:2000])


def test_batches_and_snapshots_do_not_change_scores() -> None:
    x = periodic(4000, seed=1)
    x[3000] += 60
    whole = ContextLikelihood(["v"], warmup=300).process_many(x[:, None])
    det = ContextLikelihood(["v"], warmup=300)
    parts, i = [], 0
    rng = np.random.default_rng(2)
    while i < len(x):
        k = int(rng.integers(1, 250))
        parts.append(det.process_many(x[i : i + k, None]))
        i += k
        blob = msgpack.unpackb(msgpack.packb(det.snapshot()), strict_map_key=False)  # what the service stores
        det = ContextLikelihood(["v"], warmup=300)
        det.restore(blob)
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-12)


def test_a_spike_and_a_level_shift_score_high_and_normal_data_low() -> None:
    x = periodic(6000, seed=4)
    x[4000] += 80  # a spike far outside anything seen
    x[5000:] += 35  # a level shift inside the seen range's reach
    scores = ContextLikelihood(["v"], warmup=750).process_many(x[:, None])
    assert scores[4000] == 1.0
    assert scores[5000:5020].max() > 0.5
    assert np.quantile(scores[750:3990], 0.99) < 0.3


def test_missing_values_neither_score_nor_teach() -> None:
    x = periodic(2000)
    with_gaps = x.copy()
    with_gaps[1500:1510] = np.nan
    a = ContextLikelihood(["v"], warmup=300).process_many(with_gaps[:, None])
    b = ContextLikelihood(["v"], warmup=300).process_many(np.delete(x, range(1500, 1510))[:, None])
    assert np.all(a[1500:1510] == 0.0)
    np.testing.assert_allclose(np.delete(a, range(1500, 1510)), b)


def test_rows_score_the_max_over_features() -> None:
    x = periodic(2500)
    y = periodic(2500, seed=9)
    y[2200] += 90
    both = ContextLikelihood(["a", "b"], warmup=300).process_many(np.c_[x, y])
    only_y = ContextLikelihood(["b"], warmup=300).process_many(y[:, None])
    assert both[2200] == only_y[2200] == 1.0


def test_score_one_does_not_learn() -> None:
    det = ContextLikelihood(warmup=10)
    for v in periodic(200):
        det.learn_one({"v": float(v)})
    before = det.snapshot()
    assert det.score_one({"v": 500.0}) == 1.0
    assert det.score_many(np.array([[500.0], [500.0]])).tolist() == [1.0, 1.0]  # rows do not see each other
    assert det.snapshot() == before


def test_bad_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"detector\.context_likelihood\.bins"):
        ContextLikelihood(["v"], bins=1)
    with pytest.raises(ConfigError, match="unknown key"):
        ContextLikelihood(["v"], bogus=3)
