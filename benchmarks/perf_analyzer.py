"""Run the perf_analyzer binary shipped in the tritonclient wheel and read its CSV."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REQUIRED_COLUMNS = ("Concurrency", "Inferences/Second", "p50 latency", "p95 latency", "p99 latency")
# perf_analyzer calls a level stable when each of its last three windows lies within
# (1 +- percentage/100) of their mean; no three positive values lie beyond 3x their mean, so at
# 200% or more every run is accepted, however noisy the machine
STABLE_PERCENTAGE = 25
ANY_SPREAD_PERCENTAGE = 1000


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer is missing, cannot load its libraries, or failed; the message says the fix."""


@dataclass(frozen=True)
class PerfRow:
    """One concurrency level of a perf_analyzer run (latencies in milliseconds)."""

    model: str
    concurrency: int
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    server_queue_ms: float
    server_compute_ms: float


def binary() -> Path:
    """Path of perf_analyzer next to this Python (installed by the tritonclient wheel)."""
    path = Path(sys.executable).parent / "perf_analyzer"
    if not path.is_file():
        raise PerfAnalyzerError(f"{path} is missing: install tritonclient[grpc,http]==2.51.0")
    return path


def cuda_runtime_dir() -> Path:
    """Folder of `libcudart.so.12` from the nvidia-cuda-runtime-cu12 wheel."""
    import nvidia.cuda_runtime

    folder = Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib"
    if not (folder / "libcudart.so.12").is_file():
        raise PerfAnalyzerError(f"{folder}/libcudart.so.12 is missing: "
                                "pip install nvidia-cuda-runtime-cu12")
    return folder


def environment() -> dict[str, str]:
    """Environment in which perf_analyzer finds libcudart (no GPU needed)."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(cuda_runtime_dir()), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def explain_failure(output: str) -> str:
    """A fix for the usual reasons perf_analyzer does not start."""
    if "libb64" in output:
        return "perf_analyzer needs Debian's libb64-0d: `sudo apt-get install libb64-0d`"
    if "libcudart" in output:
        return "perf_analyzer needs libcudart.so.12: `pip install nvidia-cuda-runtime-cu12`"
    return output.strip().splitlines()[-1] if output.strip() else "no output"


def version() -> str:
    """The `Perf Analyzer Version ...` line; raises PerfAnalyzerError with the fix if it fails."""
    result = subprocess.run([str(binary()), "--version"], capture_output=True, text=True,
                            env=environment(), check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0 or "Version" not in output:
        raise PerfAnalyzerError(explain_failure(output))
    return output.strip().splitlines()[0]


def run(model: str, url: str, csv_path: Path, *, concurrency: tuple[int, ...] = (1,),
        measurement_ms: int = 2000, input_data: Path | None = None,
        shapes: dict[str, tuple[int, ...]] | None = None, batch_size: int = 1,
        extra_args: tuple[str, ...] = (), timeout_s: float = 600.0,
        stability_percentage: int = STABLE_PERCENTAGE,
        count_window: int | None = None) -> list[PerfRow]:
    """Profile a model over gRPC at each concurrency; returns one row per level.

    Each level runs as its own perf_analyzer call (its ranges only step additively); the CSVs
    are kept as `<csv_path stem>-c<level>.csv` and merged into `csv_path`. `count_window`
    measures windows of that many requests instead of `measurement_ms` (a window then never
    ends empty on a slow machine); ANY_SPREAD_PERCENTAGE accepts any noise.
    """
    rows: list[PerfRow] = []
    merged: list[str] = []
    for level in concurrency:
        level_csv = csv_path.with_name(f"{csv_path.stem}-c{level}{csv_path.suffix}")
        command = [
            str(binary()), "-m", model, "-i", "grpc", "-u", url, "-b", str(batch_size),
            "--concurrency-range", str(level), "--measurement-interval", str(measurement_ms),
            "--max-trials", "6", "--stability-percentage", str(stability_percentage),
            "-f", str(level_csv), *extra_args,
        ]
        if count_window is not None:
            command += ["--measurement-mode", "count_windows",
                        "--measurement-request-count", str(count_window)]
        if input_data is not None:
            command += ["--input-data", str(input_data)]
        for name, shape in (shapes or {}).items():
            command += ["--shape", f"{name}:{','.join(str(d) for d in shape)}"]
        result = subprocess.run(command, capture_output=True, text=True,
                                env=environment(), check=False, timeout=timeout_s)
        if result.returncode != 0:
            raise PerfAnalyzerError(f"perf_analyzer on {model} at concurrency {level} failed: "
                                    f"{explain_failure(result.stdout + result.stderr)}")
        rows += read_csv(level_csv, model)
        lines = level_csv.read_text().splitlines()
        merged += lines if not merged else lines[1:]
    csv_path.write_text("\n".join(merged) + "\n")
    return rows


def read_csv(csv_path: Path, model: str) -> list[PerfRow]:
    """Parse perf_analyzer's `-f` CSV (latencies there are microseconds)."""
    with csv_path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows:
        raise PerfAnalyzerError(f"{csv_path} holds no measurement")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        raise PerfAnalyzerError(f"{csv_path} lacks columns {missing}")
    return [
        PerfRow(
            model=model,
            concurrency=int(row["Concurrency"]),
            throughput=float(row["Inferences/Second"]),
            p50_ms=float(row["p50 latency"]) / 1000.0,
            p95_ms=float(row["p95 latency"]) / 1000.0,
            p99_ms=float(row["p99 latency"]) / 1000.0,
            server_queue_ms=float(row.get("Server Queue", 0.0)) / 1000.0,
            server_compute_ms=(float(row.get("Server Compute Input", 0.0))
                               + float(row.get("Server Compute Infer", 0.0))
                               + float(row.get("Server Compute Output", 0.0))) / 1000.0,
        )
        for row in rows
    ]
