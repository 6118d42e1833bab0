"""GPU reset through a fake ``nvidia-smi`` on PATH (a real program that records its arguments), and the
webhook actions (an RMA ticket) against a real HTTP server on loopback: retries with backoff, the same
``Idempotency-Key`` on every attempt, and a permanent 4xx not retried."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from vigil.alerting.runbooks.actions.host import WEBHOOK_SCHEMAS, GpuReset, WebhookAction

from tests.notifier_fixtures import Answer, ContractServer, Seen, closed_port_url

FAKE_SMI = """#!/bin/sh
# A stand-in for nvidia-smi: records its arguments, answers the compute-apps query from a file.
echo "$*" >> "{log}"
case "$*" in
  *--query-compute-apps=pid*) cat "{apps}" 2>/dev/null; exit 0 ;;
  *--gpu-reset*) exit "$(cat "{reset_rc}" 2>/dev/null || echo 0)" ;;
  *--query-gpu=index,pci.bus_id*) echo "$5, 00000000:1B:00.0"; exit 0 ;;
esac
exit 2
"""


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    files = {name: tmp_path / name for name in ("log", "apps", "reset_rc")}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "nvidia-smi"
    program.write_text(FAKE_SMI.format(**{k: str(v) for k, v in files.items()}))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return files


def calls(smi: dict[str, Path]) -> list[str]:
    return smi["log"].read_text().splitlines() if smi["log"].exists() else []


PARAMS = {"node": "node-3", "gpu_index": "3"}


def test_a_gpu_a_process_holds_is_not_reset(smi: dict[str, Path]) -> None:
    smi["apps"].write_text("4242\n4243\n")
    result = GpuReset().execute(PARAMS, "run/0")
    assert not result.ok and result.retryable
    assert "in use by pids 4242, 4243" in result.detail
    assert calls(smi) == ["--query-compute-apps=pid --format=csv,noheader -i 3"]


def test_an_idle_gpu_is_reset_once_with_its_index(smi: dict[str, Path]) -> None:
    reset = GpuReset()
    result = reset.execute(PARAMS, "run/0")
    assert result.ok, result.detail
    assert calls(smi) == ["--query-compute-apps=pid --format=csv,noheader -i 3", "--gpu-reset -i 3"]
    assert reset.verify(PARAMS).ok
    assert calls(smi)[-1] == "--query-gpu=index,pci.bus_id --format=csv,noheader -i 3"
    assert sum(1 for c in calls(smi) if "--gpu-reset" in c) == 1


def test_a_failed_reset_is_a_permanent_failure_and_a_missing_program_a_retryable_one(smi: dict[str, Path]) -> None:
    smi["reset_rc"].write_text("3")
    result = GpuReset().execute(PARAMS, "run/0")
    assert not result.ok and not result.retryable and "exit 3" in result.detail
    missing = GpuReset(nvidia_smi="/nonexistent/nvidia-smi").execute(PARAMS, "run/0")
    assert not missing.ok and missing.retryable and "could not list" in missing.detail


def test_the_reset_runs_through_the_configured_prefix(smi: dict[str, Path]) -> None:
    # The prefix is how the command reaches the node (ssh, srun -w); `env` stands in for it here and
    # shows that the node is rendered into it.
    reset = GpuReset(prefix=["env", "VIGIL_NODE={node}"])
    assert reset.execute(PARAMS, "run/0").ok
    assert calls(smi)[-1] == "--gpu-reset -i 3"


def rma_check(seen: Seen) -> list[str]:
    problems = []
    if seen.headers.get("Content-Type") != "application/json":
        problems.append(f"Content-Type {seen.headers.get('Content-Type')!r}")
    if not seen.headers.get("Idempotency-Key"):
        problems.append("no Idempotency-Key")
    body = seen.json()
    if body.get("action") != "rma.open" or body.get("key") != seen.headers.get("Idempotency-Key"):
        problems.append(f"body {body!r}")
    return problems


def rma(url: str, sleeps: list[float]) -> WebhookAction:
    schema = WEBHOOK_SCHEMAS["rma.open"]
    return WebhookAction("rma.open", url, schema, True, "node", timeout=5.0, attempts=3, sleep=sleeps.append)


RMA = {"node": "node-3", "reason": "second XID 48 on serial 1650924060712 within 7 days", "gpu_index": "3"}


def test_an_rma_ticket_is_retried_through_5xx_and_429_with_one_idempotency_key() -> None:
    sleeps: list[float] = []
    with ContractServer(rma_check, Answer(201, '{"ticket": "RMA-1"}'), path="/rma").running() as server:
        server.script = [Answer(503), Answer(429, headers={"Retry-After": "7"})]
        result = rma(server.url, sleeps).execute(RMA, "run-9/steps/2")
    assert result.ok and "HTTP 201" in result.detail
    assert [s.status for s in server.seen] == [503, 429, 201]
    assert all(not s.violations for s in server.seen)
    assert {s.headers["Idempotency-Key"] for s in server.seen} == {"run-9/steps/2"}
    assert server.seen[0].json() == {"action": "rma.open", "key": "run-9/steps/2", "params": RMA}
    assert sleeps == [1.0, 7.0]  # backoff, then the receiver's Retry-After


def test_a_4xx_is_permanent_and_not_retried_and_an_unreachable_receiver_is_retryable() -> None:
    sleeps: list[float] = []
    with ContractServer(rma_check, Answer(400, '{"error": "unknown node"}'), path="/rma").running() as server:
        result = rma(server.url, sleeps).execute(RMA, "run-9/steps/2")
    assert not result.ok and not result.retryable and "HTTP 400" in result.detail
    assert len(server.seen) == 1 and sleeps == []
    down = rma(closed_port_url("/rma"), sleeps).execute(RMA, "run-9/steps/2")
    assert not down.ok and down.retryable and "ConnectError" in down.detail
    assert sleeps == [1.0, 2.0]  # three attempts in all


def test_a_resumed_step_repeats_its_key_so_the_receiver_can_drop_it() -> None:
    sleeps: list[float] = []
    with ContractServer(rma_check, Answer(201), path="/rma").running() as server:
        action = rma(server.url, sleeps)
        assert action.execute(RMA, "run-9/steps/2").ok
        assert action.execute(RMA, "run-9/steps/2").ok  # the executor resuming after a kill -9
    keys = [s.headers["Idempotency-Key"] for s in server.seen]
    assert keys == ["run-9/steps/2", "run-9/steps/2"]
    assert len({json.dumps(s.json(), sort_keys=True) for s in server.seen}) == 1
