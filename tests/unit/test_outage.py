"""Outage episodes under their own name, and a recovery loop that charges each failure to its dependency."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry
from vigil.sinks.service import STORE

from vigil.bus.retry import Outage, run_with_recovery
from vigil.clock import FakeClock
from vigil.errors import RetryableError


class StoreDown(RetryableError):
    pass


def test_a_second_outage_has_its_own_metrics_and_health_keys() -> None:
    registry, clock = CollectorRegistry(), FakeClock()
    bus = Outage("sink", clock, registry)
    store = Outage("sink", clock, registry, dependency=STORE)
    assert store.failed(StoreDown("refused")) == 0.5 and store.failed(StoreDown("refused")) == 1.0
    clock.advance(3)
    assert store.health() == {"sink_store_ok": False, "sink_store_down_s": 3.0, "sink_store_last_error": "refused"}
    assert bus.health()["bus_ok"] is True
    assert registry.get_sample_value("vigil_sink_store_up") == 0
    assert registry.get_sample_value("vigil_bus_up") == 1
    assert registry.get_sample_value("vigil_sink_store_outages_total") == 1
    store.succeeded()
    assert registry.get_sample_value("vigil_sink_store_up") == 1


def test_run_with_recovery_charges_each_failure_to_the_outage_it_belongs_to() -> None:
    registry, clock = CollectorRegistry(), FakeClock()
    bus = Outage("sink", clock, registry, initial_s=0.0)
    store = Outage("sink", clock, registry, initial_s=0.0, dependency=STORE)
    stop = threading.Event()
    failures = [StoreDown("store away"), RetryableError("broker away"), StoreDown("store away")]
    recovered: list[int] = []

    def step() -> None:
        if failures:
            raise failures.pop(0)
        stop.set()

    charge = lambda exc: store if isinstance(exc, StoreDown) else bus  # noqa: E731
    run_with_recovery(stop, step, lambda: recovered.append(1), bus, charge)
    assert len(recovered) == 3
    assert registry.get_sample_value("vigil_sink_store_retries_total") == 2
    assert registry.get_sample_value("vigil_bus_retries_total") == 1
    # A step without error ends the broker's episode; the store's ends only when the store answers.
    assert bus.down_since is None and store.down_since is not None
