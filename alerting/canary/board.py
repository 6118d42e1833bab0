"""Who is judged when, against whom, and which judgements become detections (no I/O; a fake clock
and recorded rounds drive it in tests).

Rounds are kept per arm and *answering version* (the ``serving`` arm's version changes with a
rollout or a rollback, and a version's rounds must never be mixed with another's). An arm is judged
once every ``criteria.window`` of its rounds, on those rounds only (tumbling windows; see
:mod:`.judge` for why), against:

- ``arms`` mode: the baseline arm's latest ``window`` rounds (the baseline arm itself against the
  floors only);
- ``nodes`` mode: the other nodes' latest rounds pooled, with alpha split over the nodes;
- ``single``: the floors only.

A ``fail`` judgement fires a ``CanaryFailed`` detection (labels ``probe``, ``model``,
``model_version``, ``arm``, ``host`` for a node, ``server``, and ``canary``: ``version``, ``node``
or ``endpoint``, which the canary runbooks match on: roll the version back, take the node out of
serving, or page a person). A ``pass`` resolves it, and also resolves the arm's detections about
versions that no longer answer (a rolled-back version). ``marginal`` changes nothing. After a start
the state of earlier detections is unknown, so the first pass of each arm sends resolves for it
(alerting drops a resolve of an alert that never fired).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.alerting.canary.judge import Judgement, Sample, judge, pooled, sample
from vigil.alerting.canary.spec import Arm, Probe

from vigil.events import Detection, ProbeResult

ALERTNAME = "CanaryFailed"
_SCOPE = {"arms": "version", "nodes": "node", "single": "endpoint"}


@dataclass
class _Window:
    rounds: deque[ProbeResult]
    fresh: int = 0  # rounds since this key was last judged


@dataclass(frozen=True, slots=True)
class Status:
    """The latest judgement of one arm, for views and ``/healthz``."""

    probe: str
    arm: str
    version: str
    verdict: str
    reasons: tuple[str, ...]
    at: float


@dataclass
class _ProbeState:
    windows: dict[tuple[str, str], _Window] = field(default_factory=dict)  # (arm, version) -> rounds
    current: dict[str, str] = field(default_factory=dict)  # arm -> the version it answered last
    firing: dict[tuple[str, str], bool] = field(default_factory=dict)  # (arm, version) -> fired (unknown: absent)


class Board:
    def __init__(self, probes: list[Probe], cluster: str, now: Callable[[], float]) -> None:
        self.probes = {p.name: p for p in probes}
        self.cluster, self._now = cluster, now
        self._state = {p.name: _ProbeState() for p in probes}
        self.status: dict[tuple[str, str], Status] = {}
        self.judgements: list[tuple[str, str, Judgement]] = []  # the latest call's (probe, arm, judgement)

    def add(self, results: list[ProbeResult]) -> list[Detection]:
        """Take one round's results (one per arm of one probe); the detections its judgements make."""
        if not results:
            return []
        probe = self.probes[results[0].probe]
        state = self._state[probe.name]
        for result in results:
            name = result.target.split("@", 1)[1]
            state.current[name] = result.version
            kept = state.windows.setdefault((name, result.version), _Window(deque(maxlen=probe.criteria.window)))
            kept.rounds.append(result)
            kept.fresh += 1
        self.judgements = []
        out: list[Detection] = []
        for arm in probe.arms:
            key = (arm.name, state.current.get(arm.name, ""))
            window = state.windows.get(key)
            if window is None or window.fresh < probe.criteria.window:
                continue
            window.fresh = 0
            judgement, baseline = self._judge(probe, state, arm)
            self.judgements.append((probe.name, arm.name, judgement))
            self.status[(probe.name, arm.name)] = Status(
                probe.name, arm.name, key[1], judgement.verdict, tuple(judgement.reasons), self._now()
            )
            out += self._detections(probe, state, arm, key[1], judgement, baseline, list(window.rounds))
        return out

    def _latest(self, state: _ProbeState, arm: str) -> Sample | None:
        window = state.windows.get((arm, state.current.get(arm, "")))
        return sample(list(window.rounds)) if window is not None and window.rounds else None

    def _judge(self, probe: Probe, state: _ProbeState, arm: Arm) -> tuple[Judgement, str | None]:
        mine = self._latest(state, arm.name) or sample([])
        if probe.mode == "nodes":
            others = [s for a in probe.arms if a.name != arm.name and (s := self._latest(state, a.name)) is not None]
            base = pooled(others) if others else None
            return judge(mine, base, probe.criteria, comparisons=len(probe.arms)), "other nodes" if others else None
        if probe.mode == "arms" and probe.baseline is not None and arm.name != probe.baseline:
            base = self._latest(state, probe.baseline)
            version = state.current.get(probe.baseline, "")
            return judge(mine, base, probe.criteria), f"{probe.baseline} {version}".strip() if base else None
        return judge(mine, None, probe.criteria), None

    def _detections(
        self,
        probe: Probe,
        state: _ProbeState,
        arm: Arm,
        version: str,
        judgement: Judgement,
        baseline: str | None,
        rounds: list[ProbeResult],
    ) -> list[Detection]:
        key = (arm.name, version)
        if judgement.verdict == "fail" and state.firing.get(key) is not True:
            state.firing[key] = True
            return [self._detection(probe, arm, version, judgement, baseline, rounds, "firing")]
        if judgement.verdict != "pass":
            return []
        out = []
        for (name, old), fired in list(state.firing.items()):
            if name == arm.name and old != version and fired:
                state.firing[(name, old)] = False
                why = f"version {old or '?'} no longer answers on {name}; {version or 'the current version'} passes"
                out.append(self._detection(probe, arm, old, judgement, baseline, rounds, "resolved", why))
        if state.firing.get(key) is not False:
            state.firing[key] = False
            out.append(self._detection(probe, arm, version, judgement, baseline, rounds, "resolved"))
        return out

    def _detection(
        self,
        probe: Probe,
        arm: Arm,
        version: str,
        judgement: Judgement,
        baseline: str | None,
        rounds: list[ProbeResult],
        decision: str,
        why: str = "",
    ) -> Detection:
        labels = {"alertname": ALERTNAME, "cluster": self.cluster, "probe": probe.name, "model": probe.model,
                  "arm": arm.name, "canary": _SCOPE[probe.mode]}
        if version:
            labels["model_version"] = version
        if arm.node:
            labels["host"] = arm.node
        if probe.server:
            labels["server"] = probe.server
        reason: dict[str, Any] = {**judgement.to_json(), "window_rounds": len(rounds), "baseline": baseline}
        if why:
            reason["why"] = why
        return Detection(
            ts=self._now(),
            detector="canary",
            series=f"canary:{probe.name}@{arm.name}:{version}",
            labels=labels,
            score=round(100.0 - judgement.score, 3),
            decision="firing" if decision == "firing" else "resolved",
            severity="critical",
            reason=reason,
            window_start=min(r.ts for r in rounds),
            window_end=max(r.ts for r in rounds),
            summary=why or summary(probe, arm, version, judgement, baseline),
        )


def summary(probe: Probe, arm: Arm, version: str, judgement: Judgement, baseline: str | None) -> str:
    """``canary digits: model digits v2 (arm serving) failed against v1 v1: quality: ...; failing
    items: 3 answered '1' (expected 3, got 1), ...``"""
    who = f"model {probe.model} {version}".strip() + (f" on {arm.node}" if arm.node else f" (arm {arm.name})")
    against = f" against {baseline}" if baseline else ""
    verb = "failed" if judgement.verdict == "fail" else judgement.verdict
    parts = [f"canary {probe.name}: {who} {verb}{against}", *judgement.reasons]
    failing = [f"{f.id} answered {f.answer[:40]!r} ({f.reason[:80]})" for f in judgement.failing[:5]]
    if failing:
        parts.append("failing items: " + ", ".join(failing))
    return "; ".join(parts)[:2000]


def verdict_counts(status: Mapping[tuple[str, str], Status]) -> dict[str, int]:
    counts = {"pass": 0, "marginal": 0, "fail": 0}
    for s in status.values():
        counts[s.verdict] = counts.get(s.verdict, 0) + 1
    return counts
