"""Who a training process is: job, rank, world and GPU from arguments, torch.distributed or the launcher."""

from __future__ import annotations

import socket

import pytest
from vigil.collectors.training import identity
from vigil.collectors.training.identity import CudaView, detect, gpu_index, ranks, resolve_job_id

from vigil.errors import ConfigError

NO_TORCH = None  # the script never imported torch: only the environment can tell
CPU_ONLY = CudaView(available=False, current=None)
CUDA_NOT_INIT = CudaView(available=True, current=None)


def test_job_id_comes_from_the_argument_then_vigil_then_slurm_then_torchelastic() -> None:
    env = {"VIGIL_JOB_ID": "v", "SLURM_JOB_ID": "123", "TORCHELASTIC_RUN_ID": "te"}
    assert resolve_job_id("arg", env) == "arg"
    assert resolve_job_id(None, env) == "v"
    assert resolve_job_id(None, {"SLURM_JOB_ID": "123", "TORCHELASTIC_RUN_ID": "te"}) == "123"
    assert resolve_job_id(None, {"TORCHELASTIC_RUN_ID": "te"}) == "te"


def test_torchruns_default_run_id_none_names_no_job() -> None:
    with pytest.raises(ConfigError, match="VIGIL_JOB_ID"):
        resolve_job_id(None, {"TORCHELASTIC_RUN_ID": "none"})


def test_ranks_from_torchrun_then_slurm_then_single_process() -> None:
    assert ranks({"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "SLURM_PROCID": "0"}) == (5, 1, 8)
    assert ranks({"SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_NTASKS": "16"}) == (9, 1, 16)
    assert ranks({}) == (0, 0, 1)


def test_a_bad_rank_variable_fails_at_start_naming_it() -> None:
    with pytest.raises(ConfigError, match="RANK='x'"):
        ranks({"RANK": "x"})
    with pytest.raises(ConfigError, match="WORLD_SIZE='-2'"):
        ranks({"RANK": "0", "WORLD_SIZE": "-2"})


def test_gpu_index_maps_the_local_rank_through_cuda_visible_devices() -> None:
    assert gpu_index({"CUDA_VISIBLE_DEVICES": "2,3"}, 1, NO_TORCH) == 3
    assert gpu_index({}, 1, NO_TORCH) == 1
    assert gpu_index({"CUDA_VISIBLE_DEVICES": "6"}, 3, CUDA_NOT_INIT) == 6  # one GPU per task (Slurm)
    assert gpu_index({"CUDA_VISIBLE_DEVICES": "4,5,6"}, 0, CudaView(True, 2)) == 6  # torch's current device wins


def test_gpu_index_is_unknown_where_it_cannot_be_told() -> None:
    assert gpu_index({"CUDA_VISIBLE_DEVICES": "GPU-1f2e,GPU-9a8b"}, 1, NO_TORCH) is None  # UUIDs need NVML
    assert gpu_index({"CUDA_VISIBLE_DEVICES": "0,1"}, 4, NO_TORCH) is None  # more ranks than GPUs
    assert gpu_index({"LOCAL_RANK": "1"}, 1, CPU_ONLY) is None  # a gloo job on CPUs has no GPU
    assert gpu_index({}, None, NO_TORCH) is None


def test_detect_stamps_host_and_cluster_and_explicit_arguments_win() -> None:
    env = {"VIGIL_JOB_ID": "job-7", "RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "4", "VIGIL_CLUSTER": "dc2"}
    found = detect(env=env, gpu=5)
    assert (found.job_id, found.rank, found.local_rank, found.world_size) == ("job-7", 3, 3, 4)
    assert found.host == socket.gethostname() and found.cluster == "dc2" and found.gpu_index == 5
    assert detect("other", cluster="dc9", env=env).job_id == "other"
    assert detect("other", cluster="dc9", env=env).cluster == "dc9"


def test_an_initialised_process_group_wins_over_the_environment(unused_tcp_port: int) -> None:
    dist = pytest.importorskip("torch.distributed")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{unused_tcp_port}", rank=0, world_size=1)
    try:
        assert identity.distributed_ready()
        assert ranks({"RANK": "7", "WORLD_SIZE": "9", "LOCAL_RANK": "2"}) == (0, 2, 1)
    finally:
        dist.destroy_process_group()
    assert not identity.distributed_ready()


@pytest.fixture
def unused_tcp_port() -> int:
    from vigil.broker import free_port

    return free_port()
