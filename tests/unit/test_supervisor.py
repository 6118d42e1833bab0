"""The supervisor's restart policy on a fake clock with fake children: backoff, reset, giving up."""

from __future__ import annotations

import pytest

from vigil.cli.supervisor import SupervisionConfig, Supervisor
from vigil.config import validate
from vigil.errors import ConfigError, VigilError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Child:
    """A fake process: ``crash()`` kills it; the supervisor's ``start`` brings it back (or fails)."""

    def __init__(self) -> None:
        self.running = True
        self.starts = 0
        self.fail_starts = 0

    def alive(self) -> bool:
        return self.running

    def start(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            raise VigilError("port in use")
        self.starts += 1
        self.running = True

    def crash(self) -> None:
        self.running = False


def make(**policy: object) -> tuple[Supervisor, Clock, Child]:
    clock, child = Clock(), Child()
    sup = Supervisor(SupervisionConfig.model_validate(policy), clock)
    sup.watch("analytics", child.alive, child.start, describe=lambda: "exit -9")
    return sup, clock, child


def run_until_restarted(sup: Supervisor, clock: Clock, child: Child, step: float = 0.5) -> float:
    """Advance the clock until the child runs again; returns the seconds it stayed dead."""
    died = clock.t
    for _ in range(1000):
        sup.check()
        if child.running or sup.gave_up:
            return clock.t - died
        clock.t += step
    raise AssertionError("never restarted")


def test_a_dead_child_is_restarted_after_the_backoff_and_counted() -> None:
    sup, clock, child = make(backoff=1)
    assert sup.check() == [] and sup.restarts == {"analytics": 0}
    child.crash()
    died = sup.check()
    assert [(e.kind, e.detail) for e in died] == [("died", "exit -9; restart in 1s")]
    assert not child.running and sup.status()["analytics"].state == "restarting"
    clock.t += 0.5
    assert sup.check() == [] and not child.running  # backoff not over yet
    clock.t += 0.5
    assert [e.kind for e in sup.check()] == ["restarted"]
    assert child.running and child.starts == 1 and sup.restarts == {"analytics": 1}
    assert sup.started_at("analytics") == clock.t and sup.status()["analytics"].state == "up"


def test_backoff_doubles_per_restart_up_to_the_cap() -> None:
    sup, clock, child = make(backoff=1, max_backoff=4, max_restarts=100, reset_after=1000)
    downtimes = []
    for _ in range(5):
        child.crash()
        downtimes.append(run_until_restarted(sup, clock, child))
        clock.t += 1  # up a moment, far less than reset_after
    assert downtimes == [1, 2, 4, 4, 4]


def test_backoff_resets_once_a_child_stayed_up_long_enough() -> None:
    sup, clock, child = make(backoff=1, max_backoff=30, reset_after=60, max_restarts=100)
    for _ in range(3):
        child.crash()
        run_until_restarted(sup, clock, child)
    child.crash()
    assert run_until_restarted(sup, clock, child) == 8
    clock.t += 60  # stayed up a minute: the next crash is not part of the loop
    child.crash()
    assert run_until_restarted(sup, clock, child) == 1


def test_too_many_restarts_in_the_window_gives_up_and_names_the_unit() -> None:
    sup, clock, child = make(backoff=1, max_backoff=1, max_restarts=3, window=60)
    events = []
    for _ in range(4):
        child.crash()
        died_at = clock.t
        while not child.running and not sup.gave_up:
            events += sup.check()
            clock.t += 0.5
        assert clock.t - died_at < 5
    assert sup.gave_up == "analytics" and child.starts == 3
    assert events[-1].kind == "gave_up" and "3 restarts within 60s" in events[-1].detail
    assert sup.status()["analytics"].state == "gave up"
    assert sup.check() == []  # after giving up nothing is restarted any more


def test_restarts_outside_the_window_do_not_count() -> None:
    sup, clock, child = make(backoff=1, max_backoff=1, max_restarts=2, window=30, reset_after=1000)
    for _ in range(6):
        child.crash()
        run_until_restarted(sup, clock, child)
        clock.t += 20  # one crash every ~21 s: at most two in any 30 s
    assert sup.gave_up is None and sup.restarts == {"analytics": 6}


def test_a_failed_start_is_retried_with_more_backoff_and_counts_toward_giving_up() -> None:
    sup, clock, child = make(backoff=1, max_backoff=8, max_restarts=3, window=600)
    child.fail_starts = 2
    child.crash()
    kinds = []
    while not child.running and not sup.gave_up:
        kinds += [e.kind for e in sup.check()]
        clock.t += 0.5
    assert kinds == ["died", "restart_failed", "restart_failed", "restarted"]
    assert sup.restarts == {"analytics": 1}
    child.crash()
    while not sup.gave_up:
        sup.check()
        clock.t += 0.5
    assert sup.gave_up == "analytics"


def test_units_are_supervised_independently() -> None:
    clock = Clock()
    sup = Supervisor(SupervisionConfig(), clock)
    broker, sim = Child(), Child()
    sup.watch("broker", broker.alive, broker.start)
    sup.watch("sim", sim.alive, sim.start)
    sim.crash()
    run_until_restarted(sup, clock, sim)
    assert sup.restarts == {"broker": 0, "sim": 1} and broker.starts == 0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"backoff": 0}, "supervision.backoff: must be a positive duration"),
        ({"window": "0s"}, "supervision.window: must be a positive duration"),
        ({"backoff": "10s", "max_backoff": "5s"}, "supervision.max_backoff: must not be shorter than backoff (10s)"),
        ({"max_restarts": -1}, "supervision.max_restarts"),
        ({"restart": 1}, "supervision.restart: unknown key"),
    ],
)
def test_meaningless_policies_fail_naming_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(SupervisionConfig, section, prefix="supervision")
