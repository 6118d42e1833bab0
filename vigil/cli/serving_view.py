"""``vigil up``'s simulated serving model and its canary view.

:class:`SimulatedServing` starts the simulated serving fleet (``vigil.alerting.canary.simulated``)
on the first ``canary.simulated.nodes`` simulator hosts and writes its per-node probe file into the
run folder, so the canary service (a supervised process like the others) probes it. A simulator
fault of kind ``sdc`` on one of those hosts, read back from the ground-truth topic, corrupts that
node's answers while it is on: the telemetry never shows it, the canary has to.

:class:`CanaryView` is what the live view's canary table and the run report show: per probe target,
the last round (version, items passed) from the probes topic, the judgement from the canary's
detections (``CanaryFailed`` firing or resolved), and whether the node still serves.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vigil.alerting.canary.config import SimulatedServingConfig
from vigil.alerting.canary.simulated import ServingFleet, probe_document
from vigil.events import Detection, FaultInjection, ProbeResult


class SimulatedServing:
    def __init__(self, config: SimulatedServingConfig, hosts: list[str], run_dir: Path) -> None:
        self.config = config
        self.fleet = ServingFleet(hosts[: config.nodes])
        self.probe_path = run_dir / "canary-simulated.yaml"

    def start(self) -> SimulatedServing:
        """The probe file first (the fleet's port is bound already), then serve; nothing left open
        when the file cannot be written."""
        document = probe_document(self.fleet, f"{self.config.interval}s", window=self.config.window)
        try:
            self.probe_path.parent.mkdir(parents=True, exist_ok=True)
            self.probe_path.write_text(yaml.safe_dump(document, sort_keys=False))
        except BaseException:
            self.fleet.stop()
            raise
        self.fleet.start()
        return self

    def apply_fault(self, fault: FaultInjection) -> None:
        if fault.kind == "sdc" and "host" in fault.entity:
            self.fleet.corrupt(str(fault.entity["host"]), on=fault.end is None)

    def stop(self) -> None:
        self.fleet.stop()


@dataclass
class CanaryRow:
    version: str = ""
    passed: int = 0
    total: int = 0
    detail: str = ""
    verdict: str = "pending"  # pending (no judgement yet) | pass | fail
    at: float = 0.0


@dataclass
class CanaryView:
    rows: dict[str, CanaryRow] = field(default_factory=dict)  # probe target (probe@arm) -> row
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply_result(self, result: ProbeResult) -> None:
        with self.lock:
            row = self.rows.setdefault(result.target, CanaryRow())
            row.version, row.passed, row.total = result.version, result.passed, result.total
            row.detail, row.at = result.detail, result.ts

    def apply_detection(self, detection: Detection) -> None:
        if detection.detector != "canary":
            return
        target = f"{detection.labels.get('probe', '?')}@{detection.labels.get('arm', '?')}"
        with self.lock:
            row = self.rows.setdefault(target, CanaryRow())
            row.verdict = "fail" if detection.decision == "firing" else "pass"

    def report(self, serving: SimulatedServing | None) -> list[dict[str, Any]]:
        status = serving.fleet.status() if serving is not None else {}
        with self.lock:
            rows = sorted(self.rows.items())
        out = []
        for target, row in rows:
            node = status.get(target.split("@", 1)[1], {})
            out.append({"target": target, "version": row.version, "passed": row.passed, "total": row.total,
                        "verdict": row.verdict, "serving": node.get("serving"), "detail": row.detail})
        return out
