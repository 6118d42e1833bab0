"""One TelemetryBatch per host per tick: runs into columns, merged, cached, cleaned."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from vigil.collectors.agent.batching import BatchAssembler
from vigil.collectors.agent.worker import CollectResult, SeriesCache, run_collector
from vigil.collectors.base import Item, Problem

from vigil.codec import decode, encode
from vigil.events import LogEvent, TelemetryBatch

TICK = 1_767_225_600.0


class Scripted:
    """A collector that yields a given list of items, then optionally raises."""

    name = "scripted"

    def __init__(self, items: list[object], raises: Exception | None = None) -> None:
        self.items = items
        self.raises = raises

    def collect(self) -> Iterator[Item]:
        yield from self.items  # type: ignore[misc]
        if self.raises is not None:
            raise self.raises


def run(items: list[object], raises: Exception | None = None, cache: SeriesCache | None = None) -> CollectResult:
    return run_collector("c", Scripted(items, raises), TICK, cache or SeriesCache())


def test_a_run_sorts_samples_logs_and_problems() -> None:
    event = LogEvent(TICK, "node", "default", "xid", 79, "NVRM: Xid 79")
    result = run([("a", 1.0), event, Problem("not_supported", "fan"), ("b", 2)])
    assert result.series == ("a", "b")
    assert result.values.tolist() == [1.0, 2.0]
    assert result.logs == [event]
    assert result.problems == [Problem("not_supported", "fan")]
    assert result.succeeded


def test_an_exception_keeps_the_samples_yielded_before_it() -> None:
    result = run([("a", 1.0), ("b", 2.0)], raises=RuntimeError("NVML gone"))
    assert result.series == ("a", "b")
    assert isinstance(result.exception, RuntimeError)
    assert not result.succeeded


def test_a_run_with_only_problems_is_not_a_success() -> None:
    assert not run([Problem("permission", "/dev/kmsg")]).succeeded
    assert run([]).succeeded  # nothing to read is not a failure


def test_bad_items_and_values_become_problems_and_the_rest_is_kept() -> None:
    result = run([("a", 1.0), ("b", "hot"), ("c", None), 42, (7, 1.0), ("d", 4.0)])
    assert result.series == ("a", "d")
    assert result.values.tolist() == [1.0, 4.0]
    assert sorted(p.error for p in result.problems) == ["bad_item", "bad_sample", "bad_sample", "bad_sample"]


def test_the_series_tuple_is_reused_while_keys_do_not_change() -> None:
    cache = SeriesCache()
    first = run([("a", 1.0), ("b", 2.0)], cache=cache)
    second = run([("a", 3.0), ("b", 4.0)], cache=cache)
    third = run([("a", 3.0), ("c", 4.0)], cache=cache)
    assert second.series is first.series
    assert third.series == ("a", "c") and third.series is not first.series


def result(name: str, series: tuple[str, ...], values: list[float]) -> CollectResult:
    return CollectResult(name, TICK, series, np.array(values, dtype=np.float64))


def test_runs_of_one_tick_merge_into_one_batch_in_collector_order() -> None:
    assembler = BatchAssembler("node-1", "dc1")
    batch, problems = assembler.assemble(TICK, [result("nvml", ("g1", "g2"), [1, 2]), result("host", ("h1",), [3])])
    assert batch is not None and not problems
    assert batch.host == "node-1" and batch.cluster == "dc1"
    assert batch.ts.tolist() == [TICK]
    assert batch.series == ("h1", "g1", "g2")
    assert batch.values.tolist() == [[3.0, 1.0, 2.0]]
    back = decode(encode(batch))
    assert isinstance(back, TelemetryBatch) and back.series == batch.series


def test_the_merged_series_tuple_is_cached_between_ticks() -> None:
    assembler = BatchAssembler("n", "c")
    a, b = ("x", "y"), ("z",)
    first, _ = assembler.assemble(TICK, [result("a", a, [1, 2]), result("b", b, [3])])
    second, _ = assembler.assemble(TICK + 1, [result("a", a, [4, 5]), result("b", b, [6])])
    assert first is not None and second is not None
    assert second.series is first.series
    assert second.values.tolist() == [[4.0, 5.0, 6.0]]
    third, _ = assembler.assemble(TICK + 2, [result("a", a, [7, 8])])  # b not due this tick
    assert third is not None and third.series == ("x", "y")


def test_a_series_yielded_twice_is_kept_once_with_the_last_value_and_reported() -> None:
    assembler = BatchAssembler("n", "c")
    for _ in range(2):  # the cached layout reports it on every tick, not only when it changes
        batch, problems = assembler.assemble(TICK, [result("a", ("x", "y"), [1, 2]), result("b", ("x",), [9])])
        assert batch is not None
        assert batch.series == ("x", "y")
        assert batch.values.tolist() == [[9.0, 2.0]]
        assert problems == [("b", Problem("duplicate_series", "x"))]


def test_a_non_finite_counter_is_left_out_so_the_batch_stays_decodable() -> None:
    assembler = BatchAssembler("n", "c")
    series = ("gpu_temperature_celsius", 'gpu_ecc_dbe_volatile_total{gpu_index="0"}', "host_load1")
    batch, problems = assembler.assemble(TICK, [result("nvml", series, [float("nan"), float("inf"), 1.0])])
    assert batch is not None
    assert batch.series == ("gpu_temperature_celsius", "host_load1")  # a NaN gauge is a legal "no value"
    assert problems[0][0] == "nvml" and problems[0][1].error == "non_finite_counter"
    assert isinstance(decode(encode(batch)), TelemetryBatch)


def test_no_samples_no_batch() -> None:
    assert BatchAssembler("n", "c").assemble(TICK, [result("a", (), [])]) == (None, [])
