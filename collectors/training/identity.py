"""Who is reporting: job, rank, host and GPU, from arguments, torch.distributed or the launcher's environment.

Launchers name things differently: torchrun sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` and
``TORCHELASTIC_RUN_ID``; Slurm sets ``SLURM_JOB_ID``/``SLURM_PROCID``/``SLURM_LOCALID``/``SLURM_NTASKS``.
An initialised ``torch.distributed`` process group is the most authoritative source of rank and world
size, so it wins when present. torch is never imported here: it is consulted only when the training
script has imported it already (``sys.modules``), so the SDK costs nothing in a script without torch.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vigil.errors import ConfigError

JOB_ID_VARS = ("VIGIL_JOB_ID", "SLURM_JOB_ID", "TORCHELASTIC_RUN_ID")
# (rank, local rank, world size) as torchrun names them, then as Slurm does.
LAUNCHER_VARS = (("RANK", "LOCAL_RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"))
# torchrun's default rendezvous id is the literal "none": it names no job.
_NO_JOB = frozenset({"", "none"})


@dataclass(frozen=True, slots=True)
class Identity:
    job_id: str
    rank: int
    local_rank: int
    world_size: int
    host: str
    gpu_index: int | None
    cluster: str = "default"


def job_id_from(env: Mapping[str, str]) -> str | None:
    for name in JOB_ID_VARS:
        value = env.get(name, "").strip()
        if value.lower() not in _NO_JOB:
            return value
    return None


def resolve_job_id(job_id: str | None, env: Mapping[str, str] | None = None) -> str:
    """The explicit job id, else the first of ``VIGIL_JOB_ID``, ``SLURM_JOB_ID``, ``TORCHELASTIC_RUN_ID``."""
    found = job_id if job_id else job_id_from(os.environ if env is None else env)
    if not found:
        raise ConfigError(f"training reporter: no job id (pass job_id= or set one of {', '.join(JOB_ID_VARS)})")
    return found


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"training reporter: environment variable {name}={raw!r} is not an integer") from None
    if value < 0:
        raise ConfigError(f"training reporter: environment variable {name}={raw!r} is negative")
    return value


def _distributed() -> Any | None:
    """``torch.distributed`` when the script imported torch and initialised a process group, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def distributed_ready() -> bool:
    """Whether rank and world size come from an initialised torch.distributed process group."""
    return _distributed() is not None


def ranks(env: Mapping[str, str]) -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)``: torch.distributed, else torchrun's variables, else Slurm's, else 0/0/1."""
    dist = _distributed()
    if dist is not None:
        local = _int(env, "LOCAL_RANK")
        if local is None:
            local = _int(env, "SLURM_LOCALID")
        return int(dist.get_rank()), local or 0, int(dist.get_world_size())
    for rank_var, local_var, world_var in LAUNCHER_VARS:
        rank = _int(env, rank_var)
        if rank is not None:
            local, world = _int(env, local_var), _int(env, world_var)
            return rank, local if local is not None else 0, world if world is not None else rank + 1
    return 0, 0, 1


@dataclass(frozen=True, slots=True)
class CudaView:
    """What torch knows about CUDA in this process: usable at all, and the current device once initialised."""

    available: bool
    current: int | None


def cuda_view() -> CudaView | None:
    """None when the script has not imported torch (then only the environment can tell)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if not torch.cuda.is_available():
        return CudaView(False, None)
    return CudaView(True, int(torch.cuda.current_device()) if torch.cuda.is_initialized() else None)


def gpu_index(env: Mapping[str, str], local_rank: int | None, cuda: CudaView | None) -> int | None:
    """The physical GPU index (as NVML and nvidia-smi number it, which is what telemetry is keyed by).

    The device the process uses, as it sees it: torch's current device once CUDA is initialised, else
    device 0 when only one is visible (Slurm's ``--gpus-per-task``), else the local rank (torchrun's
    convention). ``CUDA_VISIBLE_DEVICES=2,3`` and device 1 is physical GPU 3. A CPU job (torch without
    CUDA) has none, and entries given as UUIDs or MIG names cannot be turned into an index without
    NVML, so the index is then unknown (None).
    """
    raw = env.get("CUDA_VISIBLE_DEVICES")
    visible = [v.strip() for v in raw.split(",") if v.strip()] if raw is not None else []
    if cuda is not None and not cuda.available:
        return None
    if cuda is not None and cuda.current is not None:
        logical: int | None = cuda.current
    elif len(visible) == 1:
        logical = 0
    else:
        logical = local_rank
    if logical is None:
        return None
    if raw is None:
        return logical
    if logical >= len(visible) or not visible[logical].isdigit():
        return None
    return int(visible[logical])


def detect(
    job_id: str | None = None,
    cluster: str | None = None,
    env: Mapping[str, str] | None = None,
    gpu: int | None = None,
) -> Identity:
    """Everything the reporter stamps on a step; explicit arguments win over what is detected."""
    env = os.environ if env is None else env
    rank, local_rank, world = ranks(env)
    has_local = "LOCAL_RANK" in env or "SLURM_LOCALID" in env or _distributed() is not None
    index = gpu if gpu is not None else gpu_index(env, local_rank if has_local else None, cuda_view())
    return Identity(
        job_id=resolve_job_id(job_id, env),
        rank=rank,
        local_rank=local_rank,
        world_size=world,
        host=socket.gethostname(),
        gpu_index=index,
        cluster=cluster or env.get("VIGIL_CLUSTER", "").strip() or "default",
    )
