"""Per-network compute in-process: each exported graph in ONNX Runtime at batch 1 and batch 8.

The budget table later work plans against: what one network costs on this machine with no
serving around it, on real tensors (eight one-face Megamind frames and what the graphs before it
make of them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from swaptron.benchmarks.inputs import one_face_frames
from swaptron.server.ort_session import OrtChain
from swaptron.specs import NETWORKS

BATCHES = (1, 8)


def batched_inputs(chain_tensors: list[dict[str, np.ndarray]], names: list[str], batch: int
                   ) -> dict[str, np.ndarray]:
    """Inputs of a network for `batch` frames (one frame's tensors per batch row)."""
    rows = [chain_tensors[i % len(chain_tensors)] for i in range(batch)]
    return {name: np.concatenate([row[name] for row in rows]) for name in names}


def time_network(session: object, feeds: dict[str, np.ndarray], seconds: float) -> float:
    """Median milliseconds of one call, over at least 5 calls and about `seconds`."""
    for _ in range(2):
        session.run(None, feeds)  # type: ignore[attr-defined]
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < 5 or time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        session.run(None, feeds)  # type: ignore[attr-defined]
        samples.append((time.perf_counter() - begin) * 1000.0)
    return float(np.median(samples))


def measure(repository: Path, frames: list[np.ndarray], threads: tuple[int, ...] = (1, 2),
            seconds: float = 2.0) -> list[dict[str, object]]:
    """Rows of (network, threads, batch, ms per call, ms per frame)."""
    rows = []
    for count in threads:
        chain = OrtChain.open(repository, threads=count)
        indices = one_face_frames(chain, frames, 8)
        tensors = [chain.run(frames[i][None])[0] for i in indices]
        for network in NETWORKS:
            for batch in BATCHES:
                feeds = batched_inputs(tensors, chain.inputs_of(network), batch)
                milliseconds = time_network(chain.sessions[network], feeds, seconds)
                rows.append({"network": network, "threads": count, "batch": batch,
                             "ms_per_call": round(milliseconds, 2),
                             "ms_per_frame": round(milliseconds / batch, 2)})
    return rows


def markdown(rows: list[dict[str, object]], host: str, date: str) -> str:
    """The table as markdown."""
    lines = [f"# Per-network compute, in-process ONNX Runtime ({host}, {date})", "",
             "720x528 Megamind frames with one face (K=2 slots, S=64); median of repeated "
             "calls; `swaptron bench --models`.", "",
             "| network | threads | batch 1 ms | batch 8 ms/call | batch 8 ms/frame |",
             "|---|---|---|---|---|"]
    by_key = {(r["network"], r["threads"], r["batch"]): r for r in rows}
    for network in NETWORKS:
        for count in sorted({r["threads"] for r in rows}):
            one, eight = by_key[(network, count, 1)], by_key[(network, count, 8)]
            lines.append(f"| {network} | {count} | {one['ms_per_call']} | "
                         f"{eight['ms_per_call']} | {eight['ms_per_frame']} |")
    return "\n".join(lines) + "\n"


def write(rows: list[dict[str, object]], output: Path, host: str, date: str) -> None:
    """models.json and models.md in the results folder."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "models.json").write_text(json.dumps(
        {"host": host, "date": date, "rows": rows}, indent=1) + "\n")
    (output / "models.md").write_text(markdown(rows, host, date))
