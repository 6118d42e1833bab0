"""``TrainingStepBatch``: one job's steps in columns, binary like telemetry, with the single step's limits."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest

from vigil.codec import decode, encode
from vigil.errors import InvalidEvent
from vigil.events import TrainingStep, TrainingStepBatch

NOW = 1_767_225_600.0


def steps(n: int = 64) -> list[TrainingStep]:
    return [
        TrainingStep(
            NOW + i // 8,
            "job-7",
            i % 8,
            f"node-{i % 8 // 4}",
            100 + i // 8,
            2.0 + i * 1e-3,
            0.5,
            gpu_index=i % 4,
            compute_time_s=0.4,
            tokens_per_s=1e5 if i % 2 else None,
            cluster="c1",
        )
        for i in range(n)
    ]


def test_a_batch_round_trips_exactly_with_none_as_nan() -> None:
    original = TrainingStepBatch.from_steps(steps())
    decoded = decode(encode(original))
    assert isinstance(decoded, TrainingStepBatch)
    assert (decoded.job_id, decoded.cluster, decoded.hosts, decoded.rows) == ("job-7", "c1", ("node-0", "node-1"), 64)
    for name in (*TrainingStepBatch.INTS, *TrainingStepBatch.FLOATS):
        np.testing.assert_array_equal(getattr(decoded, name), getattr(original, name), err_msg=name)
        assert getattr(decoded, name).dtype == (np.int64 if name in TrainingStepBatch.INTS else np.float64)
    np.testing.assert_allclose(decoded.ts, original.ts, atol=1e-6)
    assert math.isnan(decoded.tokens_per_s[0]) and decoded.tokens_per_s[1] == 1e5
    assert np.isnan(decoded.grad_norm).all()  # never reported
    assert len(encode(original)) < 64 * 100  # about 90 bytes a row before compression, not a map per row


def test_nan_loss_and_unmeasured_times_are_legitimate() -> None:
    one = steps(1)[0]
    batch = TrainingStepBatch.from_steps([TrainingStep(NOW, "j", 0, "h", 1, float("nan"), float("nan"))])
    decoded = decode(encode(batch))
    assert isinstance(decoded, TrainingStepBatch) and math.isnan(decoded.loss[0]) and math.isnan(decoded.step_time_s[0])
    assert decode(encode(one)) == one  # old producers' single steps still decode


def tampered(**changes: Any) -> bytes:
    body = msgpack.unpackb(encode(TrainingStepBatch.from_steps(steps(4))))
    for name, value in changes.items():
        if value is None:
            del body[name]
        else:
            body[name] = value
    return bytes(msgpack.packb(body))


def column(dtype: str, *values: float) -> bytes:
    return np.array(values, dtype=dtype).tobytes()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"rank": column("<i4", 0, 1, -5, 3)}, "TrainingStepBatch.rank: -5 is outside 0..2147483647"),
        ({"step": column("<i8", 1, 2, 2**60, 3)}, "TrainingStepBatch.step: 1152921504606846976 is outside 0..9007"),
        ({"gpu_index": column("<i2", 0, 300, 1, 1)}, "TrainingStepBatch.gpu_index: 300 is outside -1..255"),
        ({"host_index": column("<i4", 0, 0, 1, 0)}, "TrainingStepBatch.host_index: 1 is outside 0..0"),
        ({"step_time_s": column("<f8", 1, 1, 1e9, 1)}, "TrainingStepBatch.step_time_s: 1000000000.0 is outside"),
        ({"compute_time_s": column("<f8", 1, -1, 1, 1)}, "TrainingStepBatch.compute_time_s: -1.0 is outside"),
        ({"ts": column("<i8", 1, 2, 3, 4)}, "TrainingStepBatch.ts outside 2000..2100"),
        ({"loss": column("<f8", 1, 2, 3)}, "TrainingStepBatch.loss has 24 bytes for 4 rows"),
        ({"grad_norm": None}, "TrainingStepBatch.grad_norm is missing"),
        ({"hosts": []}, "TrainingStepBatch.hosts must be a non-empty list"),
        ({"job_id": ""}, "TrainingStepBatch.job_id/cluster must be strings"),
        ({"ts": b""}, "TrainingStepBatch has 0 rows"),
        ({"extra": 1}, "TrainingStepBatch has unknown fields ['extra']"),
        ({"v": 2}, "TrainingStepBatch schema version 2 is not supported (expected 1)"),
    ],
)
def test_a_batch_no_real_job_can_send_is_invalid_with_the_reason(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(tampered(**changes))
    assert str(caught.value).startswith(reason)
