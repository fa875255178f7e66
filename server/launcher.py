"""Run the `tritonserver` binary shipped in the nvidia-pytriton wheel, with no Docker and no GPU.

`TritonServer` is a context manager: it checks what would make the server fail (ports, repository,
unexported models, stub), starts it in its own process group, waits until it is ready, and on
exit stops it and every backend process it spawned, and removes its shared-memory regions.

Protections, all from what Triton itself offers (see server/access.py for the admin key):
- the locked APIs (model repository, shared-memory registration, logging, trace, and inference
  over HTTP) need the admin key;
- each Python-backend stub's shared-memory pool cannot grow past `pool_limit_bytes`: the server
  runs with that file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored), so an oversized request
  fails with "Failed to increase the shared memory pool size" instead of growing a pool that
  never shrinks;
- its address space is capped at the machine's memory (RLIMIT_AS), so an absurd tensor shape
  fails to allocate instead of being touched;
- its files (the pools carry the frames) are created with umask 077, readable by this user only;
- with `supervise`, a watcher thread restarts the server when it exits or when one of its
  Python stubs dies (Triton 2.51 neither restarts a dead stub nor reports it in readiness), and
  records how long each recovery took;
- no stub outlives its server (server/reaper.py): a guardian process kills what the server
  leaves when it dies, even when this process was killed with it, and each start first kills
  the stubs of dead swaptron servers and deletes their regions.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
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

import psutil
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tritonclient.grpc import model_config_pb2 as mc

from swaptron.assets import cache_dir
from swaptron.server import access, reaper

PR_SET_PDEATHSIG = 1
SIG_IGN = 1
READY_POLL_SECONDS = 0.2
WATCH_POLL_SECONDS = 0.2
DEFAULT_POOL_LIMIT = 128 << 20  # a batch of 8 frames of 1920x1080 in and out is 100 MB
SHM_FOLDER = Path("/dev/shm")
STUB_PREFIX = "triton_python_b"  # the stub's process name, as the kernel truncates it
MIN_ADDRESS_SPACE = 4 << 30  # the address-space cap never goes below this
RESTART_WINDOW_S = 60.0
MAX_RESTARTS = 5
JEMALLOC = "libjemalloc.so.2"  # Debian's libjemalloc2 (`make debs`)
JEMALLOC_FOLDERS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"),
                    Path("/usr/lib64"), Path("/usr/lib"), Path("/usr/local/lib"))
# freed pages are kept 10 s for the next frame, then handed back by jemalloc's own thread
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:10000,muzzy_decay_ms:0,narenas:2"
GLIBC_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


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


def jemalloc_path() -> Path | None:
    """Where this machine's jemalloc is, if it has one."""
    return next((folder / JEMALLOC for folder in JEMALLOC_FOLDERS
                 if (folder / JEMALLOC).is_file()), None)


def server_allocator(jemalloc: Path | None) -> dict[str, str]:
    """The malloc settings of the tritonserver process: jemalloc when the machine has it, else
    glibc told to hand every large buffer back.

    gRPC receives a request whole before Triton looks at it (2.51 has no size limit), in buffers
    of up to 4 MB; with glibc's defaults a refused 300 MB frame left about 300 MB in the server's
    heap for good. glibc can only return it by mapping every allocation of 64 KiB or more on its
    own and trimming the heap at once, and then every frame's buffers (request, the tensors
    between steps, the response) are fresh mappings: at 1920x1080 the page faults cost the
    server 27-33 ms of kernel time per frame here. jemalloc keeps freed pages for reuse and hands
    them back after `dirty_decay_ms` (measured: 5 ms of kernel time per 1080p frame, and the
    server's private memory back to 58 MB 12 s after refused 75-300 MB frames).
    """
    if jemalloc is None:
        return dict(GLIBC_MALLOC)
    return {"LD_PRELOAD": str(jemalloc), "MALLOC_CONF": JEMALLOC_CONF}


def server_environment(home: Path, allocator: dict[str, str]) -> dict[str, str]:
    """Environment for tritonserver: its libraries and libpython found, this venv's Python first,
    and its allocator (`server_allocator`). The Python stubs are started by `bash -c`, which
    first runs $BASH_ENV: that script takes the allocator settings away again, so the stubs run
    on glibc's defaults (the glibc settings cost their ONNX Runtime and NumPy a third of their
    throughput).
    """
    env = dict(os.environ)
    python_libdir = sysconfig.get_config_var("LIBDIR") or ""
    library_path = [str(wheel_libs_dir()), python_libdir, env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in library_path if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(allocator)
    env["BASH_ENV"] = str(stub_environment_script(home, allocator))
    return env


def stub_environment_script(home: Path, allocator: dict[str, str]) -> Path:
    """The $BASH_ENV script that takes the server's allocator settings from the Python stubs."""
    names = sorted({*allocator, *GLIBC_MALLOC, "LD_PRELOAD", "MALLOC_CONF"})
    script = home / "stub-environment.sh"
    text = f"unset {' '.join(names)}\n"
    if not script.is_file() or script.read_text() != text:
        partial = script.with_suffix(f".{os.getpid()}.part")
        partial.write_text(text)
        partial.replace(script)
    return script


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


def child_setup(pool_limit_bytes: int) -> Callable[[], None]:
    """What the server process does before exec: die with its parent, keep its files private,
    cap the size of any file it writes (its shared-memory pools) without dying at the cap, and
    cap its address space at this machine's memory. jemalloc maps with MAP_NORESERVE, so the
    kernel no longer refuses a request for more than the machine has (the 30 GB shape of
    tests/helpers.py's JSON): at the cap the allocation fails as it did under glibc, the server
    exits and the supervisor restarts it, instead of the server touching 30 GB."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here, not in the forked child
    # the server maps about 2.3 GB of address space at rest, the stubs under 0.8 GB each
    address_limit = max(psutil.virtual_memory().total, MIN_ADDRESS_SPACE)
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.signal.restype = ctypes.c_void_p

    def setup() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        libc.signal(signal.SIGXFSZ, SIG_IGN)
        os.umask(0o077)
        resource.setrlimit(resource.RLIMIT_FSIZE, (pool_limit_bytes, pool_limit_bytes))
        resource.setrlimit(resource.RLIMIT_AS, (address_limit, address_limit))

    return setup


def version_folders(model: Path) -> list[Path]:
    """Numbered version folders of a model that hold at least one file."""
    return [p for p in model.iterdir() if p.is_dir() and p.name.isdigit() and any(p.iterdir())]


def python_models(repository: Path) -> set[str]:
    """Names of a repository's Python-backend models: each runs in a stub process of its own."""
    names = set()
    for path in repository.glob("*/config.pbtxt"):
        with contextlib.suppress(text_format.ParseError, DecodeError, OSError):
            if text_format.Parse(path.read_text(), mc.ModelConfig()).backend == "python":
                names.add(path.parent.name)
    return names


def unexported_models(repository: Path) -> list[str]:
    """Models whose configs are there but whose files are not (a fresh clone before export).

    A Python-backend model needs its `model.py` (and the file an `onnx_file` parameter names); a
    model of another backend needs a non-empty version folder; ensembles need nothing.
    """
    missing = []
    for path in sorted(repository.glob("*/config.pbtxt")):
        try:
            config = text_format.Parse(path.read_text(), mc.ModelConfig())
        except (text_format.ParseError, DecodeError) as error:
            raise ServerError(f"{path} is not a valid model config: {error}") from error
        if config.platform == "ensemble":
            continue
        versions = version_folders(path.parent)
        needed = ["model.py"] if config.backend == "python" else []
        if "onnx_file" in config.parameters:
            needed.append(config.parameters["onnx_file"].string_value)
        if not versions or not all((versions[0] / name).is_file() for name in needed):
            missing.append(path.parent.name)
    return missing


def stub_models(server_pid: int) -> dict[int, str]:
    """Live Python-backend stubs of a server: pid -> model name (from the stub's model path)."""
    stubs = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(server_pid).children():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
                if (not child.name().startswith(STUB_PREFIX)
                        or child.status() == psutil.STATUS_ZOMBIE):
                    continue
                stubs[child.pid] = Path(child.cmdline()[1]).parent.parent.name
    return stubs


def make_private(prefix: str) -> None:
    """Make the server's /dev/shm regions readable by this user only.

    The Python backend creates them with mode 0644 (boost sets it whatever the umask), and the
    frames pass through them. They are created while the models load, before any request, and
    this runs as soon as the server is ready.
    """
    for path in SHM_FOLDER.glob(f"{prefix}*"):
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)


def remove_shm_regions(prefix: str) -> list[str]:
    """Delete the /dev/shm files whose names start with `prefix`; their names."""
    removed = []
    for path in SHM_FOLDER.glob(f"{prefix}*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


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
            repository_models(self.repository)
            missing = unexported_models(self.repository)
            if missing:
                raise ServerError(
                    f"model repository {self.repository} has configs but no exported graphs "
                    f"for {', '.join(missing)}: run `swaptron export` (add --output "
                    f"{self.repository} for another folder) before serving it")
        for port, option in ((self.ports.http, "--http-port"), (self.ports.grpc, "--grpc-port"),
                             (self.ports.metrics, "--metrics-port")):
            check_port_free(self.host, port, option)

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


def group_alive(group: int) -> bool:
    """True while any process of the process group exists."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
