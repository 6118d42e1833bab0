"""``vigil chaos``: the durable stack under SIGKILLs, a hung notifier and poison records, then scored.

The run: ``Stack`` on the embedded broker with S3 storage in a fresh data dir, the simulator's
fault list ``CHAOS_FAULTS`` (each fault observable on its own), supervision as in ``vigil up``. A
second webhook receiver accepts connections and never answers (``HangingReceiver``), beside the
measuring one. At seeded moments
within ``--duration`` each unit in turn (analytics, alerting, the simulator, the broker's Tansu
process) is SIGKILLed and supervision restarts it; once, poison records are written raw onto the
topics. After ``--settle`` more seconds (no kills) the simulator is stopped, the groundtruth and
dead-letter topics are read back from the broker, and the pages are scored (``chaos_score.py``).

A kill's recovery ends when the restarted unit is healthy again: analytics and alerting answer
``/healthz`` 200 with partitions assigned (consuming); the simulator and the broker, when telemetry
stamped after the restart has been read back through the broker.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTP

from vigil.bus.connection import client_settings
from vigil.bus.kafka import KafkaBus
from vigil.cli.chaos_score import FaultOutcome, PlannedKill, merge_truth, plan_kills, score_faults, summary
from vigil.cli.common import ConfigOption, JsonOption, err_console, load_or_exit, show, stop_on_signals
from vigil.cli.extras import require
from vigil.cli.receiver import HangingReceiver
from vigil.cli.settings import VigilConfig
from vigil.codec import decode, encode
from vigil.config import KafkaConfig
from vigil.errors import ConfigError, InvalidEvent, RetryableError, VigilError
from vigil.events import Detection, FaultInjection, LogEvent, Prediction
from vigil.topics import DLQ_SUFFIX, Topics

if TYPE_CHECKING:  # the stack needs the server and embedded extras: imported when a run starts
    from vigil.cli.stack import Stack

log = logging.getLogger(__name__)
KILL_WARMUP_S = 20.0  # no kill before the services have joined their groups and learnt a little
POISON_TS = "9999-12-31T23:59:59-14:00"  # valid ISO-8601; year 10000 in UTC


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    duration: float = 240.0
    settle: float = 40.0
    seed: int = 0
    kills: int = 8


@dataclass(slots=True)
class Kill:
    unit: str
    at: float  # seconds after the simulator's start
    wall: float
    mono: float
    recovery_s: float | None = None


# The demo's kinds, each observable on its own: a GPU lost to an XID stops the simulated job (as it
# does a real one) until the fault ends and the job restarts (sim.restart_cost, 15 s), so a training
# fault (straggler, hang, NaN loss) overlapping an XID would be ground truth no detector can see.
# The demo schedule overlaps them; chaos scores pages against ground truth, so it uses this one.
CHAOS_FAULTS: list[dict[str, object]] = [
    {"kind": "thermal", "at": 10, "duration": 60, "host": "node-01", "gpu_index": 2},
    {"kind": "xid48", "at": 20, "duration": 20, "host": "node-02", "gpu_index": 5},
    {"kind": "ecc_trend", "at": 25, "duration": 60, "host": "node-03", "gpu_index": 1},
    {"kind": "straggler", "at": 60, "duration": 40, "rank": 42},
    {"kind": "xid79", "at": 105, "duration": 15, "host": "node-06", "gpu_index": 2},
    {"kind": "loss_nan", "at": 140, "duration": 15},
    {"kind": "hang", "at": 165, "duration": 20},
    {"kind": "thermal", "at": 190, "duration": 25, "host": "node-00", "gpu_index": 2},
    {"kind": "straggler", "at": 215, "duration": 30, "rank": 15},
    {"kind": "xid79", "at": 255, "duration": 15, "host": "node-05", "gpu_index": 6},
]


def chaos_config(base: VigilConfig, data_dir: Path, hung_url: str, seed: int) -> VigilConfig:
    """The run's config: ``base`` with a fresh durable broker, the seed, the hung notifier added, no
    simulated serving model (so no canary), and ``CHAOS_FAULTS`` unless ``base`` plans its own faults."""
    if base.kafka.bootstrap_servers:
        raise ConfigError("kafka.bootstrap_servers: vigil chaos kills the embedded broker, so it must be empty")
    data = base.model_dump(mode="json")
    data["data_dir"] = str(data_dir)
    data["broker"]["storage"] = "s3"
    data["sim"]["seed"] = seed
    if not data["sim"]["faults"] and data["sim"]["nodes"] >= 8 and data["sim"]["gpus_per_node"] >= 8:
        data["sim"]["faults"] = CHAOS_FAULTS
    # The chaos measurement is the durable pipeline's (its units are killed and scored); the canary's
    # simulated serving model would be one more process sharing the CPUs and nothing it scores.
    data["canary"]["simulated"]["enabled"] = False
    data["alerting"]["notifiers"].append({"type": "webhook", "name": "hung", "url": hung_url})
    return VigilConfig.model_validate(data)


def poison_records(topics: Topics, cluster: str, now: float, seed: int) -> list[tuple[str, bytes]]:
    """Records that must be dead-lettered, not acted on and not crash-looped on: (topic, bytes)."""
    labels = {"alertname": "ChaosPoison", "cluster": cluster, "host": "node-00", "gpu_index": "0"}
    detection = Detection(now, "chaos", "chaos_poison", labels, 9.0, "firing", "critical", {}, now, now)
    body = json.loads(encode(detection))
    body["ts"] = POISON_TS
    prediction = Prediction(
        now, "time_to_disk_full", "fs:node-00:/data", "disk", 1.0, 1e12, {"cluster": cluster, "host": "node-00"}, {}
    )
    raw = "NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus."
    xid = LogEvent(now, "node-00", cluster, "xid", 79, raw, gpu_index=2**63)
    garbage = b"\x93" + random.Random(seed).randbytes(63)  # a msgpack array header, then noise
    return [
        (topics.detections, json.dumps(body).encode()),
        (topics.predictions, encode(prediction)),
        (topics.logs, encode(xid)),
        (topics.telemetry, garbage),
        (topics.detections, garbage),
    ]


def read_back(kafka: KafkaConfig, topics: list[str], idle_s: float = 3.0, limit_s: float = 60.0) -> list[bytes]:
    """Every record of ``topics`` from the beginning, read until ``idle_s`` brings nothing new.

    The log end offset cannot say when to stop: Tansu reports the last batch's base offset + 1.
    """
    consumer = KafkaConsumer(**client_settings(kafka), group_id=None, enable_auto_commit=False, client_id="vigil-chaos")
    try:
        parts = [KafkaTP(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[bytes] = []
        started = last = time.monotonic()
        while time.monotonic() - last < idle_s and time.monotonic() - started < limit_s:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(r.value for r in records)
                last = time.monotonic()
        return out
    finally:
        consumer.close()


class ChaosRun:
    def __init__(self, stack: Stack, options: ChaosOptions, say: Callable[[str], object] = log.info) -> None:
        self.stack = stack
        self.options = options
        self._say = say
        self.plan: list[PlannedKill] = plan_kills(options.seed, options.kills, KILL_WARMUP_S, options.duration)
        self.kills: list[Kill] = []
        self.poison_at = random.Random(options.seed + 1).uniform(
            KILL_WARMUP_S, max(KILL_WARMUP_S, options.duration / 2)
        )
        self.poisoned: list[str] = []
        self.events: list[str] = []

    def run(self, stop: threading.Event) -> None:
        """Kill, poison and watch until ``--duration`` + ``--settle`` after the simulator's start."""
        t0 = self.stack.sim_origin
        while not stop.is_set() and time.time() < t0 + self.options.duration + self.options.settle:
            for event in self.stack.supervise():
                self._note(str(event))
            if self.stack.supervisor.gave_up is not None:
                return
            offset = time.time() - t0
            self._kill_due(offset)
            if not self.poisoned and offset >= self.poison_at:
                self._poison()
            self._probe()
            stop.wait(0.25)

    def _kill_due(self, offset: float) -> None:
        if not self.plan or offset < self.plan[0].at or offset > self.options.duration:
            return  # none in the settle time: a kill postponed that long stays in kills_not_done
        unit = self.plan[0].unit
        if self.stack.supervisor.status()[unit].state != "up":
            return  # already down (it crashed by itself): kill it once it is back
        self.plan.pop(0)
        self.stack.kill(unit)
        self.kills.append(Kill(unit, round(offset, 1), time.time(), time.monotonic()))
        self._note(f"SIGKILL {unit}")

    def _probe(self) -> None:
        for kill in self.kills:
            if kill.recovery_s is None and self._recovered(kill):
                kill.recovery_s = round(time.monotonic() - kill.mono, 1)
                self._note(f"{kill.unit} healthy again, {kill.recovery_s}s after its kill")

    def _recovered(self, kill: Kill) -> bool:
        restarted = self.stack.supervisor.started_at(kill.unit)
        if restarted <= kill.mono:
            return False
        if kill.unit in ("analytics", "alerting"):
            health = self.stack.healthz(kill.unit)
            return bool(health and health.get("ok") and health.get("assigned"))
        return self.stack.view.newest_sample() > kill.wall + (restarted - kill.mono)

    def _poison(self) -> None:
        effective = self.stack.effective
        records = poison_records(effective.topics(), effective.cluster, time.time(), self.options.seed)
        try:
            producer = KafkaBus(self.stack.effective.kafka).producer()
            try:
                for topic, value in records:
                    producer.send(topic, value)
                producer.flush(10.0)
            finally:
                producer.close()
        except RetryableError as exc:  # the broker may be the one just killed: try again next turn
            log.info("poison records not sent yet: %s", exc)
            return
        self.poisoned = [topic for topic, _ in records]
        self._note(f"{len(records)} poison records sent")

    def _note(self, line: str) -> None:
        line = f"{time.time() - self.stack.sim_origin:7.1f}s {line}"
        self.events.append(line)
        self._say(line)

    def finish(self) -> dict[str, Any]:
        """Stop the simulator, read ground truth and dead letters back, score. The stack keeps running."""
        self.stack.processes.stop("sim")
        effective = self.stack.effective
        truth = map(_decode, read_back(effective.kafka, [effective.topics().groundtruth]))
        faults = merge_truth(e for e in truth if isinstance(e, FaultInjection))
        window_end = self.stack.sim_origin + self.options.duration
        outcomes = score_faults([f for f in faults if f.start <= window_end], self.stack.receiver.snapshot())
        dlq_topics = sorted(t for t in effective.topic_partitions() if t.endswith(DLQ_SUFFIX))
        dlq = len(read_back(effective.kafka, dlq_topics))
        return {
            "summary": summary(outcomes, dlq, self.stack.supervisor.restarts, [k.recovery_s for k in self.kills]),
            "faults": [_outcome_row(o) for o in outcomes],
            "kills": [asdict(k) for k in self.kills],
            "kills_not_done": [asdict(k) for k in self.plan],
            "poisoned": self.poisoned,
            "gave_up": self.stack.supervisor.gave_up,
            "events": self.events,
        }


def _outcome_row(outcome: FaultOutcome) -> dict[str, Any]:
    fault = outcome.fault
    return {
        "fault_id": fault.fault_id,
        "kind": fault.kind,
        "entity": dict(fault.entity),
        "start": fault.start,
        "end": fault.end,
        "verdict": outcome.verdict,
        "pages": [{**asdict(n), "labels": dict(n.labels)} for n in outcome.pages],
    }


def _decode(value: bytes) -> object:
    try:
        return decode(value)
    except InvalidEvent:
        return None  # ground truth is only FaultInjection; anything else there is not scored


def run_chaos(
    base: VigilConfig,
    options: ChaosOptions,
    data_dir: Path | None,
    stop: threading.Event,
    say: Callable[[str], object] = log.info,
) -> dict[str, Any]:
    """One chaos run; returns ``{"summary": the seven keys, ...details}``."""
    from vigil.cli.stack import Stack

    work = data_dir or Path(tempfile.mkdtemp(prefix="vigil-chaos-"))
    hung = HangingReceiver().start()
    stack: Stack | None = None
    try:
        stack = Stack(chaos_config(base, work, hung.url, options.seed))
        stack.start()
        say(f"chaos: broker {stack.effective.kafka.bootstrap_servers[0]}, data and logs in {work}")
        run = ChaosRun(stack, options, say)
        run.run(stop)
        result = run.finish()
        result["hung_receiver_connections"] = hung.connections
        return result
    finally:
        if stack is not None:
            stack.stop()
        hung.stop()
        if data_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def chaos(
    config: list[Path] | None = ConfigOption,
    duration: float = typer.Option(240.0, min=30.0, help="measured seconds: faults counted and kills made within them"),
    settle: float = typer.Option(40.0, min=0.0, help="seconds after --duration for late pages (no kills)"),
    seed: int = typer.Option(0, help="seeds the fault schedule, the kill moments and order, the poison"),
    kills: int = typer.Option(8, min=0, help="SIGKILLs in all, analytics/alerting/sim/broker in turn"),
    json_out: bool = JsonOption,
    report: Path | None = typer.Option(None, help="write the details here: each fault, kill, page, restart"),
    data_dir: Path | None = typer.Option(None, help="keep the run's data and logs here (default: a temporary folder)"),
) -> None:
    """Run the durable stack under kills, a hung notifier and poison records; score pages against ground truth."""
    require("chaos", "server", "embedded")
    cfg = load_or_exit(config)
    if data_dir is not None and data_dir.exists() and any(data_dir.iterdir()):
        # An earlier run's topics and open alerts would be scored as this run's (README, durability).
        err_console.print(f"[red]vigil chaos[/red]: --data-dir {data_dir} is not empty; give a new folder")
        raise typer.Exit(2)
    stop = stop_on_signals()
    options = ChaosOptions(duration=duration, settle=settle, seed=seed, kills=kills)
    try:
        result = run_chaos(cfg, options, data_dir, stop, say=_say)
    except ConfigError as exc:
        err_console.print(f"[red]vigil chaos[/red]: {exc}")
        raise typer.Exit(2) from exc
    except VigilError as exc:
        err_console.print(f"[red]vigil chaos failed[/red]: {exc}")
        raise typer.Exit(1) from exc
    if report is not None:
        report.write_text(json.dumps(result, indent=2))
    doc = result["summary"]
    show(doc, json_out)
    ok = doc["lost"] == 0 and doc["paged_twice"] == 0 and doc["max_recovery_s"] is not None
    raise typer.Exit(0 if ok and result["gave_up"] is None else 1)


def _say(line: str) -> None:
    err_console.print(line, highlight=False, soft_wrap=True)


CHAOS_HELP = "\n\n".join(
    (
        "Run the durable stack under kills, a hung notifier and poison records; score pages against ground truth.",
        'Prints {"faults", "paged_once", "lost", "paged_twice", "dlq", "restarts", "max_recovery_s"}.',
        "faults: ground-truth faults (groundtruth topic) started within --duration. "
        "A fault is paged when the measuring receiver got a firing notification about an incident with an "
        "alert naming its entity, between its start and its end + 30 s. "
        "paged_twice: the incident (dedup_key) of one of those got its first page twice; "
        "paged_once: paged, not twice; lost: never paged.",
        "dlq: records read back from the <topic>.dlq topics. restarts: supervision restarts per unit. "
        "max_recovery_s: the longest time from a kill to the unit healthy again (analytics, alerting: "
        "/healthz with partitions assigned; sim, broker: fresh telemetry read back); null if one never recovered.",
        "Exit status: 0 when lost and paged_twice are 0, every kill recovered and supervision never gave up; "
        "1 otherwise; 2 for a usage or config error.",
    )
)


def register(app: typer.Typer) -> None:
    app.command(help=CHAOS_HELP)(chaos)
