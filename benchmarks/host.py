"""What the bench's numbers were measured on: the machine's name, hardware and load, and the
versions of what is measured."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path

from swaptron.benchmarks import perf_analyzer
from swaptron.benchmarks.plan import BenchError


def host_name() -> str:
    """This machine's name, safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform's answer)."""
    with_cpuinfo = Path("/proc/cpuinfo")
    if with_cpuinfo.is_file():
        for line in with_cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def gpus() -> list[str]:
    """`name, driver, memory` of each GPU nvidia-smi lists (none without nvidia-smi)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        result = subprocess.run([tool, "--query-gpu=name,driver_version,memory.total",
                                 "--format=csv,noheader"], capture_output=True, text=True,
                                timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return [f"nvidia-smi failed: {error}"]
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def hardware() -> dict[str, object]:
    """What the numbers were measured on, and how busy the machine was before the run."""
    import psutil

    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "gpus": gpus(),
        "platform": platform.platform(),
        "load_average_start": load_average(),
        "cpu_busy_pct_before": psutil.cpu_percent(interval=1.0),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(v, 2) for v in os.getloadavg()]


def versions() -> dict[str, str]:
    """Versions of what is measured; raises BenchError when perf_analyzer cannot start."""
    import onnxruntime

    try:
        analyzer = perf_analyzer.version()
    except perf_analyzer.PerfAnalyzerError as error:
        raise BenchError(str(error)) from error
    found = {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
             "perf_analyzer": analyzer}
    for package in ("nvidia-pytriton", "tritonclient"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
