"""The throughput phase of ``vigil bench pipeline``: a backlog drained by N analytics processes.

1. produce: this process runs the simulator flat out for ``seconds`` (ticks stamped one interval
   apart, so simulated time runs far ahead of the clock), writing telemetry, logs, the job's step
   batches and the ground truth to the embedded broker: the producer's figure;
2. drain: alerting (its webhook pointing at our measuring pager) and N analytics processes in one
   consumer group start on that backlog; every half second each one's own counters
   (``vigil_analytics_samples_total``, ``vigil_analytics_training_steps_total``) are read. With N >= 2,
   once 40% of the telemetry is scored, the first process is SIGKILLed: the survivors take its
   partitions after the group notices (the session timeout) and resume from its snapshots;
3. score: the drain ends when the counters have not moved for ``QUIET_S`` and add up to at least what
   was produced; then the pager is read until it is quiet too. Faults (a thermal fault or an XID 79
   on a different GPU every 30 simulated minutes) are scored by entity: paged once, lost, or paged
   twice (one episode's page delivered again, the chaos rule).

The figure is telemetry samples produced / the drain's wall time (first sample scored to last), so
samples a survivor replays after the kill are not counted twice; each process's own rate is its
samples over its active time. The producer does not run during the drain: on a 2-core machine it
would take one core from the consumers.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from vigil.broker import EmbeddedBroker, free_port
from vigil.bus.kafka import KafkaBus
from vigil.cli.chaos import read_back
from vigil.cli.processes import ProcessGroup
from vigil.cli.receiver import WebhookReceiver
from vigil.cli.report import Notification, names_entity
from vigil.cli.settings import VigilConfig, dump_config
from vigil.clock import SystemClock
from vigil.codec import decode
from vigil.collectors.sim import FleetSimulator, SimulatorRunner
from vigil.events import FaultInjection
from vigil.progress import Progress

COUNTER = re.compile(r"^(vigil_analytics_samples_total|vigil_analytics_training_steps_total) (\S+)$", re.M)
RESTORED = re.compile(r"^vigil_analytics_snapshots_restored_total\{[^}]*\} (\S+)$", re.M)
QUIET_S = 5.0  # counters unchanged this long (and the backlog covered): drained
KILL_AT = 0.4  # share of the produced telemetry scored when the first process is killed
FAULT_EVERY_S = 1800.0  # simulated seconds between planned faults
FAULT_S = 120.0


def fault_plan(count: int = 200, gpus: int = 8, nodes: int = 8) -> list[dict[str, Any]]:
    """A fault on a different GPU every 30 simulated minutes: thermal and XID 79 in turn."""
    return [
        {
            "kind": "thermal" if i % 2 == 0 else "xid79",
            "at": 600.0 + FAULT_EVERY_S * i,
            "duration": FAULT_S,
            "host": f"node-{i % nodes:02d}",
            "gpu_index": (i // nodes) % gpus,
        }
        for i in range(count)
    ]


@dataclass
class Consumer:
    name: str
    port: int
    trace: list[tuple[float, float, float]] = field(default_factory=list)  # (t, samples, steps)
    killed_at: float | None = None
    restored: int = 0  # partitions it started warm from a snapshot
    restored_at_kill: int | None = None  # ... when the first process was killed (survivors only)

    def read(self, t: float) -> None:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return
        found = dict(COUNTER.findall(text))
        self.restored = round(sum(float(v) for v in RESTORED.findall(text)))
        self.trace.append(
            (
                t,
                float(found.get("vigil_analytics_samples_total", 0)),
                float(found.get("vigil_analytics_training_steps_total", 0)),
            )
        )

    @property
    def samples(self) -> float:
        return self.trace[-1][1] if self.trace else 0.0

    @property
    def steps(self) -> float:
        return self.trace[-1][2] if self.trace else 0.0

    def span(self) -> tuple[float, float] | None:
        """(the reading before its first sample, its last change): when it worked; None if it never did."""
        changes = [i for i in range(1, len(self.trace)) if self.trace[i][1:] != self.trace[i - 1][1:]]
        if not changes:
            return None
        return self.trace[changes[0] - 1][0], self.trace[changes[-1]][0]

    def figures(self) -> dict[str, Any]:
        span = self.span()
        active = span[1] - span[0] if span else 0.0
        return {
            "name": self.name,
            "samples": round(self.samples),
            "steps": round(self.steps),
            "active_s": round(active, 1),
            "samples_per_s": round(self.samples / active) if active > 0 else 0,
            "steps_per_s": round(self.steps / active) if active > 0 else 0,
            "killed_at_s": None if self.killed_at is None else round(self.killed_at, 1),
            "partitions_restored": self.restored,
            "restored_after_kill": None if self.restored_at_kill is None else self.restored - self.restored_at_kill,
        }


def produce(cfg: VigilConfig, seconds: float) -> dict[str, Any]:
    """The simulator flat out for ``seconds``, in this process."""
    bus = KafkaBus(cfg.kafka)
    runner = SimulatorRunner(FleetSimulator(cfg.sim, SystemClock().now()), bus.producer, cfg.topics(), SystemClock())
    first_step = runner.sim.job.step
    started, samples, ticks = time.monotonic(), 0, 0
    while time.monotonic() - started < seconds:
        samples += runner.run_fast(50)
        ticks += 50
    runner.publish(runner.sim.finish(runner.sim.start + ticks * cfg.sim.interval))
    runner.producer.flush()
    runner.producer.close()
    elapsed = time.monotonic() - started
    world = cfg.sim.nodes * cfg.sim.gpus_per_node
    steps = (runner.sim.job.step - first_step) * world if cfg.sim.training else 0  # every rank of every step
    return {
        "samples": samples,
        "steps": steps,
        "ticks": ticks,
        "seconds": round(elapsed, 1),
        "samples_per_s": round(samples / elapsed),
    }


def drain(
    procs: ProcessGroup, consumers: list[Consumer], produced: dict[str, Any], kill: bool, shown: Progress
) -> float:
    """Poll the consumers until the backlog (telemetry and steps) is scored; returns the drain's wall time
    (the first process starting to score to the last one stopping)."""
    started = time.monotonic()
    last_total, last_change = (-1.0, -1.0), 0.0
    while time.monotonic() - started < 900:
        t = time.monotonic() - started
        for c in consumers:
            if c.killed_at is None:
                c.read(t)
        total = (sum(c.samples for c in consumers), sum(c.steps for c in consumers))
        shown.advance(total[0] - max(last_total[0], 0.0), f"{total[0]:,.0f} of {produced['samples']:,} samples scored")
        if total != last_total:
            last_total, last_change = total, t
        if kill and consumers[0].killed_at is None and total[0] >= KILL_AT * produced["samples"]:
            procs.kill(consumers[0].name)
            consumers[0].killed_at = t
            for survivor in consumers[1:]:
                survivor.restored_at_kill = survivor.restored
        done = total[0] >= produced["samples"] and total[1] >= produced["steps"]
        if done and t - last_change >= QUIET_S:
            break
        time.sleep(0.5)
    spans = [span for c in consumers if (span := c.span()) is not None]
    return max(end for _, end in spans) - min(start for start, _ in spans) if spans else 0.0


def pages(receiver: WebhookReceiver, quiet_s: float = 10.0, limit_s: float = 120.0) -> list[Notification]:
    """The pager's notifications once none has come for ``quiet_s`` (alerting may still be sending)."""
    started, count, since = time.monotonic(), -1, time.monotonic()
    while time.monotonic() - started < limit_s:
        now = len(receiver.snapshot())
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.5)
    return receiver.snapshot()


def truth(cfg: VigilConfig) -> list[FaultInjection]:
    """Faults that ran their whole planned length (the last may be cut short by the end of production)."""
    events: dict[str, FaultInjection] = {}
    for raw in read_back(cfg.kafka, [cfg.topics().groundtruth]):
        event = decode(raw)
        if isinstance(event, FaultInjection) and event.end is not None:
            events[event.fault_id] = event
    return [f for f in events.values() if f.end is not None and f.end - f.start >= FAULT_S - 1e-6]


def score(faults: list[FaultInjection], notes: list[Notification]) -> dict[str, Any]:
    """By entity (each fault has a GPU of its own in its stretch of simulated time), not by time: the
    backlog is paged long after its event time. A notification names a fault when one of its member
    alerts does; an incident paged twice is one whose first page (its dedup key) came more than once."""
    firing = [n for n in notes if n.status == "firing" and n.reason != "escalated"]
    episodes = Counter(n.dedup_key for n in firing if n.dedup_key and n.reason == "first")
    verdicts: Counter[str] = Counter()
    for fault in faults:
        scope = dict(fault.entity)
        hits = [
            n
            for n in firing
            if any(
                names_entity(fault, labels) and all(labels.get(k, v) == v for k, v in scope.items())
                for labels in n.label_sets()
            )
        ]
        twice = any(episodes[n.dedup_key] > 1 for n in hits if n.dedup_key)
        verdicts["lost" if not hits else "paged_twice" if twice else "paged_once"] += 1
    return {
        "faults": len(faults),
        "paged_once": verdicts["paged_once"],
        "lost": verdicts["lost"],
        "paged_twice": verdicts["paged_twice"],
        "pages": len(firing),
    }


def throughput(
    work: Path, seconds: float, ticks_per_batch: int, training: bool, analytics: int, shown: Progress
) -> dict[str, Any]:
    with EmbeddedBroker(work, ephemeral=True) as broker:
        receiver = WebhookReceiver().start()
        cfg = VigilConfig.model_validate(
            {
                "data_dir": str(work),
                "log_level": "warning",
                "kafka": {"bootstrap_servers": [broker.bootstrap]},
                "sim": {"ticks_per_batch": ticks_per_batch, "training": training, "faults": fault_plan()},
                "alerting": {
                    "notifiers": [{"type": "webhook", "url": receiver.url}],
                    "api": {"enabled": False},
                    # A fault whose alerts join an incident already paged (the job's: a lost GPU stops it)
                    # is told in that incident's next update; the default 5-minute interval would land
                    # after the pager is read.
                    "route": {"receiver": "default", "group_interval": "1s"},
                },
            }
        )
        path = work / "bench.yaml"
        dump_config(cfg, path)
        KafkaBus(cfg.kafka).create_topics(cfg.topic_partitions())
        shown.phase(f"throughput: the simulator publishes flat out for {seconds:.0f} s", None)
        produced = produce(cfg, seconds)
        shown.phase(f"throughput: {analytics} analytics process(es) drain the backlog", produced["samples"])
        procs = ProcessGroup(work / "logs")
        consumers = [Consumer(f"analytics-{i}", free_port()) for i in range(analytics)]
        try:
            procs.spawn("alerting", ["alerting", "--config", str(path)])
            for c in consumers:
                procs.spawn(c.name, ["analytics", "--config", str(path), "--metrics-port", str(c.port)])
            wall = drain(procs, consumers, produced, kill=analytics >= 2, shown=shown)
            scored = score(truth(cfg), pages(receiver))
        finally:
            procs.stop_all([c.name for c in consumers])
            receiver.stop()
    steps = sum(c.steps for c in consumers)
    return _document(cfg, produced, consumers, wall, steps, training) | {"fault_pages": scored}


def _document(
    cfg: VigilConfig, produced: dict[str, Any], consumers: list[Consumer], wall: float, steps: float, training: bool
) -> dict[str, Any]:
    sim = cfg.sim
    return {
        "workload": (
            f"{sim.nodes} hosts x {sim.gpus_per_node} GPUs, {sim.ticks_per_batch} ticks per TelemetryBatch, "
            + ("with" if training else "without")
            + " the job's steps (one TrainingStepBatch per flush); "
            f"a backlog of {produced['ticks']} ticks drained by {len(consumers)} analytics process(es)"
        ),
        "samples_produced": produced["samples"],
        "steps_produced": produced["steps"],
        "producer_seconds": produced["seconds"],
        "producer_samples_per_s": produced["samples_per_s"],
        "samples_scored": round(sum(c.samples for c in consumers)),
        "steps_scored": round(steps),
        "drain_seconds": round(wall, 1),
        "samples_per_s": round(produced["samples"] / wall) if wall > 0 else 0,
        "steps_per_s": round(steps / wall) if wall > 0 else 0,
        "processes": [c.figures() for c in consumers],
    }
