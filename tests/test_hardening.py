"""Hostile and careless requests against a real server: it keeps serving, stays bounded in memory,
recovers by itself when a stub dies, and keeps its control APIs behind the admin key."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from swaptron import assets
from swaptron.server import access
from swaptron.server.launcher import SHM_FOLDER, TritonServer, free_ports, stub_models
from swaptron.specs import ENSEMBLE, STREAM

from helpers import (
    ABORTING_JSON,
    http_status,
    infer_frame,
    locked_api_answers,
    raw_infer,
    server_memory_mb,
    wait_until_serving,
)

pytestmark = pytest.mark.server

OVERFLOW = 2**32  # [1, 2^32, 2^32, 3] has 0 elements in Triton 2.51's int64 arithmetic
MEMORY_SLACK_MB = 200.0


@pytest.fixture(scope="module")
def guarded(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[TritonServer, list[str]]]:
    """A supervised server (as `swaptron serve` runs it) and the events its supervisor reported."""
    events: list[str] = []
    log = tmp_path_factory.mktemp("guarded") / "triton.log"
    with TritonServer(exported_repository, ports=free_ports(), log_path=log, supervise=True,
                      on_event=events.append) as server:
        yield server, events


def frame_cases(frame: np.ndarray) -> list[tuple[str, list[tuple[str, str, tuple[int, ...],
                                                                    bytes]]]]:
    """Hostile FRAME tensors: (what, inputs of a hand-built gRPC request)."""
    good = frame.tobytes()
    return [
        ("huge shape, one byte", [("FRAME", "UINT8", (1, 100000, 100000, 3), b"\0")]),
        ("overflowing shape, no bytes", [("FRAME", "UINT8", (1, OVERFLOW, OVERFLOW, 3), b"")]),
        ("negative shape", [("FRAME", "UINT8", (1, -2, -2, 3), b"\0" * 12)]),
        ("zero shape", [("FRAME", "UINT8", (1, 0, 0, 3), b"")]),
        ("zero batch", [("FRAME", "UINT8", (0, 64, 64, 3), b"")]),
        ("bytes short of the shape", [("FRAME", "UINT8", (1, *frame.shape), good[:-7])]),
        ("bytes beyond the shape", [("FRAME", "UINT8", (1, *frame.shape), good + b"\0" * 9)]),
        ("wrong dtype", [("FRAME", "FP32", (1, 64, 64, 3), b"\0" * 64 * 64 * 3 * 4)]),
        ("string dtype", [("FRAME", "BYTES", (1, 1), b"\x03\0\0\0abc")]),
        ("unknown input", [("PAYLOAD", "UINT8", (1, 64, 64, 3), b"\0" * 64 * 64 * 3)]),
        ("10000x10000 frame", [("FRAME", "UINT8", (1, 10000, 10000, 3),
                                b"\0" * 10000 * 10000 * 3)]),
        ("5000x5000 frame", [("FRAME", "UINT8", (1, 5000, 5000, 3), b"\0" * 5000 * 5000 * 3)]),
    ]


def network_cases() -> list[tuple[str, str, list[tuple[str, str, tuple[int, ...], bytes]]]]:
    """Hostile requests straight to each network: (model, what, inputs)."""
    frame = ("FRAME", "UINT8", (1, 64, 64, 3), b"\0" * 64 * 64 * 3)
    return [
        ("detector", "overflowing shape", [("FRAME", "UINT8", (1, OVERFLOW, OVERFLOW, 3), b"")]),
        ("landmarker", "faces of the wrong slot count",
         [frame, ("FACES", "FP32", (1, 7, 5), b"\0" * 140),
          ("KEYPOINTS", "FP32", (1, 2, 6, 2), b"\0" * 96)]),
        ("landmarker", "a missing input", [frame]),
        ("swapper", "landmarks short of their shape",
         [frame, ("LANDMARKS", "FP32", (1, 2, 468, 2), b"\0" * 100),
          ("PRESENCE", "FP32", (1, 2), b"\0" * 8)]),
        ("swapper", "NaN landmarks",
         [frame, ("LANDMARKS", "FP32", (1, 2, 468, 2),
                  np.full((1, 2, 468, 2), np.nan, np.float32).tobytes()),
          ("PRESENCE", "FP32", (1, 2), np.ones((1, 2), np.float32).tobytes())]),
        ("swapper", "landmarks far outside the frame",
         [frame, ("LANDMARKS", "FP32", (1, 2, 468, 2),
                  np.full((1, 2, 468, 2), 3e38, np.float32).tobytes()),
          ("PRESENCE", "FP32", (1, 2), np.ones((1, 2), np.float32).tobytes())]),
    ]


def garbage(port: int, payload: bytes) -> None:
    """Write bytes to a port and read what comes back until it closes (or 5 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(payload)
            while sock.recv(65536):
                pass
        except (TimeoutError, ConnectionError):
            pass  # the server hung up on the garbage, as it should


def test_hostile_requests_leave_the_server_serving_and_bounded(
        guarded: tuple[TritonServer, list[str]], megamind_frames: list[np.ndarray]) -> None:
    server, events = guarded
    frame = megamind_frames[120]
    expected, _ = wait_until_serving(server.grpc_url, ENSEMBLE, frame[None], "SWAPPED")
    before_mb = server_memory_mb(server.pid)
    answers: dict[str, str] = {}
    rng = np.random.default_rng(5)
    for what, inputs in frame_cases(frame):
        answers[f"{ENSEMBLE}: {what}"] = raw_infer(server.grpc_url, ENSEMBLE, inputs)
        wait_until_serving(server.grpc_url, ENSEMBLE, frame[None], "FACES")
    for model, what, inputs in network_cases():
        answers[f"{model}: {what}"] = raw_infer(server.grpc_url, model, inputs)
        wait_until_serving(server.grpc_url, ENSEMBLE, frame[None], "FACES")
    for model in ("detector", "landmarker", "swapper", ENSEMBLE):
        for kind, body, headers in (
                ("JSON", ABORTING_JSON, {}),
                ("binary", b"\x01" * 64, {"Inference-Header-Content-Length": "9999"}),
                ("random", rng.bytes(4096), {}),
                ("truncated JSON", ABORTING_JSON[:40], {})):
            status = http_status(server.http_url, f"/v2/models/{model}/infer", body=body,
                                 headers=headers)
            answers[f"{model}: HTTP {kind} without the key"] = str(status)
            assert status == 403, (model, kind, status)  # refused before anything is parsed
    for port in (server.ports.grpc, server.ports.http):
        garbage(port, rng.bytes(100_000))
        garbage(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + rng.bytes(5000))
    # with the key, the JSON that aborts Triton 2.51 does abort it: the supervisor restarts it
    status = http_status(server.http_url, f"/v2/models/{ENSEMBLE}/infer", body=ABORTING_JSON,
                         headers=access.http_headers(server.admin_key))
    answers["faceswap: HTTP JSON with the key"] = str(status)
    swapped, _ = wait_until_serving(server.grpc_url, ENSEMBLE, frame[None], "SWAPPED")
    print(json.dumps(answers, indent=1))
    print(f"recoveries: {server.recoveries}; events: {events}")
    assert np.abs(swapped.astype(int) - expected).max() <= 1
    after_mb = server_memory_mb(server.pid)
    print(f"server memory (PSS) before {before_mb:.0f} MB, after {after_mb:.0f} MB")
    assert after_mb <= before_mb + MEMORY_SLACK_MB
    refused = {k: v for k, v in answers.items() if "INVALID_ARGUMENT" in v}
    assert "FRAME is 0x0 pixels" in refused[f"{ENSEMBLE}: zero shape"]
    assert "FRAME is 5000x5000 pixels" in refused[f"{ENSEMBLE}: 5000x5000 frame"]
    assert "shared memory pool" in answers[f"{ENSEMBLE}: 10000x10000 frame"]
    assert "byte size mismatch" in answers[f"{ENSEMBLE}: bytes short of the shape"]
    assert any("died" in r.cause for r in server.recoveries)
    assert all(r.seconds < 60 for r in server.recoveries)


def test_the_largest_allowed_batch_still_fits_the_bounded_pools(
        guarded: tuple[TritonServer, list[str]], megamind_frames: list[np.ndarray]) -> None:
    server, _ = guarded
    canvas = np.zeros((8, 1080, 1920, 3), np.uint8)
    canvas[:, :528, :720] = megamind_frames[120]
    out = infer_frame(server.grpc_url, ENSEMBLE, canvas, ("SWAPPED", "FACES"))
    assert out["SWAPPED"].shape == canvas.shape
    assert (out["FACES"][:, 0, 4] > 0.5).all()


def test_the_admin_key_guards_the_locked_apis_only(tiny_repository: Path) -> None:
    key = "k" * 32
    with TritonServer(tiny_repository, ports=free_ports(), admin_key=key) as server:
        without = locked_api_answers(server.http_url, server.grpc_url, None)
        wrong = locked_api_answers(server.http_url, server.grpc_url, "w" * 32)
        with_key = locked_api_answers(server.http_url, server.grpc_url, key)
        assert not any(without.values()), without
        assert not any(wrong.values()), wrong
        assert all(with_key.values()), with_key
        # what stays open: health, metadata, statistics, metrics and gRPC inference
        for path in ("/v2/health/ready", "/v2/models/double", "/v2/models/stats"):
            assert http_status(server.http_url, path) == 200, path
        assert http_status(server.metrics_url.removeprefix("http://").removesuffix("/metrics"),
                           "/metrics") == 200
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            tensor = grpcclient.InferInput("X", [1, 2], "FP32")
            tensor.set_data_from_numpy(np.ones((1, 2), np.float32))
            assert client.infer("double", [tensor]).as_numpy("Y").tolist() == [[2.0, 2.0]]
            assert client.get_inference_statistics(as_json=True)["model_stats"]
        # the JSON that aborts Triton 2.51 is refused before it is parsed
        assert http_status(server.http_url, "/v2/models/double/infer", body=ABORTING_JSON) == 403
        assert server.alive()


def test_server_files_are_private(tiny_repository: Path) -> None:
    with TritonServer(tiny_repository, ports=free_ports()) as server:
        regions = sorted(SHM_FOLDER.glob(f"{server.shm_prefix}*"))
        assert regions
        for region in regions:
            assert region.stat().st_mode & 0o077 == 0, region
        limits = psutil.Process(server.pid).rlimit(psutil.RLIMIT_FSIZE)
        assert limits == (server.pool_limit_bytes, server.pool_limit_bytes)


def readiness(url: str) -> int:
    """Status of /v2/health/ready, 0 when nothing answers."""
    return http_status(url, "/v2/health/ready")


def test_a_killed_stub_is_replaced_and_the_stream_goes_on(exported_repository: Path,
                                                          tmp_path: Path) -> None:
    events: list[str] = []
    report = tmp_path / "report.json"
    server = TritonServer(exported_repository, ports=free_ports(), supervise=True,
                          on_event=events.append, log_path=tmp_path / "triton.log")
    with server:
        process = subprocess.Popen(
            [sys.executable, "-m", "swaptron", "stream", "--no-display", "--quiet", "--source",
             str(assets.demo_video()), "--realtime", "--loop", "--url", server.grpc_url,
             "--report", str(report), "--connect-timeout", "60", "--max-failed", "0.5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_answers(server, 24)
        (victim,) = [pid for pid, model in stub_models(server.pid).items()
                     if model == "detector"]
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        states = []
        while time.monotonic() - killed < 60:
            states.append(readiness(server.http_url))
            if states[-1] != 200 or server.recoveries:
                break
            time.sleep(0.05)
        assert states[-1] != 200 or server.recoveries  # readiness turned false
        while readiness(server.http_url) != 200 and time.monotonic() - killed < 60:
            time.sleep(0.1)
        wait_for_answers(server, 24)  # the stream resumed with nobody touching it
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        stopping = time.monotonic()
    stop_seconds = time.monotonic() - stopping
    print(f"recovery: {server.recoveries}; stop took {stop_seconds:.1f} s; events {events}")
    assert process.returncode == 0, stdout + stderr
    (recovery,) = server.recoveries
    assert "detector" in recovery.cause and recovery.seconds < 60
    data = json.loads(report.read_text())
    assert data["frames_captured"] == (data["frames_received"] + data["frames_dropped"]
                                       + data["frames_failed"])
    assert data["frames_received"] >= 48
    assert stop_seconds < 45  # no hang: SIGTERM's 15 s grace and SIGKILL's 15 s wait at most
    assert not list(SHM_FOLDER.glob(f"{server.shm_prefix}*"))


def wait_for_answers(server: TritonServer, count: int, timeout_s: float = 120) -> None:
    """Until the (current) server has answered `count` more requests of `swaptron stream`."""
    deadline = time.monotonic() + timeout_s
    start = None
    while time.monotonic() < deadline:
        try:
            with grpcclient.InferenceServerClient(server.grpc_url) as client:
                stats = client.get_inference_statistics(STREAM, as_json=True)
            done = int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))
            start = done if start is None else start
            if done - start >= count:
                return
        except (InferenceServerException, ConnectionError):
            pass  # the server is restarting
        time.sleep(0.2)
    raise TimeoutError(f"fewer than {count} frames answered in {timeout_s:.0f} s")
