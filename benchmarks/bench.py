"""`swaptron bench`: perf_analyzer and the baselines in one run, side by side, with the targets.

One run, in order: export the default repository (and each config variant) into the work folder;
decode the demo video; run the in-process ONNX Runtime chain on it; write perf_analyzer input data
from real frames and their real intermediate tensors; then per variant start the embedded server
(or use `--url`), measure its memory, sweep perf_analyzer's concurrency on the ensemble (and, on
the default variant, on each network), run `swaptron stream` in serial, pipelined and realtime
modes (default variant), and read Triton's statistics around every measurement.

This module is the runner; each part lives in its own module: plan (the request and the plan),
host (the machine and versions), prepare (repositories, input data, the in-process baseline),
served (one served variant: perf_analyzer profiles, client streams, forensics, recovery),
state (what the parts share) and record (the results).
"""

from __future__ import annotations

import time

from swaptron.benchmarks import variants
from swaptron.benchmarks.host import hardware, host_name, versions
from swaptron.benchmarks.plan import BenchError, BenchRequest, make_plan
from swaptron.benchmarks.prepare import export_variants, prepare_inputs
from swaptron.benchmarks.record import RunInfo, finish
from swaptron.benchmarks.served import measure_served, serve_variant, served_ensemble
from swaptron.benchmarks.state import Collected, MeasureContext, printer, stopwatch

__all__ = ["BenchError", "BenchRequest", "host_name", "run_bench"]


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
