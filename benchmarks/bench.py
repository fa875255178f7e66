"""`swaptron bench`: perf_analyzer and the baselines in one run, side by side, with the targets.

One run, in order: export the default repository (and each config variant) into the work folder;
decode the demo video; run the in-process ONNX Runtime chain on it; write perf_analyzer input data
from real frames and their real intermediate tensors; then per variant start the embedded server
(or use `--url`), measure its memory, sweep perf_analyzer's concurrency on the ensemble (and, on
the default variant, on each network), run `swaptron stream` in serial, pipelined and realtime
modes (default variant), and read Triton's statistics around every measurement.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swaptron import assets
from swaptron.benchmarks import (
    capacity,
    clients,
    inputs,
    perf_analyzer,
    report,
    targets,
    variants,
)
from swaptron.benchmarks.cli import DEFAULT_RESULTS, DEFAULT_SEED, DEFAULT_WORK
from swaptron.server.ort_session import OrtChain
from swaptron.specs import CHECKED, DETECTOR, ENSEMBLE, FRAME, NETWORKS, SCAN

if TYPE_CHECKING:
    from swaptron.server.launcher import TritonServer

FULL_LEVELS = (1, 2, 4, 8)
QUICK_LEVELS = (1, 2, 4)
QUICK_VARIANT_LEVELS = (1, 4)
PERF_FRAMES = 8
# perf_analyzer's words for a level that noise, not the server, kept from being measured
NOISE_FAILURES = ("stable", "time window", "time interval")
ANY_SPREAD_WINDOW = 16  # requests per window when a level is measured again, accepting any spread
AGGREGATE_STREAMS = 4  # the bar: 4 streams at 24 FPS where the chain runs at 80 FPS

Progress = Callable[[str], None]


class BenchError(RuntimeError):
    """The bench cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class BenchRequest:
    """What the user asked for (the `swaptron bench` options)."""

    quick: bool = False
    url: str | None = None
    variants: tuple[str, ...] | None = None
    concurrency: tuple[int, ...] | None = None
    seconds: float | None = None
    output_dir: Path = DEFAULT_RESULTS
    work_dir: Path = DEFAULT_WORK
    seed_repository: Path | None = DEFAULT_SEED
    readme: Path | None = None
    command: str = "swaptron bench"


@dataclass(frozen=True)
class BenchPlan:
    """How long and how wide each part runs."""

    mode: str
    ensemble_levels: tuple[int, ...]
    network_levels: tuple[int, ...]
    variant_levels: tuple[int, ...]
    measurement_ms: int
    client_seconds: float
    in_process_seconds: float
    variants: tuple[str, ...]
    inflight: tuple[int, ...]
    perf_frames: int = PERF_FRAMES


def make_plan(request: BenchRequest) -> BenchPlan:
    """Quick (about two minutes) or full (under 20 minutes on 2 cores), with overrides applied."""
    quick = request.quick
    levels = request.concurrency or (QUICK_LEVELS if quick else FULL_LEVELS)
    names = request.variants or (("default", "no-batching") if quick
                                 else tuple(v.name for v in variants.VARIANTS))
    for name in names:
        try:
            variants.find_variant(name)
        except ValueError as error:
            raise BenchError(str(error)) from error
    if "default" not in names:
        names = ("default", *names)
    seconds = request.seconds
    return BenchPlan(
        mode="quick" if quick else "full",
        ensemble_levels=tuple(sorted({1, *levels})),
        network_levels=levels[:1] if quick else levels,
        variant_levels=(request.concurrency or (QUICK_VARIANT_LEVELS if quick else FULL_LEVELS)),
        measurement_ms=int(seconds * 1000) if seconds else (1500 if quick else 2500),
        client_seconds=seconds or (5.0 if quick else 15.0),
        in_process_seconds=seconds or (4.0 if quick else 10.0),
        variants=tuple(dict.fromkeys(names)),
        inflight=(2,) if quick else (2, 3),
    )


@dataclass
class Collected:
    """What the measurements produced, filled variant by variant."""

    rows: list[dict[str, object]] = field(default_factory=list)
    errors: list[dict[str, object]] = field(default_factory=list)
    variants: list[dict[str, object]] = field(default_factory=list)
    perf_profile: dict[str, dict[str, object]] = field(default_factory=dict)
    client_runs: dict[str, dict[str, object]] = field(default_factory=dict)
    client_latencies: dict[str, list[float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    server: dict[str, object] = field(default_factory=dict)
    recovery: dict[str, object] = field(default_factory=dict)
    scan: dict[str, object] = field(default_factory=dict)
    frame_sizes: dict[str, object] = field(default_factory=dict)
    aggregate: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class MeasureContext:
    """What every variant's measurement shares."""

    work: Path
    csv_dir: Path
    video: Path
    input_files: dict[str, Path]
    estimated_fps: float
    say: Progress


@dataclass(frozen=True)
class RunInfo:
    """When and where the run happened, and the frames it used."""

    date: str
    started: str
    elapsed: Callable[[], float]
    machine: dict[str, object]
    versions: dict[str, str]
    frames: dict[str, object]


def stopwatch() -> Callable[[], float]:
    """Seconds since this call."""
    started = time.monotonic()
    return lambda: round(time.monotonic() - started, 1)


def printer(elapsed: Callable[[], float]) -> Progress:
    """Progress lines prefixed with the bench's elapsed time."""
    def say(message: str) -> None:
        print(f"[bench {elapsed():6.1f} s] {message}", flush=True)
    return say


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
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "cpu_busy_pct_before": psutil.cpu_percent(interval=1.0),
    }


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


def safe_statistics(url: str) -> dict[str, dict[str, int]]:
    """Triton's statistics, or {} when the server does not answer."""
    from tritonclient.utils import InferenceServerException

    try:
        return variants.statistics(url)
    except InferenceServerException:
        return {}


def measure_level(model: str, url: str, csv_path: Path, level: int, input_data: Path,
                  plan: BenchPlan) -> tuple[list[perf_analyzer.PerfRow], bool]:
    """One perf_analyzer level; when a noisy machine keeps it from being stable within 25%,
    measured again in windows of a request count, accepting any spread (the row is then marked
    not stable)."""
    timeout = 60.0 + plan.measurement_ms * 12 / 1000.0
    try:
        return perf_analyzer.run(model, url, csv_path, concurrency=(level,),
                                 measurement_ms=plan.measurement_ms, input_data=input_data,
                                 timeout_s=timeout), True
    except perf_analyzer.PerfAnalyzerError as error:
        if not any(marker in str(error) for marker in NOISE_FAILURES):
            raise
    return perf_analyzer.run(model, url, csv_path, concurrency=(level,),
                             measurement_ms=plan.measurement_ms, input_data=input_data,
                             stability_percentage=perf_analyzer.ANY_SPREAD_PERCENTAGE,
                             count_window=ANY_SPREAD_WINDOW, timeout_s=timeout), False


def profile_model(url: str, variant: str, model: str, levels: tuple[int, ...],
                  input_data: Path, plan: BenchPlan, context: MeasureContext,
                  found: Collected) -> None:
    """perf_analyzer at each level (one call per level, so one failure costs one level).

    Per-level CSVs stay in the work folder; their merge goes to `<csv_dir>/<variant>-<model>.csv`.
    """
    say = context.say
    work = context.work / "perf"
    work.mkdir(parents=True, exist_ok=True)
    merged: list[str] = []
    for level in levels:
        before = safe_statistics(url)
        level_csv = work / f"{variant}-{model}-c{level}.csv"
        try:
            rows, stable = measure_level(model, url, level_csv, level, input_data, plan)
        except (perf_analyzer.PerfAnalyzerError, subprocess.TimeoutExpired) as error:
            say(f"perf_analyzer {variant}/{model} c{level} failed: {error}")
            found.errors.append({"variant": variant, "model": model, "concurrency": level,
                                 "error": str(error)})
            continue
        models = variants.statistics_delta(before, safe_statistics(url))
        found.perf_profile.setdefault(variant, {})[f"{model}@c{level}"] = models
        for row in rows:
            found.rows.append({"variant": variant, "model": model, "concurrency": row.concurrency,
                               "throughput": round(row.throughput, 2),
                               "p50_ms": round(row.p50_ms, 2), "p95_ms": round(row.p95_ms, 2),
                               "p99_ms": round(row.p99_ms, 2),
                               "server_queue_ms": round(row.server_queue_ms, 2),
                               "server_compute_ms": round(row.server_compute_ms, 2),
                               "stable": stable})
            say(f"{variant}/{model} c{row.concurrency}: {row.throughput:.1f}/s, "
                f"p95 {row.p95_ms:.1f} ms" + ("" if stable else " (loose stability)"))
        lines = level_csv.read_text().splitlines()
        merged += lines if not merged else lines[1:]
    if merged:
        context.csv_dir.mkdir(parents=True, exist_ok=True)
        (context.csv_dir / f"{variant}-{model}.csv").write_text("\n".join(merged) + "\n")


def run_clients(url: str, video: Path, plan: BenchPlan, estimated_fps: float, work: Path,
                found: Collected, say: Progress) -> None:
    """Serial first; its rate sizes the unpaced runs, then the realtime runs."""
    serial = clients.serial_run(plan.client_seconds, estimated_fps)
    run_client(serial, url, video, work, found, say)
    serial_fps = targets.number(found.client_runs.get("serial", {}).get("fps"))
    rate = max(estimated_fps, 2.0 * serial_fps) if serial_fps else estimated_fps
    for run in clients.streaming_runs(plan.client_seconds, rate, plan.inflight):
        run_client(run, url, video, work, found, say)


def run_client(run: clients.ClientRun, url: str, video: Path, work: Path, found: Collected,
               say: Progress) -> None:
    """One `swaptron stream` run; its summary and latencies go into `found`."""
    say(f"swaptron stream {run.key} ({run.frames} frames)")
    try:
        result = clients.run_client(run, video, url, work / "clients" / f"{run.key}.json")
    except clients.ClientRunError as error:
        say(str(error))
        found.errors.append({"client": run.key, "error": str(error)})
        return
    summary = clients.summary(run, result)
    found.client_runs[run.key] = summary
    found.client_latencies[run.key] = clients.latencies(result)
    latency = summary["latency_ms"]
    p95 = latency.get("p95") if isinstance(latency, dict) else None
    say(f"{run.key}: {summary['fps']} FPS, p95 {p95} ms, dropped {summary['dropped_pct']}%")


def measure_served(url: str, variant: variants.Variant, pid: int | None, plan: BenchPlan,
                   context: MeasureContext, found: Collected) -> None:
    """Everything measured on one served variant (memory when the server's pid is known)."""
    say = context.say
    entry: dict[str, object] = {**variant.summary(), "status": "measured", "url": url}
    if pid is None:
        entry.update(description=f"the server at {url}, with its own configs", serving=None)
    ready = variants.server_memory(pid) if pid is not None else None
    levels = plan.ensemble_levels if variant.name == "default" else plan.variant_levels
    profile_model(url, variant.name, ENSEMBLE, levels, context.input_files[ENSEMBLE], plan,
                  context, found)
    if variant.name == "default":
        for network in NETWORKS:
            profile_model(url, variant.name, network, plan.network_levels,
                          context.input_files[network], plan, context, found)
        for case in inputs.FRAME_SIZE_CASES:
            profile_model(url, case, ENSEMBLE, (1,), context.input_files[case], plan, context,
                          found)
        run_clients(url, context.video, plan, context.estimated_fps, context.work, found, say)
        run_aggregate(url, plan, context, found)
        if serves(url, SCAN):
            measure_forensics(url, plan, context, found)
        else:
            say("no forgery detector served: scan and faceswap_checked are not measured")
    if pid is not None and ready is not None:
        after = variants.server_memory(pid)
        sizes = [m["rss_mb"] for m in (ready, after) if isinstance(m["rss_mb"], float)]
        peak = max(sizes) if sizes else None
        entry.update(memory_ready=ready, memory_after=after, rss_peak_mb=peak)
        say(f"{variant.name}: server RSS {cell_mb(peak)} (ready {cell_mb(ready['rss_mb'])}, "
            f"after load {cell_mb(after['rss_mb'])})")
    found.variants.append(entry)


def run_aggregate(url: str, plan: BenchPlan, context: MeasureContext, found: Collected) -> None:
    """Concurrent realtime streams as the issue sets them, scaled to this machine: where the
    in-process chain runs at 80 FPS the bar is AGGREGATE_STREAMS streams at 24 FPS (1.2x the
    chain), so here each stream plays at 24 x chain FPS / 80. One stream alone at that rate
    first, for its p95; then the frames/s of the concurrent streams that keep <= 2% dropped and
    p95 <= 2x the lone stream's."""
    rate = round(capacity.FPS * context.estimated_fps / targets.REFERENCE_CHAIN_FPS, 1)
    context.say(f"aggregate: {AGGREGATE_STREAMS} concurrent realtime streams at {rate} FPS "
                f"(24 x chain {context.estimated_fps:.1f} / 80), after one alone")
    folder = context.work / "aggregate"
    alone = capacity.level(url, 1, plan.client_seconds, context.video, folder, rate)
    summaries = capacity.level(url, AGGREGATE_STREAMS, plan.client_seconds, context.video,
                               folder, rate)
    single = targets.number(alone[0]["latency_ms"]["p95"]) if alone else None  # type: ignore[index]
    kept = [s for s in summaries if single is not None
            and s["dropped_pct"] <= capacity.DROP_BAR_PCT  # type: ignore[operator]
            and s["latency_ms"]["p95"] <= 2 * single]  # type: ignore[index]
    found.aggregate = {
        "streams": AGGREGATE_STREAMS, "stream_fps": rate, "single_stream_p95_ms": single,
        "fps": [s["fps"] for s in summaries],
        "p95_ms": [s["latency_ms"]["p95"] for s in summaries],  # type: ignore[index]
        "dropped_pct": [s["dropped_pct"] for s in summaries],
        "qualifying_fps": round(sum(float(s["fps"]) for s in kept), 2)}  # type: ignore[arg-type]
    context.say(f"aggregate: {found.aggregate}")


def frame_size_ratio(rows: list[dict[str, object]], face_found: bool) -> dict[str, object]:
    """The ensemble's p50 at concurrency 1 on the 1920x1080 canvas over the 720x528 frame."""
    p50 = {row["variant"]: targets.number(row["p50_ms"]) for row in rows
           if row["variant"] in inputs.FRAME_SIZE_CASES}
    small, large = (p50.get(case) for case in inputs.FRAME_SIZE_CASES)
    ratio = large / small if small and large and face_found else None
    return {"p50_ms": p50, "face_found_1920x1080": face_found,
            "ratio": round(ratio, 3) if ratio is not None else None}


def serves(url: str, model: str) -> bool:
    """True when the server has the model loaded and ready."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        with grpcclient.InferenceServerClient(url) as client:
            return bool(client.is_model_ready(model))
    except InferenceServerException:
        return False


def measure_forensics(url: str, plan: BenchPlan, context: MeasureContext,
                      found: Collected) -> None:
    """The scan service and the check: perf_analyzer on `scan` and `faceswap_checked` (the same
    frames as `faceswap`), `swaptron scan` of the demo video, and a realtime 24 FPS stream through
    `faceswap_checked` (what the check costs beside the plain realtime run)."""
    for model in (SCAN, CHECKED):
        profile_model(url, "default", model, plan.variant_levels,
                      context.input_files[ENSEMBLE], plan, context, found)
    run_client(clients.checked_run(plan.client_seconds), url, context.video, context.work,
               found, context.say)
    found.scan = clients.scan_throughput(url, context.video)
    context.say(f"swaptron scan: {found.scan.get('frames_per_second')} frames/s, verdict "
                f"{found.scan.get('verdict')}")


def cell_mb(value: object) -> str:
    """`123 MB`, or `unknown`."""
    return f"{value:.0f} MB" if isinstance(value, float) else "unknown"


def serve_variant(variant: variants.Variant, repository: Path, plan: BenchPlan,
                  context: MeasureContext, found: Collected) -> None:
    """Start the embedded server on a variant's repository and measure it."""
    from swaptron.server.launcher import ServerError, TritonServer, free_ports

    log = context.work / "logs" / f"{variant.name}.log"
    server = TritonServer(repository, ports=free_ports(), log_path=log,
                          supervise=variant.name == "default")
    elapsed = stopwatch()
    try:
        with server:
            context.say(f"{variant.name}: server ready in {elapsed():.1f} s on {server.grpc_url}")
            if variant.name == "default":
                found.server.update(served_ensemble(server.grpc_url))
            measure_served(server.grpc_url, variant, server.pid, plan, context, found)
            if variant.name == "default":
                found.recovery = measure_recovery(server, context.video)
                context.say(f"a killed stub: serving again after "
                            f"{found.recovery.get('seconds')} s")
    except ServerError as error:
        if variant.name == "default":
            raise BenchError(f"the embedded server did not start: {error}") from error
        context.say(f"{variant.name}: server failed: {error}")
        found.variants.append({**variant.summary(), "status": "failed", "reason": str(error)})


def measure_recovery(server: TritonServer, video: Path, timeout_s: float = 60.0
                     ) -> dict[str, object]:
    """Kill the detector's Python stub (SIGKILL) and time until a frame is swapped again.

    The supervisor restarts the server; this is the outage a stub crash costs every stream.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from swaptron.server.launcher import stub_models

    frame = assets.read_frames(video, [assets.ANCHOR_FRAME])[0][None]
    victims = [pid for pid, model in stub_models(server.pid or 0).items() if model == DETECTOR]
    if not victims:
        return {"seconds": None, "error": "no detector stub found"}
    killed = time.monotonic()
    os.kill(victims[0], signal.SIGKILL)
    while time.monotonic() - killed < timeout_s:
        try:
            with grpcclient.InferenceServerClient(server.grpc_url) as client:
                tensor = grpcclient.InferInput(FRAME, list(frame.shape), "UINT8")
                tensor.set_data_from_numpy(frame)
                client.infer(ENSEMBLE, [tensor])
            break
        except (InferenceServerException, ConnectionError):
            time.sleep(0.05)
    else:
        return {"seconds": None, "error": f"not serving {timeout_s:.0f} s after the kill"}
    seconds = round(time.monotonic() - killed, 2)
    return {"seconds": seconds, "what": "SIGKILL of the detector's Python stub, until a frame "
            "is swapped again (the supervisor restarts the server)",
            "supervisor": [asdict(r) for r in server.recoveries]}


def export_variants(plan: BenchPlan, request: BenchRequest, say: Progress
                    ) -> dict[str, Path]:
    """Repositories for the variants to serve (only the default one with --url)."""
    from swaptron.export.build import ExportError

    folder = request.work_dir / "variants"
    default = folder / "default"
    repositories: dict[str, Path] = {}
    try:
        for name in plan.variants:
            if name != "default" and request.url is not None:
                continue
            seed = request.seed_repository if name == "default" else default
            say(f"exporting variant {name}")
            repositories[name] = variants.prepare_repository(
                variants.find_variant(name), seed, folder / name, say,
                replace_graphs=name != "default")
    except (ExportError, assets.AssetError, FileNotFoundError) as error:
        raise BenchError(f"cannot export the repositories: {error}") from error
    return repositories


def flat_baselines(in_process: dict[str, Any], runs: dict[str, dict[str, object]]
                   ) -> dict[str, object]:
    """`in_process_fps`, then `<run>_fps`, `<run>_p95_ms`, `<run>_dropped_pct` for each run."""
    latency = in_process["latency_ms"]
    flat: dict[str, object] = {
        "in_process_fps": in_process["fps"],
        "in_process_p95_ms": latency.get("p95") if isinstance(latency, dict) else None,
        "in_process_intra_op_threads": in_process["intra_op_threads"],
    }
    for key, summary in runs.items():
        run_latency = summary.get("latency_ms")
        flat[f"{key}_fps"] = summary.get("fps")
        flat[f"{key}_p95_ms"] = (run_latency.get("p95") if isinstance(run_latency, dict)
                                 else None)
        flat[f"{key}_dropped_pct"] = summary.get("dropped_pct")
    for key in ("serial", "stream", "realtime_24"):
        for suffix in ("fps", "p95_ms"):
            flat.setdefault(f"{key}_{suffix}", None)
    in_process_summary = {k: v for k, v in in_process.items() if k != "latencies_ms"}
    return {**flat, "in_process": in_process_summary, "runs": runs}


def ensemble_c1(rows: list[dict[str, object]]) -> float | None:
    """Throughput of the default variant's ensemble at concurrency 1."""
    for row in rows:
        if (row["variant"], row["model"], row["concurrency"]) == ("default", ENSEMBLE, 1):
            return targets.number(row["throughput"])
    return None


def default_rss(entries: list[dict[str, object]]) -> float | None:
    """Peak RSS of the default variant's server, when measured."""
    for entry in entries:
        if entry.get("name") == "default":
            return targets.number(entry.get("rss_peak_mb"))
    return None


def served_ensemble(url: str) -> dict[str, object]:
    """Name and version of the server; BenchError unless it is ready to serve the ensemble."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        with grpcclient.InferenceServerClient(url) as client:
            if not (client.is_server_ready() and client.is_model_ready(ENSEMBLE)):
                raise BenchError(f"Triton at {url} is up but `{ENSEMBLE}` is not ready")
            metadata = client.get_server_metadata(as_json=True)
    except InferenceServerException as error:
        raise BenchError(f"cannot reach Triton at {url}: {error}") from error
    return {"name": metadata.get("name"), "version": metadata.get("version")}


@dataclass(frozen=True)
class Prepared:
    """Frames, perf_analyzer input data and the in-process baseline."""

    video: Path
    frames: dict[str, object]
    input_files: dict[str, Path]
    in_process: dict[str, Any]


def prepare_inputs(repository: Path, plan: BenchPlan, work: Path, found: Collected,
                   say: Progress) -> Prepared:
    """Decode the demo video, write input data from one-face frames, time the in-process chain."""
    phase = stopwatch()
    try:
        video = assets.demo_video()
        frames = assets.read_frames(video)
    except assets.AssetError as error:
        raise BenchError(str(error)) from error
    serving = variants.find_variant("default").serving
    chain = OrtChain.open(repository, serving.intra_op_threads, serving.intra_op_spinning)
    indices = inputs.one_face_frames(chain, frames, plan.perf_frames)
    if not indices:
        raise BenchError(f"no frame of {video} has exactly one face: check the detector export")
    input_files = inputs.input_data_files(chain, frames, indices, work / "input-data")
    sized, found.frame_sizes["face_found_1920x1080"] = inputs.frame_size_files(
        chain, frames[indices[0]], work / "input-data")
    input_files.update(sized)
    found.timings["inputs_s"] = phase()
    say(f"input data from frames {indices}")
    phase = stopwatch()
    in_process = inputs.in_process_baseline(chain, frames, plan.in_process_seconds)
    found.timings["in_process_s"] = phase()
    say(f"in-process chain: {in_process['fps']} FPS ({in_process['frames']} frames)")
    height, width = frames[0].shape[:2]
    info = {"video": str(video), "count": len(frames), "width": width, "height": height,
            "perf_analyzer_frames": indices}
    return Prepared(video, info, input_files, in_process)


def run_bench(request: BenchRequest) -> dict[str, object]:
    """Run everything the plan asks for and write the results; returns them."""
    elapsed = stopwatch()
    say = printer(elapsed)
    plan = make_plan(request)
    say(f"{plan.mode} run: variants {', '.join(plan.variants)}; ensemble levels "
        f"{plan.ensemble_levels}; {plan.measurement_ms} ms windows")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    date = time.strftime("%Y-%m-%d")
    found = Collected()
    machine = hardware()
    found_versions = versions()
    if request.url is not None:
        found.server.update(served_ensemble(request.url))
    request.work_dir.mkdir(parents=True, exist_ok=True)
    phase = stopwatch()
    repositories = export_variants(plan, request, say)
    found.timings["export_s"] = phase()
    prepared = prepare_inputs(repositories["default"], plan, request.work_dir, found, say)
    context = MeasureContext(request.work_dir, request.output_dir / "csv", prepared.video,
                             prepared.input_files, float(prepared.in_process["fps"]) or 10.0,
                             say)
    for name in plan.variants:
        variant = variants.find_variant(name)
        phase = stopwatch()
        if request.url is None:
            serve_variant(variant, repositories[name], plan, context, found)
        elif name == "default":
            measure_served(request.url, variant, None, plan, context, found)
        else:
            found.variants.append({**variant.summary(), "status": "skipped",
                                   "reason": "--url: variants need re-exported repositories "
                                             "served by the embedded server"})
        found.timings[f"variant_{name}_s"] = phase()
    run = RunInfo(date, started, elapsed, machine, found_versions, prepared.frames)
    return finish(request, plan, found, prepared.in_process, run, say)


def finish(request: BenchRequest, plan: BenchPlan, found: Collected,
           in_process: dict[str, Any], run: RunInfo, say: Progress) -> dict[str, object]:
    """Targets, profile, then JSON, markdown, plots (and the README block)."""
    baselines = flat_baselines(in_process, found.client_runs)
    found.frame_sizes.update(frame_size_ratio(
        found.rows, bool(found.frame_sizes.get("face_found_1920x1080"))))
    values = targets.measured_values(baselines, ensemble_c1(found.rows),
                                     default_rss(found.variants), found.recovery.get("seconds"),
                                     found.scan.get("frames_per_second"),
                                     found.frame_sizes.get("ratio"),
                                     found.aggregate.get("qualifying_fps"))
    machine = {**run.machine, "load_average_end": [round(v, 2) for v in os.getloadavg()]}
    results: dict[str, object] = {
        "schema": 1,
        "host": host_name(),
        "date": run.date,
        "started": run.started,
        "duration_s": run.elapsed(),
        "command": request.command,
        "argv": sys.argv,
        "mode": plan.mode,
        "server": {"kind": "external" if request.url else "embedded",
                   "url": request.url, **found.server},
        "hardware": machine,
        "versions": run.versions,
        "frames": run.frames,
        "plan": {"ensemble_concurrency": list(plan.ensemble_levels),
                 "network_concurrency": list(plan.network_levels),
                 "variant_concurrency": list(plan.variant_levels),
                 "measurement_ms": plan.measurement_ms, "client_seconds": plan.client_seconds,
                 "in_process_seconds": plan.in_process_seconds,
                 "stream_inflight": list(plan.inflight)},
        "perf_analyzer": found.rows,
        "baselines": baselines,
        "variants": found.variants,
        "recovery": found.recovery,
        "scan": found.scan,
        "frame_sizes": found.frame_sizes,
        "aggregate_realtime": found.aggregate,
        "targets": targets.evaluate(values, targets.number(baselines.get("in_process_fps"))),
        "profile": {"in_process_ms": in_process["network_ms"],
                    "perf_analyzer": found.perf_profile,
                    "clients": {k: v["server_models"] for k, v in found.client_runs.items()}},
        "errors": found.errors,
        "timings_s": found.timings,
    }
    latencies = {"in_process": list(in_process["latencies_ms"]),
                 **found.client_latencies}
    written = report.write_all(results, latencies, request.output_dir, request.readme)
    for path in written:
        say(f"wrote {path}")
    return results
