"""No Python-backend stub outlives its server: a server and `swaptron serve` killed hard mid-stream
leave no stub, the next start kills stubs a dead server left behind, live servers keep theirs."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from swaptron import assets
from swaptron.server import reaper
from swaptron.server.launcher import (
    SHM_FOLDER,
    ServerPorts,
    TritonServer,
    free_ports,
    stub_models,
)
from swaptron.specs import STREAM

LIVENESS_S = 10.0  # the bound: no stub left this long after the kill
READY_S = 300.0

STUCK_CONFIG = """
name: "stuck"
backend: "python"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

# Blocks in C while holding the GIL, as a serving stub does when its server dies (it waits in
# C++ for the server's answer): the stub's own exit path then waits for the GIL forever.
STUCK_MODEL = '''
import ctypes
from pathlib import Path


class TritonPythonModel:
    def execute(self, requests):
        (Path(__file__).parent / "busy").touch()
        ctypes.PyDLL(None).pause()
        return []
'''

DOUBLE_CONFIG = STUCK_CONFIG.replace('"stuck"', '"double"')
DOUBLE_MODEL = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 2)]) for r in requests]
'''


def one_model_repository(folder: Path, config: str, model_py: str) -> Path:
    """A repository of one Python-backend model."""
    name = config.split('"')[1]
    (folder / name / "1").mkdir(parents=True)
    (folder / name / "config.pbtxt").write_text(textwrap.dedent(config))
    (folder / name / "1" / "model.py").write_text(textwrap.dedent(model_py))
    return folder


def serve_command(repository: Path, ports: ServerPorts, log: Path) -> list[str]:
    """`swaptron serve` on a repository and ports."""
    return [sys.executable, "-m", "swaptron", "serve", "--model-repository", str(repository),
            "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
            "--metrics-port", str(ports.metrics), "--log-file", str(log)]


@contextmanager
def running_serve(repository: Path, ports: ServerPorts, log: Path
                  ) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`swaptron serve` until its "ready:" line (the lines so far come with it); killed at exit
    unless the body ended it."""
    process = subprocess.Popen(serve_command(repository, ports, log), stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("ready:") or not line:
                break
        assert lines[-1].startswith("ready:"), lines
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


def server_of(serve: subprocess.Popen[str]) -> psutil.Process:
    """The tritonserver a `swaptron serve` runs."""
    (server,) = [child for child in psutil.Process(serve.pid).children()
                 if child.name() == "tritonserver"]
    return server


def guardian_of(serve: subprocess.Popen[str]) -> psutil.Process:
    """The guardian process of the server a `swaptron serve` runs."""
    (guardian,) = [child for child in psutil.Process(serve.pid).children()
                   if "swaptron.server.reaper" in child.cmdline()]
    return guardian


def prefix_of(server: psutil.Process) -> str:
    """The shared-memory prefix of a tritonserver, from its command line."""
    (argument,) = [arg for arg in server.cmdline() if "shm-region-prefix-name=" in arg]
    return argument.split("shm-region-prefix-name=")[1]


def alive(process: psutil.Process) -> bool:
    """True while the process runs (a zombie has ended)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line holds the text."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(text in part for part in process.info["cmdline"] or []) and alive(process):
            found.append(process)
    return found


def wait_until_gone(processes: list[psutil.Process], timeout: float = LIVENESS_S
                    ) -> list[psutil.Process]:
    """The processes still running after `timeout` seconds (none when all ended sooner)."""
    deadline = time.monotonic() + timeout
    left = [p for p in processes if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


def kill_leftovers(prefix: str) -> None:
    """End whatever still carries the prefix (so a failing test leaves nothing behind)."""
    for process in mentioning(prefix):
        process.kill()
    for path in SHM_FOLDER.glob(f"{prefix}*"):
        path.unlink(missing_ok=True)


def stream_answers(url: str) -> int:
    """How many stream ensemble requests the server has answered so far."""
    with grpcclient.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(STREAM, as_json=True)
    return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))


def wait_for_frames(url: str, count: int, timeout: float = READY_S) -> None:
    """Until the server has answered `count` stream requests."""
    deadline = time.monotonic() + timeout
    while stream_answers(url) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} frames answered")
        time.sleep(0.2)


@pytest.mark.server
def test_no_stub_outlives_a_server_killed_hard_with_serve_mid_stream(
        exported_repository: Path, tmp_path: Path) -> None:
    ports = free_ports()
    url = f"127.0.0.1:{ports.grpc}"
    with running_serve(exported_repository, ports, tmp_path / "serve.log") as (serve, _lines):
        server = server_of(serve)
        prefix = prefix_of(server)
        # unpaced, eight frames in flight: every stage is mid-request when the kill comes (with
        # the stubs left alone, 1-3 of them survived each of 8 tries; 2 of 3 at --realtime)
        stream = subprocess.Popen(
            [sys.executable, "-m", "swaptron", "stream", "--no-display", "--quiet", "--source",
             str(assets.demo_video()), "--loop", "--max-inflight", "8", "--url", url,
             "--connect-timeout", "120", "--report", str(tmp_path / "report.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_frames(url, 20)
            stubs = [psutil.Process(pid) for pid in stub_models(server.pid)]
            assert len(stubs) >= 5, stubs  # detector, landmarker, selector, swapper, ...
            server.kill()  # what an OOM kill or a hard stop of the group does
            serve.kill()
            left = wait_until_gone(stubs)
            assert left == [], [p.cmdline()[:2] for p in left]
            # the guardian is gone too, and the stubs' shared-memory regions with it
            assert wait_until_gone(mentioning(prefix)) == []
            assert sorted(SHM_FOLDER.glob(f"{prefix}*")) == []
            assert "swaptron guardian: tritonserver" in (tmp_path / "serve.log").read_text()
        finally:
            stream.send_signal(signal.SIGINT)
            try:
                stream.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stream.kill()
                stream.wait()
            kill_leftovers(prefix)


def stuck_request(url: str) -> grpcclient.InferenceServerClient:
    """Send one request to `stuck` without waiting for it; the open client."""
    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput("X", [1, 2], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 2), np.float32))
    client.async_infer("stuck", [tensor], callback=lambda result, error: None)
    return client


def wait_for_file(path: Path, timeout: float = 60.0) -> None:
    """Until the file exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.1)


def make_orphan(repository: Path, ports: ServerPorts, log: Path) -> tuple[psutil.Process, str]:
    """Kill a `swaptron serve`, its server and the guardian while the one stub is busy; the
    stub left behind and the server's shared-memory prefix."""
    with running_serve(repository, ports, log) as (serve, _lines):
        server = server_of(serve)
        prefix = prefix_of(server)
        (stub,) = [psutil.Process(pid) for pid in stub_models(server.pid)]
        client = stuck_request(f"127.0.0.1:{ports.grpc}")
        try:
            wait_for_file(repository / "stuck" / "1" / "busy")
            guardian_of(serve).kill()  # a guardian that did not survive (killed with the rest)
            server.kill()
            serve.kill()
            server.wait(timeout=60)
        finally:
            client.close()
    return stub, prefix


@pytest.mark.server
def test_serve_kills_stubs_a_dead_server_left_and_spares_live_servers(tmp_path: Path) -> None:
    stuck = one_model_repository(tmp_path / "stuck", STUCK_CONFIG, STUCK_MODEL)
    live_repository = one_model_repository(tmp_path / "live", DOUBLE_CONFIG, DOUBLE_MODEL)
    second = one_model_repository(tmp_path / "second", DOUBLE_CONFIG, DOUBLE_MODEL)
    prefix: str | None = None
    try:
        with TritonServer(live_repository, ports=free_ports()) as live:
            assert live.pid is not None
            live_stubs = [psutil.Process(pid) for pid in stub_models(live.pid)]
            assert live_stubs
            orphan, prefix = make_orphan(stuck, free_ports(), tmp_path / "first.log")
            # busy and holding its GIL, the stub stays: an orphan of this user, with its region
            assert alive(orphan) and orphan.ppid() != int(orphan.cmdline()[5])
            assert list(SHM_FOLDER.glob(f"{prefix}*"))
            with running_serve(second, free_ports(), tmp_path / "second.log") as (again, lines):
                killed = [line for line in lines if "Python stub(s) of dead servers" in line]
                assert killed and str(orphan.pid) in killed[0], lines
                assert wait_until_gone([orphan]) == []
                assert sorted(SHM_FOLDER.glob(f"{prefix}*")) == []
                # another server's stubs (this user's too) are left alone
                assert all(alive(stub) for stub in live_stubs)
                np.testing.assert_array_equal(infer_double(live.grpc_url), [[2.0, 2.0]])
                second_prefix = prefix_of(server_of(again))
                again.send_signal(signal.SIGINT)
                assert again.wait(timeout=60) == 0
            # a clean stop ends the server, its stubs and its guardian
            assert mentioning(second_prefix) == []
    finally:
        if prefix is not None:
            kill_leftovers(prefix)


def infer_double(url: str) -> np.ndarray:
    """One request to `double`."""
    with grpcclient.InferenceServerClient(url) as client:
        tensor = grpcclient.InferInput("X", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 2), np.float32))
        try:
            return client.infer("double", [tensor]).as_numpy("Y")
        except InferenceServerException as error:
            pytest.fail(f"the live server stopped answering: {error}")


FAKE_SERVER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
                          "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def test_the_guardian_kills_what_a_dead_server_leaves_in_its_group(tmp_path: Path) -> None:
    prefix = reaper.new_prefix()
    fake = subprocess.Popen([sys.executable, "-c", FAKE_SERVER], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    neighbour = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 start_new_session=True)
    try:
        assert fake.stdout is not None
        child = psutil.Process(int(fake.stdout.readline()))
        with (tmp_path / "guardian.log").open("wb") as log:
            guardian = reaper.start_guardian(fake.pid, prefix, log)
        try:
            assert guardian.poll() is None and alive(child)  # nothing happens while it lives
            fake.kill()
            fake.wait()
            assert wait_until_gone([child]) == []
            assert guardian.wait(timeout=LIVENESS_S) == 0
        finally:
            reaper.stop_guardian(guardian)
        assert alive(psutil.Process(neighbour.pid))
        assert f"killed 1 process(es) it left behind ({child.pid})" in (
            tmp_path / "guardian.log").read_text()
    finally:
        for process in (fake, neighbour):
            process.kill()
            process.wait()
        kill_leftovers(prefix)
