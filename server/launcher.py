"""Run the `tritonserver` binary shipped in the nvidia-pytriton wheel, with no Docker and no GPU.

`TritonServer` is a context manager: it checks what would make the server fail (ports, repository,
stub), starts it in its own process group, waits until it is ready, and on exit stops it and every
backend process it spawned.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from swaptron.assets import cache_dir

PR_SET_PDEATHSIG = 1
READY_POLL_SECONDS = 0.2


class ServerError(RuntimeError):
    """The server could not start or stop; the message says what and how to fix it."""


@dataclass(frozen=True)
class ServerPorts:
    """The three ports tritonserver listens on."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def free_ports() -> ServerPorts:
    """Three ports that are free on 127.0.0.1 right now (for tests and benchmarks)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        http, grpc, metrics = (sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    return ServerPorts(http=http, grpc=grpc, metrics=metrics)


def wheel_server_dir() -> Path:
    """The `tritonserver` folder inside the installed nvidia-pytriton wheel."""
    import pytriton

    folder = Path(pytriton.__file__).resolve().parent / "tritonserver"
    if not (folder / "bin" / "tritonserver").is_file():
        raise ServerError(f"{folder}/bin/tritonserver is missing: reinstall nvidia-pytriton==0.7.0")
    return folder


def wheel_libs_dir() -> Path:
    """The shared libraries the wheel's binaries link against (`nvidia_pytriton.libs`)."""
    return wheel_server_dir().parent.parent / "nvidia_pytriton.libs"


def python_tag() -> str:
    """`3.11`-style version of the running Python, as the stub folders are named."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def pytriton_version() -> str:
    """Installed nvidia-pytriton version (names the prepared server folder)."""
    return importlib.metadata.version("nvidia-pytriton")


def prepare_server_home(python_version: str | None = None) -> Path:
    """Copy the wheel's server folder into the cache once, with the backend stub for the Python.

    `python_version` (`3.11`-style) defaults to the running Python, whose stub the server must
    use. Returns the prepared folder (holding `bin/tritonserver` and `backends/`).
    """
    version = python_version or python_tag()
    source = wheel_server_dir()
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        shipped = sorted(p.name for p in (source / "python_backend_stubs").iterdir())
        raise ServerError(
            f"no Python-backend stub for Python {version} in nvidia-pytriton "
            f"(it ships {', '.join(shipped)}): create .venv with one of those Pythons"
        )
    home = cache_dir() / f"tritonserver-{pytriton_version()}-py{version}"
    placed_stub = home / "backends" / "python" / "triton_python_backend_stub"
    if placed_stub.is_file():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tritonserver-", dir=home.parent))
    shutil.copytree(source, staging, dirs_exist_ok=True)
    shutil.copy2(stub, staging / "backends" / "python" / "triton_python_backend_stub")
    if home.exists():
        shutil.rmtree(home)
    staging.replace(home)
    return home


def server_environment() -> dict[str, str]:
    """Environment for tritonserver: its libraries and libpython found, this venv's Python first."""
    env = dict(os.environ)
    python_libdir = sysconfig.get_config_var("LIBDIR") or ""
    library_path = [str(wheel_libs_dir()), python_libdir, env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in library_path if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def repository_models(repository: Path) -> list[str]:
    """Names of the models in a repository; raises ServerError when it is missing or empty."""
    if not repository.is_dir():
        raise ServerError(
            f"model repository {repository} does not exist: run `swaptron export` "
            "or pass --model-repository"
        )
    models = sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file())
    if not models:
        raise ServerError(
            f"model repository {repository} holds no model (no */config.pbtxt): "
            "run `swaptron export` or pass another --model-repository"
        )
    return models


def check_port_free(host: str, port: int, option: str) -> None:
    """Raise ServerError naming the option to change when something already listens on the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise ServerError(
                f"port {port} on {host} is already in use ({error.strerror}): "
                f"stop what holds it or pick another with {option}"
            ) from error


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the launching process dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
    ) -> None:
        self.repository = repository.resolve()
        self.host = host
        self.ports = ports or ServerPorts()
        default_log = Path(tempfile.gettempdir()) / f"swaptron-triton-{os.getpid()}.log"
        self.log_path = log_path or default_log
        self.ready_timeout_s = ready_timeout_s
        self.extra_args = extra_args
        self.allow_empty_repository = allow_empty_repository
        self._process: subprocess.Popen[bytes] | None = None

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
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        """Check, start and wait until ready; raises ServerError and leaves nothing running."""
        if not self.allow_empty_repository:
            repository_models(self.repository)
        for port, option in ((self.ports.http, "--http-port"), (self.ports.grpc, "--grpc-port"),
                             (self.ports.metrics, "--metrics-port")):
            check_port_free(self.host, port, option)
        home = prepare_server_home()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(home), stdout=log, stderr=subprocess.STDOUT, env=server_environment(),
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

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
        """True while the server process runs."""
        return self._process is not None and self._process.poll() is None

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the server, wait, then SIGKILL whatever is left of its process group."""
        process, self._process = self._process, None
        if process is None:
            return
        group = process.pid
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                process.wait(timeout=grace_s)
        deadline = time.monotonic() + grace_s
        while group_alive(group):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                break
            time.sleep(0.05)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def group_alive(group: int) -> bool:
    """True while any process of the process group exists."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
