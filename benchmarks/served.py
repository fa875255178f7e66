"""One served variant measured: start the embedded server on its repository (or use the one at
`--url`), then perf_analyzer, the client runs, forensics and recovery, and the server's memory."""

from __future__ import annotations

from pathlib import Path

from swaptron.benchmarks import inputs, variants
from swaptron.benchmarks.forensics import measure_forensics, serves
from swaptron.benchmarks.plan import BenchError, BenchPlan
from swaptron.benchmarks.profiles import profile_model
from swaptron.benchmarks.recovery import measure_recovery
from swaptron.benchmarks.state import Collected, MeasureContext, stopwatch
from swaptron.benchmarks.streams import run_aggregate, run_clients
from swaptron.specs import ENSEMBLE, NETWORKS, SCAN


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
