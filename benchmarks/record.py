"""The bench's results from what it collected: the flat baselines, the targets, the profile and
the run's facts in one record, then its files (JSON, markdown, plots, the README block)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swaptron.benchmarks import inputs, report, targets
from swaptron.benchmarks.host import host_name, load_average
from swaptron.benchmarks.plan import BenchPlan, BenchRequest
from swaptron.benchmarks.state import Collected, Progress
from swaptron.specs import ENSEMBLE


@dataclass(frozen=True)
class RunInfo:
    """When and where the run happened, and the frames it used."""

    date: str
    started: str
    elapsed: Callable[[], float]
    machine: dict[str, object]
    versions: dict[str, str]
    frames: dict[str, object]


def frame_size_ratio(rows: list[dict[str, object]], face_found: bool) -> dict[str, object]:
    """The ensemble's p50 at concurrency 1 on the 1920x1080 canvas over the 720x528 frame."""
    p50 = {row["variant"]: targets.number(row["p50_ms"]) for row in rows
           if row["variant"] in inputs.FRAME_SIZE_CASES}
    small, large = (p50.get(case) for case in inputs.FRAME_SIZE_CASES)
    ratio = large / small if small and large and face_found else None
    return {"p50_ms": p50, "face_found_1920x1080": face_found,
            "ratio": round(ratio, 3) if ratio is not None else None}


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
    machine = {**run.machine, "load_average_end": load_average()}
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
