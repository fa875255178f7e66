"""`swaptron doctor`: what this machine has, and the fix for anything required that is missing."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swaptron import assets


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def package_version(name: str) -> str | None:
    """Installed version of a distribution, None when absent."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_server() -> Check:
    """Start the embedded tritonserver on an empty repository and read its version."""
    from swaptron.server.launcher import ServerError, TritonServer, free_ports

    with tempfile.TemporaryDirectory(prefix="swaptron-doctor-") as tmp:
        server = TritonServer(Path(tmp), ports=free_ports(), log_path=Path(tmp) / "server.log",
                              ready_timeout_s=60, allow_empty_repository=True)
        try:
            with server:
                url = f"http://{server.http_url}/v2"
                with urllib.request.urlopen(url, timeout=5) as response:
                    metadata = json.load(response)
        except ServerError as error:
            return Check("tritonserver", False, str(error))
    return Check("tritonserver", True, f"{metadata['version']} (nvidia-pytriton "
                 f"{package_version('nvidia-pytriton')}, Python backend) starts and answers")


def check_perf_analyzer() -> Check:
    """perf_analyzer loads its libraries and prints its version."""
    from swaptron.benchmarks import perf_analyzer

    try:
        return Check("perf_analyzer", True, perf_analyzer.version())
    except perf_analyzer.PerfAnalyzerError as error:
        return Check("perf_analyzer", False, str(error))


def check_package(display: str, distribution: str, fix: str) -> Check:
    """A required Python package is installed."""
    found = package_version(distribution)
    return Check(display, found is not None, found or f"missing: {fix}")


def check_onnxruntime() -> Check:
    """ONNX Runtime version and its execution providers."""
    import onnxruntime

    providers = ", ".join(onnxruntime.get_available_providers())
    return Check("onnxruntime", True, f"{onnxruntime.__version__} ({providers})")


def check_torch() -> Check:
    """PyTorch version and whether it sees a CUDA device."""
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return Check("torch", True, f"{torch.__version__} ({cuda})")


def check_opencv() -> Check:
    """OpenCV version (headless build)."""
    import cv2

    return Check("opencv", True, cv2.__version__)


def gpu_name() -> str | None:
    """Name of the first NVIDIA GPU, None without one."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "present (nvidia-smi)" if shutil.which("nvidia-smi") else None


def tensorrt_version() -> str | None:
    """TensorRT Python module version or `trtexec` on PATH; None when neither is there."""
    if importlib.util.find_spec("tensorrt") is not None:
        return package_version("tensorrt") or "importable"
    return "trtexec on PATH" if shutil.which("trtexec") else None


def default_target() -> str:
    """Export target `swaptron export` picks when none is given."""
    return "tensorrt" if tensorrt_version() and gpu_name() else "python-ort"


def check_weights() -> Check:
    """MediaPipe weights are in the cache with their pinned hashes."""
    try:
        paths = [assets.tflite_path(w) for w in assets.ALL_TFLITE]
    except assets.AssetError as error:
        return Check("weights", False, str(error))
    return Check("weights", True, ", ".join(str(p) for p in paths))


def check_demo_video() -> Check:
    """The demo video from opencv-doc is on disk."""
    try:
        return Check("demo video", True, str(assets.demo_video()))
    except assets.AssetError as error:
        return Check("demo video", False, str(error))


def check_allocator() -> Check:
    """The server's allocator: jemalloc when the machine has it (optional, faster frames)."""
    from swaptron.server.launcher import JEMALLOC, jemalloc_path

    found = jemalloc_path()
    if found is None:
        return Check("server allocator", False, f"glibc: no {JEMALLOC}, so the server maps "
                     "every frame buffer afresh; `make debs` installs libjemalloc2",
                     required=False)
    return Check("server allocator", True, f"jemalloc ({found})", required=False)


def run_checks() -> list[Check]:
    """Every check, in report order."""
    checks: list[Callable[[], Check]] = [
        check_server,
        lambda: check_package("tritonclient", "tritonclient",
                              "pip install 'tritonclient[grpc,http]==2.51.0'"),
        check_perf_analyzer,
        check_onnxruntime,
        check_torch,
        check_opencv,
        check_weights,
        check_demo_video,
    ]
    report = [check() for check in checks]
    report.append(check_allocator())
    report.append(Check("gpu", True, gpu_name() or "none (CPU only)", required=False))
    report.append(Check("tensorrt", True, tensorrt_version() or
                        "not here (engines are built on the GPU host by docker compose)",
                        required=False))
    report.append(Check("export target", True, f"{default_target()} by default", required=False))
    return report


def run(_args: object = None) -> int:
    """Print the report; non-zero when something required is missing."""
    report = run_checks()
    width = max(len(c.name) for c in report)
    for check in report:
        mark = "ok " if check.ok else ("ERR" if check.required else "-- ")
        print(f"{mark} {check.name:<{width}}  {check.detail}")
    failed = [c.name for c in report if c.required and not c.ok]
    if failed:
        print(f"\nmissing: {', '.join(failed)} (fix as shown above, or run `make run`)")
        return 1
    return 0
