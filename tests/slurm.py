"""A real single-node Slurm (munged, slurmctld, slurmd) on loopback for the remediation tests.

Learnt from ../shared/tools/recipes/slurm: a GPU GRES needs ``File=`` (plain files here), the munge
socket folder must be 755, ``bf_interval=2`` or jobs wait ~25 s to start, munged stops last. The
daemons get free ports and their own state folder, and are stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NODE = "gpu-node-01"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Slurm:
    folder: Path
    conf: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> str:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=15, check=True).stdout

    def node(self) -> str:
        return self.run("scontrol", "-o", "show", "node", NODE)

    def job(self, job_id: str) -> str:
        return self.run("scontrol", "-o", "show", "job", job_id)

    def wait_for(self, predicate: object, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.2)
        raise AssertionError(f"Slurm did not reach the expected state in {timeout}s: {self.node()}")


def _conf(d: Path) -> str:
    total = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    mem = int(int(total.split()[1]) / 1024 * 0.5)
    cpus = os.cpu_count()
    return f"""ClusterName=vigiltest
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge/munge.socket
CryptoType=crypto/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
GresTypes=gpu
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=30
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={cpus} RealMemory={mem} Gres=gpu:8 State=UNKNOWN
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@contextmanager
def slurm_cluster() -> Iterator[Slurm]:
    """The state folder is made directly under /tmp: munged runs as the munge user, which cannot pass
    through pytest's private (0700) temporary folders."""
    d = Path(tempfile.mkdtemp(prefix="vigil-slurm-"))
    try:
        with _cluster(d) as cluster:
            yield cluster
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextmanager
def _cluster(d: Path) -> Iterator[Slurm]:
    for program in ("slurmctld", "slurmd", "munged", "scontrol"):
        if shutil.which(program) is None:
            raise RuntimeError(f"{program} is not installed: the Makefile's set-up installs slurm-wlm and munge")
    for sub in ("state", "spool", "log", "munge", "dev"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for i in range(8):
        (d / "dev" / f"nvidia{i}").touch()
    shutil.chown(d / "munge", "munge", "munge")
    os.chmod(d / "munge", 0o755)
    os.chmod(d, 0o755)
    (d / "slurm.conf").write_text(_conf(d))
    (d / "gres.conf").write_text(f"AutoDetect=off\nNodeName={NODE} Name=gpu File={d}/dev/nvidia[0-7]\n")
    cluster = Slurm(d, d / "slurm.conf")
    munge_args = [
        "--socket",
        f"{d}/munge/munge.socket",
        "--pid-file",
        f"{d}/munge/munged.pid",
        "--log-file",
        f"{d}/munge/munged.log",
        "--seed-file",
        f"{d}/munge/munged.seed",
        "--key-file",
        "/etc/munge/munge.key",
    ]
    subprocess.run(["runuser", "-u", "munge", "--", "munged", *munge_args], check=True, timeout=15)
    procs = []
    try:
        conf = str(cluster.conf)
        daemons = (["slurmctld", "-D", "-i", "-f", conf], ["slurmd", "-D", "-N", NODE, "-f", conf])
        for argv in daemons:
            log = open(d / "log" / f"{argv[0]}.out", "wb")  # noqa: SIM115 - closed with the process
            proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=cluster.env)
            procs.append((proc, log))
        cluster.wait_for(lambda: "State=IDLE" in cluster.node() if _answers(cluster) else False, timeout=30)
        yield cluster
    finally:
        cancel = ["scancel", "--full", "--user=root"]
        subprocess.run(cancel, env=cluster.env, capture_output=True, timeout=15, check=False)
        for proc, log in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        pid = (d / "munge" / "munged.pid").read_text().strip() if (d / "munge" / "munged.pid").exists() else ""
        if pid.isdigit():
            os.kill(int(pid), 15)


def _answers(cluster: Slurm) -> bool:
    try:
        cluster.node()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False
    return True
