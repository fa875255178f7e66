"""The embedded tritonserver: start, infer over gRPC and HTTP, stop, and its error paths."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from swaptron.assets import CHECKOUT
from swaptron.benchmarks import perf_analyzer
from swaptron.server import access
from swaptron.server.launcher import (
    JEMALLOC,
    MIN_ADDRESS_SPACE,
    ServerError,
    TritonServer,
    free_ports,
    group_alive,
    jemalloc_path,
    prepare_server_home,
)

from helpers import processes_using

pytestmark = pytest.mark.server


def infer_grpc(url: str, model: str, values: np.ndarray) -> np.ndarray:
    """One gRPC inference of `X` -> `Y`."""
    with grpcclient.InferenceServerClient(url) as client:
        tensor = grpcclient.InferInput("X", list(values.shape), "FP32")
        tensor.set_data_from_numpy(values)
        return client.infer(model, [tensor]).as_numpy("Y")


def infer_http(url: str, model: str, values: np.ndarray, key: str) -> np.ndarray:
    """One HTTP inference of `X` -> `Y` (HTTP inference needs the admin key)."""
    with httpclient.InferenceServerClient(url) as client:
        tensor = httpclient.InferInput("X", list(values.shape), "FP32")
        tensor.set_data_from_numpy(values)
        return client.infer(model, [tensor], headers=access.http_headers(key)).as_numpy("Y")


def test_server_answers_grpc_and_http_then_leaves_nothing(tiny_repository: Path,
                                                          tmp_path: Path) -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    server = TritonServer(tiny_repository, ports=free_ports(), log_path=tmp_path / "log.txt")
    with server:
        group = server.pid
        assert group is not None
        cap = max(psutil.virtual_memory().total, MIN_ADDRESS_SPACE)
        assert psutil.Process(group).rlimit(psutil.RLIMIT_AS) == (cap, cap)
        np.testing.assert_array_equal(infer_grpc(server.grpc_url, "double", values), values * 2)
        np.testing.assert_array_equal(
            infer_http(server.http_url, "quadruple", values, server.admin_key), values * 4)
        assert any("triton_python_backend_stub" in p for p in processes_using(tiny_repository))
    assert not group_alive(group)
    assert processes_using(tiny_repository) == []
    assert "Started GRPCInferenceService" in (tmp_path / "log.txt").read_text()


def mapped_libraries(pid: int) -> str:
    """The file-backed mappings of a process."""
    return Path(f"/proc/{pid}/maps").read_text()


def test_server_runs_on_jemalloc_and_its_stubs_on_glibc(tiny_repository: Path,
                                                        tmp_path: Path) -> None:
    if jemalloc_path() is None:
        pytest.skip(f"no {JEMALLOC} here (`make debs` installs libjemalloc2)")
    values = np.ones((1, 3), np.float32)
    server = TritonServer(tiny_repository, ports=free_ports(), log_path=tmp_path / "log.txt")
    with server:
        np.testing.assert_array_equal(infer_grpc(server.grpc_url, "double", values), values * 2)
        assert server.pid is not None
        assert JEMALLOC in mapped_libraries(server.pid)
        stubs = psutil.Process(server.pid).children(recursive=True)
        assert stubs
        for stub in stubs:
            assert JEMALLOC not in mapped_libraries(stub.pid), stub.cmdline()
            assert "LD_PRELOAD" not in stub.environ() and "MALLOC_CONF" not in stub.environ()


def test_server_stops_when_the_body_raises(tiny_repository: Path) -> None:
    server = TritonServer(tiny_repository, ports=free_ports())
    with pytest.raises(RuntimeError, match="test failure"), server:
        raise RuntimeError("test failure")
    assert processes_using(tiny_repository) == []


def test_perf_analyzer_measures_the_ensemble(tiny_repository: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "perf.csv"
    with TritonServer(tiny_repository, ports=free_ports()) as server:
        # count windows accepting any spread: a loaded machine never fails it for noise
        rows = perf_analyzer.run("quadruple", server.grpc_url, csv_path, concurrency=(1, 2),
                                 measurement_ms=800, shapes={"X": (16,)}, count_window=20,
                                 stability_percentage=perf_analyzer.ANY_SPREAD_PERCENTAGE)
    assert [row.concurrency for row in rows] == [1, 2]
    for row in rows:
        assert row.throughput > 0
        assert 0 < row.p50_ms <= row.p95_ms <= row.p99_ms
    header = csv_path.read_text().splitlines()[0].split(",")
    assert set(perf_analyzer.REQUIRED_COLUMNS) <= set(header)


def test_port_in_use_is_named(tiny_repository: Path) -> None:
    ports = free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports.grpc))
        holder.listen()
        with pytest.raises(ServerError, match=rf"port {ports.grpc} .* in use.*--grpc-port"):
            TritonServer(tiny_repository, ports=ports).start()
    assert processes_using(tiny_repository) == []


def test_missing_and_empty_repository_are_named(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="does not exist"):
        TritonServer(tmp_path / "nowhere", ports=free_ports()).start()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ServerError, match="holds no model"):
        TritonServer(tmp_path / "empty", ports=free_ports()).start()


def test_model_that_fails_to_load_is_named(tiny_repository: Path) -> None:
    broken = tiny_repository / "double" / "1" / "model.py"
    broken.write_text("raise ImportError('weights file is corrupt')\n")
    expected = r"model 'double' failed to load.*weights file is corrupt"
    with pytest.raises(ServerError, match=expected):
        TritonServer(tiny_repository, ports=free_ports(), ready_timeout_s=60).start()
    assert processes_using(tiny_repository) == []


def test_an_unexported_repository_is_named_with_the_fix(tmp_path: Path) -> None:
    committed = CHECKOUT / "model_repository"
    fresh = tmp_path / "fresh-clone"
    for config in committed.glob("*/config.pbtxt"):  # what a fresh clone holds
        (fresh / config.parent.name).mkdir(parents=True)
        (fresh / config.parent.name / "config.pbtxt").write_text(config.read_text())
    result = run_cli("serve", "--model-repository", str(fresh))
    steps = sorted(config.parent.name for config in committed.glob("*/config.pbtxt")
                   if 'platform: "ensemble"' not in config.read_text())
    assert {"detector", "landmarker", "swapper"} <= set(steps)
    assert result.returncode == 1
    assert f"has configs but no exported graphs for {', '.join(steps)}" in result.stdout
    assert "run `swaptron export`" in result.stdout
    assert processes_using(fresh) == []


def test_missing_stub_for_python_is_named() -> None:
    with pytest.raises(ServerError, match=r"no Python-backend stub for Python 3\.99.*ships"):
        prepare_server_home("3.99")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `swaptron` command of this environment."""
    return subprocess.run([sys.executable, "-m", "swaptron", *args], capture_output=True,
                          text=True, check=False, timeout=300)


def test_cli_serve_errors_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", "--model-repository", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "error: model repository" in result.stdout
    assert "does not exist" in result.stdout


def test_cli_serve_stops_cleanly_on_sigint(tiny_repository: Path, tmp_path: Path) -> None:
    ports = free_ports()
    command = [sys.executable, "-m", "swaptron", "serve", "--model-repository",
               str(tiny_repository), "--http-port", str(ports.http), "--grpc-port",
               str(ports.grpc), "--metrics-port", str(ports.metrics),
               "--log-file", str(tmp_path / "serve.log")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("ready:") or not line:
            break
    assert lines[-1].startswith("ready:"), lines
    assert str(tmp_path / "serve.log") in lines[0]
    np.testing.assert_array_equal(infer_grpc(f"127.0.0.1:{ports.grpc}", "double",
                                             np.ones((1, 2), np.float32)), [[2.0, 2.0]])
    os.kill(process.pid, signal.SIGINT)
    remaining, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "stopped" in remaining
    assert processes_using(tiny_repository) == []


def test_doctor_passes_on_this_machine() -> None:
    result = run_cli("doctor")
    assert result.returncode == 0, result.stdout
    for name in ("tritonserver", "tritonclient", "perf_analyzer", "onnxruntime", "torch",
                 "opencv", "weights", "demo video", "export target"):
        assert f"ok  {name}" in result.stdout
