"""How many realtime streams one server holds (`swaptron bench --capacity`): 1, 2, 3... concurrent
`swaptron stream --realtime --fps 24` processes on the demo video through the stream ensemble,
each level for a fixed time, until a level misses both bars by far. A level is held when every
stream keeps p95 capture-to-receive <= 50 ms and drops <= 2% of its frames; the p95 bar is also
given scaled by this machine's in-process chain (benchmarks/targets.py). deploy/CAPACITY.md plans
replicas from the figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from swaptron import assets
from swaptron.benchmarks import inputs
from swaptron.benchmarks.clients import ClientRun, command_line, frames_for, summary
from swaptron.benchmarks.targets import Bar, scaled_bar
from swaptron.export.build import export_repository
from swaptron.export.repository import ServingOptions
from swaptron.networks.pipeline import PipelineOptions
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.server.ort_session import OrtChain
from swaptron.specs import STREAM

FPS = 24
MAX_STREAMS = 6
MIN_LEVELS = 4  # run at least these, for the throughput curve, even past the bars
GIVE_UP_DROP_PCT = 60.0  # then stop at the first level that drops more
P95_BAR = Bar("capacity_p95_ms", "each stream's p95 capture-to-receive", 50.0, "ms",
              higher_is_better=False, scaled=True)
DROP_BAR_PCT = 2.0


def level(url: str, streams: int, seconds: float, video: Path, folder: Path,
          fps: float = FPS) -> list[dict[str, object]]:
    """Run `streams` realtime streams at `fps` at once; each one's summary."""
    run = ClientRun(f"capacity_{streams}", f"{streams} realtime streams at {fps} FPS",
                    ("--realtime", "--fps", str(fps)), frames_for(seconds, fps))
    reports = [folder / f"{streams}-{fps}-{i}.json" for i in range(streams)]
    processes = [subprocess.Popen([sys.executable, "-m", "swaptron", "stream",
                                   *command_line(run, video, url, report)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for report in reports]
    for process in processes:
        process.wait(timeout=seconds * 4 + 120)
    return [summary(run, json.loads(report.read_text())) for report in reports
            if report.is_file()]


def held(found: list[dict[str, object]], streams: int, p95_bar: float) -> bool:
    """Every stream reported, kept p95 under the bar and dropped at most 2%."""
    return len(found) == streams and all(
        s["latency_ms"]["p95"] <= p95_bar and s["dropped_pct"] <= DROP_BAR_PCT  # type: ignore[index,operator]
        for s in found)


def run_capacity(output: Path, work: Path, seconds: float = 15.0) -> dict[str, object]:
    """Export, serve, measure each level; write capacity.json and capacity.md."""
    repository = work / "repository"
    export_repository(PipelineOptions(), ServingOptions(), repository, progress=lambda _: None)
    video = assets.demo_video()
    frames = assets.read_frames(video)
    chain_fps = float(inputs.in_process_baseline(OrtChain.open(repository), frames, 8.0)["fps"])
    scaled = scaled_bar(P95_BAR, chain_fps).bar
    levels = []
    work.mkdir(parents=True, exist_ok=True)
    with TritonServer(repository, ports=free_ports(), log_path=work / "triton.log") as server:
        for streams in range(1, MAX_STREAMS + 1):
            found = level(server.grpc_url, streams, seconds, video, work)
            worst_p95 = max(s["latency_ms"]["p95"] for s in found)  # type: ignore[index]
            mean_drop = sum(s["dropped_pct"] for s in found) / len(found)  # type: ignore[misc]
            levels.append({"streams": streams, "worst_p95_ms": worst_p95,
                           "total_fps": round(sum(s["fps"] for s in found), 2),  # type: ignore[misc]
                           "mean_dropped_pct": round(mean_drop, 2),
                           "fps_per_stream": [s["fps"] for s in found],
                           "held": held(found, streams, P95_BAR.bar),
                           "held_scaled": held(found, streams, scaled)})
            if streams >= MIN_LEVELS and mean_drop > GIVE_UP_DROP_PCT:
                break  # far past what the server holds: more streams only drop more
    results = {"model": STREAM, "fps": FPS, "seconds_per_level": seconds,
               "in_process_chain_fps": chain_fps, "p95_bar_ms": P95_BAR.bar,
               "p95_bar_scaled_ms": scaled, "drop_bar_pct": DROP_BAR_PCT,
               "bar": asdict(P95_BAR), "levels": levels,
               "streams_held": max((lv["streams"] for lv in levels if lv["held"]), default=0),
               "streams_held_scaled": max((lv["streams"] for lv in levels
                                           if lv["held_scaled"]), default=0)}
    output.mkdir(parents=True, exist_ok=True)
    (output / "capacity.json").write_text(json.dumps(results, indent=1) + "\n")
    (output / "capacity.md").write_text(capacity_markdown(results))
    return results


def capacity_markdown(results: dict[str, object]) -> str:
    """One row per level, and the streams held."""
    lines = ["# Realtime streams per server", "",
             f"`swaptron bench --capacity`: N concurrent `swaptron stream --realtime --fps "
             f"{results['fps']}` processes on Megamind.avi through `{results['model']}`, "
             f"{results['seconds_per_level']:.0f} s per level, on one embedded server. "
             f"In-process chain on this machine: {results['in_process_chain_fps']} FPS.", "",
             "| streams | worst p95 ms | mean dropped % | FPS per stream | frames/s in all | "
             "held (p95 <= "
             f"{results['p95_bar_ms']:.0f} ms) | held (scaled: p95 <= "
             f"{results['p95_bar_scaled_ms']:.0f} ms) |", "|---|---|---|---|---|---|---|"]
    for row in results["levels"]:  # type: ignore[attr-defined]
        lines.append(f"| {row['streams']} | {row['worst_p95_ms']} | {row['mean_dropped_pct']} | "
                     f"{', '.join(str(f) for f in row['fps_per_stream'])} | {row['total_fps']} | "
                     f"{'yes' if row['held'] else 'no'} | "
                     f"{'yes' if row['held_scaled'] else 'no'} |")
    lines += ["", f"Streams held with p95 <= {results['p95_bar_ms']:.0f} ms and <= "
              f"{results['drop_bar_pct']}% dropped: **{results['streams_held']}**; with the "
              f"p95 bar scaled to this machine: **{results['streams_held_scaled']}**."]
    return "\n".join(lines) + "\n"
