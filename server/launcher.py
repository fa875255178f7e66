"""Run the `tritonserver` shipped in the nvidia-pytriton wheel, with no Docker and no GPU: the
server's lifecycle and its supervision.

`TritonServer` is a context manager: it checks what would make the server fail (ports, repository,
unexported models, stub), starts it in its own process group, waits until it is ready, and on
exit stops it and every backend process it spawned, and removes its shared-memory regions. The
steps it runs live in their own modules (install, environment, repository_checks, ports, shm,
processes); the names callers import from here are re-exported.

Protections, all from what Triton itself offers (see server/access.py for the admin key):
- the locked APIs (model repository, shared-memory registration, logging, trace, and inference
  over HTTP) need the admin key;
- each stub's shared-memory pool is capped at `pool_limit_bytes`, the address space at the
  machine's memory, and its files are private (server/environment.py);
- with `supervise`, a watcher thread restarts the server when it exits or when one of its
  Python stubs dies (Triton 2.51 neither restarts a dead stub nor reports it in readiness), and
  records how long each recovery took;
- no stub outlives its server (server/reaper.py): a guardian process kills what the server
  leaves when it dies, even when this process was killed with it, and each start first kills
  the stubs of dead swaptron servers and deletes their regions.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from swaptron.server import access, reaper
from swaptron.server.environment import (
    GLIBC_MALLOC,
    JEMALLOC,
    JEMALLOC_CONF,
    MIN_ADDRESS_SPACE,
    child_setup,
    jemalloc_path,
    server_allocator,
    server_environment,
)
from swaptron.server.errors import ServerError
from swaptron.server.install import prepare_server_home
from swaptron.server.ports import ServerPorts, check_port_free, check_ports_free, free_ports
from swaptron.server.processes import group_alive, stub_models
from swaptron.server.repository_checks import check_repository, python_models
from swaptron.server.shm import SHM_FOLDER, make_private, remove_shm_regions

__all__ = [
    "GLIBC_MALLOC", "JEMALLOC", "JEMALLOC_CONF", "MIN_ADDRESS_SPACE", "SHM_FOLDER", "Recovery",
    "ServerError", "ServerPorts", "TritonServer", "check_port_free", "first_error", "free_ports",
    "group_alive", "jemalloc_path", "prepare_server_home", "server_allocator",
    "server_environment", "stub_models",
]

READY_POLL_SECONDS = 0.2
WATCH_POLL_SECONDS = 0.2
DEFAULT_POOL_LIMIT = 128 << 20  # a batch of 8 frames of 1920x1080 in and out is 100 MB
RESTART_WINDOW_S = 60.0
MAX_RESTARTS = 5


@dataclass(frozen=True)
class Recovery:
    """One supervised restart: why, and how long until the server was ready again."""

    cause: str
    seconds: float


_LOAD_FAILURE = re.compile(r"failed to load '([^']+)'[^:]*: (.*?)\"?$")


def first_error(log_text: str) -> str:
    """The most useful line of a failed server's log, phrased for a user."""
    for line in log_text.splitlines():
        match = _LOAD_FAILURE.search(line)
        if match:
            return f"model '{match.group(1)}' failed to load: {match.group(2).strip()}"
    errors = [line for line in log_text.splitlines() if line.startswith("E")]
    if errors:
        return errors[0].split("] ", 1)[-1].strip().strip('"')
    tail = [line for line in log_text.splitlines() if line.strip()]
    return tail[-1] if tail else "no output"


class TritonServer:
    """A running tritonserver, as a context manager that never leaves a process behind."""

    def __init__(
        self,
        repository: Path,
        *,
        host: str = "127.0.0.1",
        ports: ServerPorts | None = None,
        log_path: Path | None = None,
        ready_timeout_s: float = 300.0,
        extra_args: tuple[str, ...] = (),
        allow_empty_repository: bool = False,
        admin_key: str | None = None,
        lock_apis: bool = True,
        pool_limit_bytes: int = DEFAULT_POOL_LIMIT,
        supervise: bool = False,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.repository = repository.resolve()
        self.host = host
        self.ports = ports or ServerPorts()
        default_log = Path(tempfile.gettempdir()) / f"swaptron-triton-{os.getpid()}.log"
        self.log_path = log_path or default_log
        self.ready_timeout_s = ready_timeout_s
        self.extra_args = extra_args
        self.allow_empty_repository = allow_empty_repository
        self.admin_key = admin_key or access.admin_key(create=True)
        self.lock_apis = lock_apis
        self.pool_limit_bytes = pool_limit_bytes
        self.supervise = supervise
        self.on_event = on_event or (lambda _message: None)
        self.allocator = server_allocator(jemalloc_path())
        self.shm_prefix = reaper.new_prefix()
        self.recoveries: list[Recovery] = []
        self.failure: str | None = None  # why supervision gave up
        self._process: subprocess.Popen[bytes] | None = None
        self._guardian: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._stubs: dict[int, str] = {}
        self._python_models: set[str] = set()
        self._restarts: list[float] = []

    @property
    def client_host(self) -> str:
        """Address a local client dials (0.0.0.0 binds are reached through loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_url(self) -> str:
        """`host:port` of the HTTP endpoint."""
        return f"{self.client_host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        """`host:port` of the gRPC endpoint."""
        return f"{self.client_host}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics."""
        return f"http://{self.client_host}:{self.ports.metrics}/metrics"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when stopped."""
        return self._process.pid if self._process else None

    def command(self, home: Path) -> list[str]:
        """The tritonserver command line."""
        return [
            str(home / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={home / 'backends'}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--http-address={self.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
            # a pooled gRPC request keeps the capacity of the largest message it ever held
            "--grpc-infer-allocation-pool-size=0",
            *(access.restriction_arguments(self.admin_key) if self.lock_apis else ()),
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        """Check, start and wait until ready; raises ServerError and leaves nothing running."""
        self.preflight()
        if "LD_PRELOAD" not in self.allocator:
            self.on_event(f"no {JEMALLOC} on this machine: the server maps every frame buffer "
                          "afresh (slower; `make debs` installs libjemalloc2)")
        self._python_models = python_models(self.repository)
        self.reap()
        self._stopping.clear()
        self._launch(truncate_log=True)
        if self.supervise:
            self._watcher = threading.Thread(target=self._watch, name="triton-supervisor",
                                             daemon=True)
            self._watcher.start()
        return self

    def preflight(self) -> None:
        """Raise ServerError naming the fix for what would stop the server from starting."""
        if not self.allow_empty_repository:
            check_repository(self.repository)
        check_ports_free(self.host, self.ports)

    def reap(self) -> None:
        """Kill the stubs of swaptron servers that died hard, and delete their regions."""
        reaped = reaper.reap_orphans()
        if reaped.stubs or reaped.regions:
            self.on_event(f"killed {len(reaped.stubs)} Python stub(s) of dead servers "
                          f"({', '.join(map(str, reaped.stubs)) or 'none'}) and deleted "
                          f"{len(reaped.regions)} shared-memory region(s) they left")

    def _launch(self, truncate_log: bool) -> None:
        """Start the process and wait until it is ready; on failure nothing is left running."""
        home = prepare_server_home()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.log_path.open("wb" if truncate_log else "ab") as log:
            self._process = subprocess.Popen(
                self.command(home), stdout=log, stderr=subprocess.STDOUT,
                env=server_environment(home, self.allocator),
                start_new_session=True, preexec_fn=child_setup(self.pool_limit_bytes),
            )
            self._guardian = self._guard(self._process.pid, log)
        try:
            self._wait_ready()
        except BaseException:
            self._terminate(grace_s=15.0)
            raise
        self._stubs = stub_models(self._process.pid)
        make_private(self.shm_prefix)

    def _guard(self, server_pid: int, log: IO[bytes]) -> subprocess.Popen[bytes] | None:
        """The guardian of a server just started, None (and a warning) where it cannot run."""
        try:
            return reaper.start_guardian(server_pid, self.shm_prefix, log)
        except OSError as error:
            self.on_event(f"no guardian for the server ({error}): its Python stubs can outlive "
                          "it if it is killed hard")
            return None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise ServerError(f"tritonserver exited: {first_error(self.log_text())} "
                                  f"(log: {self.log_path})")
            with (contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                  urllib.request.urlopen(url, timeout=1.0) as response):
                if response.status == 200:
                    return
            time.sleep(READY_POLL_SECONDS)
        raise ServerError(f"tritonserver not ready after {self.ready_timeout_s:.0f} s "
                          f"(log: {self.log_path})")

    def log_text(self) -> str:
        """What the server has written to its log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        """True while the server process runs (or is being restarted by the supervisor)."""
        if self.supervise and self.failure is None and self._watcher is not None:
            return self._watcher.is_alive()
        return self._process is not None and self._process.poll() is None

    def broken(self) -> str | None:
        """Why the running server cannot serve: it exited, or a Python stub died; else None."""
        with self._lock:
            process = self._process
            if process is None:
                return None
            code = process.poll()
            if code is not None:
                return f"tritonserver exited with code {code}"
            alive = stub_models(process.pid)
            for pid, model in self._stubs.items():
                if pid not in alive:
                    return f"the Python stub of model '{model}' (pid {pid}) died"
            # a stub killed between readiness and the first look at the stubs has no pid on
            # record: its model has no stub at all
            gone = sorted(self._python_models - set(alive.values()))
            if gone:
                return f"the Python stub of model '{gone[0]}' died (no stub process left)"
            self._stubs.update(alive)
        return None

    def _watch(self) -> None:
        """Supervisor: restart the server when it breaks, at most MAX_RESTARTS a minute."""
        while not self._stopping.wait(WATCH_POLL_SECONDS):
            cause = self.broken()
            if cause is None:
                continue
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
            if len(self._restarts) >= MAX_RESTARTS:
                self.failure = (f"{cause}; gave up after {MAX_RESTARTS} restarts in "
                                f"{RESTART_WINDOW_S:.0f} s (log: {self.log_path})")
                self.on_event(f"error: {self.failure}")
                self._terminate(grace_s=0.0)
                return
            self._restarts.append(now)
            self.on_event(f"{cause}: restarting the server")
            self._recover(cause, now)

    def _recover(self, cause: str, detected: float) -> None:
        """Kill what is left of the broken server and start it again on the same ports."""
        self._terminate(grace_s=0.0)
        with self._lock:
            if self._stopping.is_set():
                return
            with self.log_path.open("ab") as log:
                log.write(f"\n=== swaptron: {cause}; restarting ===\n".encode())
            try:
                self._launch(truncate_log=False)
            except ServerError as error:
                self.on_event(f"restart failed: {error}")
                return
        seconds = round(time.monotonic() - detected, 2)
        self.recoveries.append(Recovery(cause, seconds))
        self.on_event(f"recovered: ready again {seconds:.1f} s after {cause}")

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop supervising, SIGTERM the server, wait, SIGKILL what is left of its process
        group, and remove its shared-memory regions."""
        self._stopping.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
        self._terminate(grace_s)

    def _terminate(self, grace_s: float) -> None:
        """End the process group (SIGKILL at once when grace_s is 0) and clean /dev/shm."""
        with self._lock:
            process, self._process = self._process, None
            guardian, self._guardian = self._guardian, None
        if process is None:
            reaper.stop_guardian(guardian)
            return
        group = process.pid
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if grace_s > 0:
                    process.send_signal(signal.SIGTERM)
                else:
                    os.killpg(group, signal.SIGKILL)
            try:
                process.wait(timeout=max(grace_s, 1.0))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                process.wait(timeout=15.0)
        deadline = time.monotonic() + max(grace_s, 1.0)
        while group_alive(group):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                break
            time.sleep(0.05)
        remove_shm_regions(self.shm_prefix)
        reaper.stop_guardian(guardian)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
