"""Bench results on disk: `<host>-<date>.json` and `latest.json`, `latest.md`, two PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from swaptron.specs import ENSEMBLE, NETWORKS

README_BEGIN = "<!-- bench:begin -->"
README_END = "<!-- bench:end -->"
LATENCY_TICKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
THROUGHPUT_PNG = "throughput.png"
LATENCY_PNG = "latency_cdf.png"
LOOSE_NOTE = ("\\* not stable within 25% over 3 windows (noisy machine): measured again "
              "accepting any spread.")
BASELINES_NOTE = ("Latency is capture-to-receive; an unpaced source is read when the client "
                  "asks for a frame, a realtime one on its own clock. The round trip (send to "
                  "receive) is the serving part. The in-process chain has compute latency only.")
Results = dict[str, Any]
CLIENT_LABELS = {"in_process": "in-process chain (compute only, no serving)",
                 "serial": "serial (prototype)", "stream": "stream, unpaced",
                 "stream_inflight3": "stream, unpaced, 3 in flight",
                 "realtime_24": "realtime 24 FPS", "realtime_60": "realtime 60 FPS",
                 "checked_realtime_24": "faceswap_checked, realtime 24 FPS"}


def clean(value: object) -> object:
    """JSON-ready copy: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def cell(value: object, digits: int = 1) -> str:
    """A table cell: numbers rounded, missing values as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(results: Results) -> str:
    """Each target: value, bar, met, and by how much it is missed."""
    rows = []
    for target in results["targets"]:
        met = target["met"]
        mark = "met" if met else ("**missed**" if met is False else "not measured")
        bar = f"{target['comparison']} {cell(target['bar'], 2)} {target['unit']}"
        if target.get("bar_at_80_fps") is not None:
            bar += f" (scaled from {cell(target['bar_at_80_fps'], 1)} at 80 FPS)"
        rows.append([target["description"], f"{cell(target['value'], 2)} {target['unit']}",
                     bar, mark, "" if met else target["gap_text"]])
    return table(["target", "value", "bar", "result", "gap"], rows)


def baselines_table(results: Results) -> str:
    """FPS and capture-to-receive latency per client mode, with the in-process chain first."""
    baselines = results["baselines"]
    in_process = baselines["in_process"]
    chain = in_process["latency_ms"]
    threads = int(in_process["intra_op_threads"])
    plural = "s" if threads > 1 else ""
    rows = [[f"in-process chain (3 ORT sessions, {threads} thread{plural} each)",
             cell(in_process["fps"]), cell(chain["p50"]), cell(chain["p95"]), cell(chain["p99"]),
             cell(chain["p95"]), "–", str(in_process["frames"])]]
    for key, run in baselines["runs"].items():
        latency = run.get("latency_ms") or {}
        trip = run.get("round_trip_ms") or {}
        rows.append([f"`{run['command']}`", cell(run.get("fps")), cell(latency.get("p50")),
                     cell(latency.get("p95")), cell(latency.get("p99")), cell(trip.get("p95")),
                     cell(run.get("dropped_pct")), f"{run.get('frames_captured')} ({key})"])
    return table(["mode", "FPS", "p50 ms", "p95 ms", "p99 ms", "round trip p95 ms", "dropped %",
                  "frames"], rows)


def perf_table(results: Results) -> str:
    """perf_analyzer rows: throughput and client-side latency per level."""
    rows = [[str(r["variant"]), str(r["model"]), str(r["concurrency"]),
             cell(r["throughput"]) + ("" if r.get("stable", True) else "*"),
             cell(r["p50_ms"]), cell(r["p95_ms"]), cell(r["p99_ms"]),
             cell(r["server_queue_ms"], 2), cell(r["server_compute_ms"], 2)]
            for r in results["perf_analyzer"]]
    return table(["variant", "model", "concurrency", "infer/s", "p50 ms", "p95 ms", "p99 ms",
                  "queue ms", "compute ms"], rows)


def variants_table(results: Results) -> str:
    """Memory and status of each config variant."""
    rows = []
    for entry in results["variants"]:
        ready = entry.get("memory_ready") or {}
        after = entry.get("memory_after") or {}
        rows.append([str(entry["name"]), str(entry["description"]), cell(ready.get("rss_mb"), 0),
                     cell(after.get("rss_mb"), 0), cell(after.get("pss_mb"), 0),
                     cell(after.get("processes")),
                     str(entry["status"]) + (f": {entry['reason']}" if entry.get("reason")
                                             else "")])
    return table(["variant", "config", "RSS ready MB", "RSS after load MB", "PSS after MB",
                  "processes", "status"], rows)


def profile_table(results: Results) -> str:
    """Where the time goes: per-network queue + compute ms per request, from Triton's statistics."""
    profile = results["profile"]
    networks = NETWORKS
    in_process = profile["in_process_ms"]
    rows = [["in-process chain (compute only)", *(cell(in_process.get(n), 2) for n in networks),
             "–"]]
    named: list[tuple[str, dict[str, Any]]] = []
    for variant, runs in profile["perf_analyzer"].items():
        for key, models in runs.items():
            if key.startswith("faceswap@"):
                named.append((f"perf_analyzer {variant} {key}", models))
    named += [(f"swaptron stream {key}", models)
              for key, models in profile["clients"].items()]
    for label, models in named:
        parts = []
        for network in (*networks, ENSEMBLE):
            times = models.get(network) if isinstance(models, dict) else None
            parts.append(f"{cell(times['queue_ms'], 2)} + {cell(times['compute_ms'], 2)}"
                         if times else "–")
        rows.append([label, *parts])
    return table(["run", *networks, f"{ENSEMBLE} (request)"], rows)


def header(results: Results) -> str:
    """Where and how the numbers were taken."""
    hardware = results["hardware"]
    server = results["server"]
    frames = results["frames"]
    gpu = "; ".join(hardware["gpus"]) or "none"
    return "\n".join([
        f"- command: `{results['command']}` ({results['mode']} run, "
        f"{results['duration_s']} s, {results['started']})",
        f"- host: {results['host']}: {hardware['cpu_model']}, "
        f"{hardware['logical_cores']} logical cores, {hardware['memory_gb']} GB, "
        f"GPU: {gpu}; load average {hardware['load_average_start']} at start, "
        f"{hardware['load_average_end']} at end; CPU busy before the run "
        f"{hardware['cpu_busy_pct_before']}%",
        f"- server: {server['kind']} {server.get('name', '')} "
        f"{server.get('version', '')}"
        + (f" at {server['url']}" if server.get("url") else ""),
        f"- frames: {frames['video']} ({frames['width']}x{frames['height']}, "
        f"{frames['count']} frames; perf_analyzer input: frames "
        f"{frames['perf_analyzer_frames']}, one face each)",
    ])


def markdown(results: Results, image_prefix: str = "") -> str:
    """The full report: targets, baselines, perf_analyzer, variants, profile, plots."""
    errors = results.get("errors") or []
    parts = [
        f"# swaptron bench: {results['host']}, {results['date']}", "", header(results), "",
        "## Targets", "", targets_table(results), "",
        "## Baselines", "", BASELINES_NOTE, "", baselines_table(results), "",
        "## perf_analyzer (client-side latency; server queue and compute per request)", "",
        perf_table(results), "",
        *([LOOSE_NOTE, ""] if any(not r.get("stable", True) for r in results["perf_analyzer"])
          else []),
        "## Config variants and server memory", "", variants_table(results), "",
        "## Profile: ms per request, queue + compute, from Triton's statistics API", "",
        profile_table(results), "",
        "## Plots", "",
        f"![throughput versus concurrency]({image_prefix}{THROUGHPUT_PNG})", "",
        f"![latency CDF per mode]({image_prefix}{LATENCY_PNG})", "",
    ]
    if errors:
        parts += ["## Errors", "", *(f"- {json.dumps(e)}" for e in errors), ""]
    return "\n".join(parts)


def readme_block(results: Results, prefix: str) -> str:
    """The short block the README shows: targets, baselines and the two plots."""
    return "\n".join([
        README_BEGIN,
        f"Latest run: {results['host']}, {results['date']}, `{results['command']}` "
        f"(full report: [{prefix}latest.md]({prefix}latest.md)).", "",
        targets_table(results), "", baselines_table(results), "",
        f"![throughput versus concurrency]({prefix}{THROUGHPUT_PNG})",
        f"![latency CDF per mode]({prefix}{LATENCY_PNG})",
        README_END,
    ])


def update_readme(readme: Path, results: Results, output_dir: Path) -> bool:
    """Replace the README's bench block, if it has the markers; True when it was rewritten."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        return False
    try:
        prefix = output_dir.resolve().relative_to(readme.resolve().parent).as_posix() + "/"
    except ValueError:
        prefix = output_dir.resolve().as_posix() + "/"
    updated = text[:begin] + readme_block(results, prefix) + text[end + len(README_END):]
    if updated != text:
        readme.write_text(updated)
    return True


def throughput_plot(results: Results, path: Path) -> Path:
    """Throughput versus concurrency per variant and model, with the baselines as lines."""
    figure = Figure(figsize=(8, 4.8), dpi=90)
    axes = figure.subplots()
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in results["perf_analyzer"]:
        series.setdefault((row["variant"], row["model"]), []).append(
            (row["concurrency"], row["throughput"]))
    for (variant, model), points in series.items():
        points.sort()
        style = "-o" if model == ENSEMBLE else "--."
        axes.plot([p[0] for p in points], [p[1] for p in points], style,
                  label=f"{model} ({variant})")
    baselines = results["baselines"]
    for key, label, style, colour in (("in_process_fps", "in-process chain", ":", "black"),
                                      ("serial_fps", "stream --mode serial", "-.", "grey"),
                                      ("stream_fps", "stream, unpaced", "--", "grey")):
        value = baselines.get(key)
        if isinstance(value, int | float):
            axes.axhline(value, linestyle=style, color=colour, linewidth=1,
                         label=f"{label}: {value:.1f} FPS")
    axes.set_xscale("log", base=2)
    levels = sorted({row["concurrency"] for row in results["perf_analyzer"]})
    if levels:
        axes.set_xticks(levels, [str(level) for level in levels])
    axes.set_ylim(bottom=0)
    axes.set_xlabel("perf_analyzer concurrency")
    axes.set_ylabel("inferences (frames) per second")
    axes.set_title(f"throughput, {results['host']} {results['date']}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def latency_plot(latencies: dict[str, list[float]], path: Path, bar_ms: float = 50.0) -> Path:
    """CDF of capture-to-receive latency per client mode (compute latency for in-process)."""
    figure = Figure(figsize=(8, 4.8), dpi=90)
    axes = figure.subplots()
    for key, values in latencies.items():
        if not values:
            continue
        ordered = np.sort(np.asarray(values, dtype=float))
        share = np.arange(0, len(ordered) + 1) / len(ordered)
        label = f"{CLIENT_LABELS.get(key, key)} (n={len(ordered)})"
        axes.step(np.concatenate([ordered[:1], ordered]), share, where="post", label=label)
    axes.axvline(bar_ms, color="red", linestyle=":", linewidth=1)
    axes.annotate(f"{bar_ms:.0f} ms bar", (bar_ms, 0.02), fontsize=7, color="red",
                  xytext=(3, 0), textcoords="offset points")
    axes.set_xscale("log")
    low = min((min(v) for v in latencies.values() if v), default=1.0)
    high = max((max(v) for v in latencies.values() if v), default=1000.0)
    ticks = [t for t in LATENCY_TICKS if low / 2 <= t <= high * 2]
    axes.set_xticks(ticks, [str(t) for t in ticks])
    axes.set_xticks([], minor=True)
    axes.set_xlabel("capture-to-receive latency, ms (log)")
    axes.set_ylabel("fraction of frames")
    axes.set_ylim(0, 1.01)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7, loc="best")
    axes.set_title("latency CDF per mode")
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def write_all(results: Results, latencies: dict[str, list[float]], output_dir: Path,
              readme: Path | None) -> list[Path]:
    """Write every result file; returns what was written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(clean(results), indent=1) + "\n"
    dated = output_dir / f"{results['host']}-{results['date']}.json"
    written = [dated, output_dir / "latest.json", output_dir / "latest.md"]
    dated.write_text(text)
    (output_dir / "latest.json").write_text(text)
    (output_dir / "latest.md").write_text(markdown(results))
    written.append(throughput_plot(results, output_dir / THROUGHPUT_PNG))
    written.append(latency_plot(latencies, output_dir / LATENCY_PNG))
    if readme is not None and update_readme(readme, results, output_dir):
        written.append(readme)
    return written
