"""Real inputs for the bench: frames, perf_analyzer input data and the in-process baseline.

The in-process chain (`OrtChain`, server/ort_session.py) runs detector -> landmarker -> swapper
with ONNX Runtime as the server's Python-backend models do (same files, same thread settings).
It is the in-process baseline, and it gives the real intermediate tensors that perf_analyzer
sends to the networks.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from swaptron.assets import ANCHOR_FRAME
from swaptron.server.ort_session import OrtChain
from swaptron.specs import ENSEMBLE, ENSEMBLE_MAX_BATCH, FACES, FRAME, NETWORKS

FACE_SCORE = 0.5


def face_count(tensors: dict[str, np.ndarray]) -> int:
    """Faces the detector found in a batch-1 result."""
    return int((tensors[FACES][0, :, 4] > FACE_SCORE).sum())


def one_face_frames(chain: OrtChain, frames: list[np.ndarray], count: int,
                    stride: int = 10) -> list[int]:
    """Up to `count` indices of frames with exactly one face, evenly spread, ANCHOR_FRAME first."""
    candidates = sorted({ANCHOR_FRAME, *range(0, len(frames), stride)} & set(range(len(frames))))
    found = [i for i in candidates if face_count(chain.run(frames[i][None])[0]) == 1]
    anchor = [ANCHOR_FRAME] if ANCHOR_FRAME in found else []
    rest = [i for i in found if i != ANCHOR_FRAME]
    wanted = min(count - len(anchor), len(rest))
    return anchor + [rest[k * len(rest) // wanted] for k in range(max(wanted, 0))]


def entry(array: np.ndarray) -> dict[str, object]:
    """One tensor in perf_analyzer's `--input-data` JSON: raw bytes as base64 and its shape."""
    data = np.ascontiguousarray(array)
    return {"b64": base64.b64encode(data.tobytes()).decode("ascii"), "shape": list(data.shape)}


def write_input_data(samples: list[dict[str, np.ndarray]], names: list[str], path: Path,
                     batch_axis: bool = False) -> Path:
    """perf_analyzer `--input-data` file: one step per sample; tensors keep their batch axis of 1
    only for a non-batching model (the ensemble)."""
    steps = [{name: entry(sample[name] if batch_axis else sample[name][0]) for name in names}
             for sample in samples]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": steps}))
    return path


FULL_HD = (1080, 1920)
FRAME_SIZE_CASES = ("frame-720x528", "frame-1920x1080")  # perf_analyzer variants of one frame


def frame_size_files(chain: OrtChain, frame: np.ndarray, folder: Path
                     ) -> tuple[dict[str, Path], bool]:
    """Input data of one frame as it is and padded onto a 1920x1080 canvas (the face keeps its
    pixels), and whether the detector finds the face on the canvas too."""
    canvas = np.zeros((*FULL_HD, 3), np.uint8)
    height, width = frame.shape[:2]
    canvas[:height, :width] = frame
    files = {}
    for case, image in zip(FRAME_SIZE_CASES, (frame, canvas), strict=True):
        files[case] = write_input_data([{FRAME: image[None]}], [FRAME],
                                       folder / f"{case}.json",
                                       batch_axis=ENSEMBLE_MAX_BATCH == 0)
    return files, face_count(chain.run(canvas[None])[0]) == 1


def input_data_files(chain: OrtChain, frames: list[np.ndarray], indices: list[int],
                     folder: Path) -> dict[str, Path]:
    """An input-data file per model (`faceswap` and each network) from the chosen frames."""
    samples = [chain.run(frames[i][None])[0] for i in indices]
    files = {ENSEMBLE: write_input_data(samples, [FRAME], folder / f"{ENSEMBLE}.json",
                                          batch_axis=ENSEMBLE_MAX_BATCH == 0)}
    for network in NETWORKS:
        files[network] = write_input_data(samples, chain.inputs_of(network),
                                          folder / f"{network}.json")
    return files


def percentile(values: list[float], q: float) -> float:
    """A percentile rounded to 0.01 (NaN for no values)."""
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def in_process_baseline(chain: OrtChain, frames: list[np.ndarray], seconds: float,
                        min_frames: int = 10, warmup: int = 3) -> dict[str, Any]:
    """FPS of the chain called frame after frame in this process, over the video in order."""
    for frame in frames[:warmup]:
        chain.run(frame[None])
    latencies: list[float] = []
    per_network = dict.fromkeys(NETWORKS, 0.0)
    started = time.perf_counter()
    while len(latencies) < min_frames or time.perf_counter() - started < seconds:
        frame = frames[len(latencies) % len(frames)]
        begin = time.perf_counter()
        _, timings = chain.run(frame[None])
        latencies.append((time.perf_counter() - begin) * 1000.0)
        for network, value in timings.items():
            per_network[network] += value
    elapsed = time.perf_counter() - started
    count = len(latencies)
    return {
        "fps": round(count / elapsed, 2),
        "frames": count,
        "seconds": round(elapsed, 2),
        "intra_op_threads": chain.intra_op_threads,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "p99": percentile(latencies, 99)},
        "network_ms": {n: round(total / count * 1000.0, 2) for n, total in per_network.items()},
        "latencies_ms": [round(value, 2) for value in latencies],
    }
