"""`swaptron stream` against the served default variant: serial, pipelined and realtime runs,
then concurrent realtime streams (the aggregate run)."""

from __future__ import annotations

from pathlib import Path

from swaptron.benchmarks import capacity, clients, targets
from swaptron.benchmarks.plan import BenchPlan
from swaptron.benchmarks.state import Collected, MeasureContext, Progress

AGGREGATE_STREAMS = 4  # the bar: 4 streams at 24 FPS where the chain runs at 80 FPS


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
