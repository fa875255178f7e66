"""The PyTorch chain (detector -> landmarker -> swapper) on a CUDA GPU: frames/s by frame size,
batch size and precision, copies to and from the GPU included.

This is the eager PyTorch reference, not the TensorRT engines a GPU replica serves (TensorRT is
not installable where this was run); `deploy/CAPACITY.md` takes its streams-per-GPU figure from
here and says so. Run on a GPU host with PyTorch, from a checkout installed or aliased as the
`swaptron` package:

    python -m swaptron.benchmarks.gpu_chain --output gpu_chain.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import torch

from swaptron import assets
from swaptron.networks.pipeline import Pipeline, PipelineOptions, build_pipeline
from swaptron.specs import SWAPPED

FRAME_SIZES = {"720x528": (528, 720), "1920x1080": (1080, 1920)}
BATCHES = (1, 4, 16, 32)
PRECISIONS = ("fp32", "fp16-autocast")
STREAM_FPS = 24.0
FACE_FRAME = 120  # Megamind frame with one face, as in the CPU bench


def megamind_frames(count: int) -> list[np.ndarray]:
    """The first `count` frames from FACE_FRAME on (wrapping), BGR uint8."""
    capture = cv2.VideoCapture(str(assets.demo_video()))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    return [frames[(FACE_FRAME + i) % len(frames)] for i in range(count)]


def on_canvas(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame at the top left of a black canvas of `size` (the face's pixels unchanged)."""
    canvas = np.zeros((*size, 3), np.uint8)
    canvas[:frame.shape[0], :frame.shape[1]] = frame
    return canvas


@torch.no_grad()
def run_chain(pipeline: Pipeline, frames: np.ndarray, device: torch.device
              ) -> tuple[np.ndarray, np.ndarray]:
    """Frames in from host memory, swapped frames and faces back: what a replica does."""
    frame = torch.from_numpy(frames).to(device)
    faces, keypoints = pipeline.detector(frame)
    landmarks, presence = pipeline.landmarker(frame, faces, keypoints)
    target, largest_only = (t.to(device) for t in pipeline.swapper.choices(frames.shape[0]))
    swapped = pipeline.swapper(frame, landmarks, presence, target, largest_only)
    return swapped.cpu().numpy(), faces.cpu().numpy()


def measure(pipeline: Pipeline, frames: np.ndarray, device: torch.device, precision: str,
            seconds: float) -> dict[str, object]:
    """ms per batch and frames/s over repeated calls after warm-up."""
    context = (torch.autocast("cuda", dtype=torch.float16) if precision == "fp16-autocast"
               else nullcontext())
    with context:
        for _ in range(3):
            swapped, faces = run_chain(pipeline, frames, device)
        synchronize(device)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            run_chain(pipeline, frames, device)
            calls += 1
        synchronize(device)
    elapsed = time.perf_counter() - started
    fps = calls * len(frames) / elapsed
    return {"ms_per_batch": round(elapsed / calls * 1000, 2), "fps": round(fps, 1),
            "streams_at_24_fps": int(fps // STREAM_FPS),
            "faces_found_per_frame": round(float((faces[..., 4] > 0).sum()) / len(frames), 2),
            "swapped": swapped}


def compare_with_cpu(pipeline: Pipeline, frame: np.ndarray, gpu_swapped: np.ndarray
                     ) -> dict[str, float]:
    """How far the GPU's fp32 swapped frame is from the CPU's (levels of 255)."""
    with torch.device("cpu"):
        cpu = build_pipeline(PipelineOptions())
        reference = cpu.run(frame[None])[SWAPPED][0].astype(np.int16)
    difference = np.abs(reference - gpu_swapped.astype(np.int16))
    return {"max_levels": int(difference.max()), "mean_levels": round(float(difference.mean()), 4),
            "pixels_over_2_levels_pct": round(float((difference > 2).mean() * 100), 4)}


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(output: Path, seconds: float, batches: tuple[int, ...] = BATCHES,
        precisions: tuple[str, ...] = PRECISIONS) -> dict[str, object]:
    """Every frame size x batch x precision; the results as JSON (errors recorded, not raised).
    Without CUDA it runs on the CPU (a smoke test of this script, not a figure)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = build_pipeline(PipelineOptions())
    for module in (pipeline.detector, pipeline.landmarker, pipeline.swapper):
        module.to(device)
    # the modules make their index and constant tensors without a device (the exported graphs
    # hold them as constants): the default device puts them beside the weights
    torch.set_default_device(device)
    frames = megamind_frames(max(batches))
    results: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(), "seconds_per_case": seconds,
        "what": "eager PyTorch chain detector -> landmarker -> swapper, uint8 frames copied in "
                "from host memory and swapped frames copied back; no TensorRT, no Triton",
        "cases": []}
    for name, size in FRAME_SIZES.items():
        batch_frames = np.stack([on_canvas(f, size) for f in frames])
        for precision in precisions:
            for batch in batches:
                case: dict[str, object] = {"frame": name, "precision": precision,
                                           "batch": batch}
                try:
                    found = measure(pipeline, batch_frames[:batch], device, precision, seconds)
                except (RuntimeError, ValueError, TypeError) as error:
                    case["error"] = f"{type(error).__name__}: {error}"[:400]
                    case["where"] = traceback.format_exc().splitlines()[-6:-1]
                else:
                    swapped = found.pop("swapped")
                    case.update(found)
                    if precision == "fp32" and batch == 1 and name == "720x528":
                        case["vs_cpu"] = compare_with_cpu(pipeline, batch_frames[0],
                                                          swapped[0])  # type: ignore[index]
                results["cases"].append(case)  # type: ignore[union-attr]
                print(json.dumps(case), flush=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    return results


def main() -> None:
    """Command line: --output, --seconds, --batches, --precisions."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("gpu_chain.json"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    arguments = parser.parse_args()
    run(arguments.output, arguments.seconds,
        tuple(int(b) for b in arguments.batches.split(",")),
        tuple(arguments.precisions.split(",")))


if __name__ == "__main__":
    main()
