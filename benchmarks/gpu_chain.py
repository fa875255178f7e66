"""The PyTorch chain (detector -> landmarker -> swapper) on a CUDA GPU: frames/s by frame size,
batch size and precision (fp32, fp16 autocast), copies to and from the GPU included, and the
GPU's own time per batch (kernels and copies, by the profiler): what is left of a call's wall
time is launching the eager ops one by one from Python.

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
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from swaptron import assets
from swaptron.networks.pipeline import Pipeline, PipelineOptions, build_pipeline
from swaptron.specs import SWAPPED

FRAME_SIZES = {"720x528": (528, 720), "1920x1080": (1080, 1920)}
BATCHES = (1, 4, 16, 32)
PRECISIONS = ("fp32", "fp16-autocast")
PROFILED_CALLS = 5
COMPARED_SIZE = "720x528"  # the frame size whose batch of one is compared with the CPU's
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


def chain(pipeline: Pipeline, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Swapped frames and faces of frames already on the device."""
    faces, keypoints = pipeline.detector(frame)
    landmarks, presence = pipeline.landmarker(frame, faces, keypoints)
    target, largest_only = (t.to(frame.device)
                            for t in pipeline.swapper.choices(frame.shape[0]))
    return pipeline.swapper(frame, landmarks, presence, target, largest_only), faces


@torch.no_grad()
def run_chain(pipeline: Pipeline, frames: np.ndarray, device: torch.device
              ) -> tuple[np.ndarray, np.ndarray]:
    """Frames in from host memory, swapped frames and faces back: what a replica does."""
    swapped, faces = chain(pipeline, torch.from_numpy(frames).to(device))
    return swapped.cpu().numpy(), faces.cpu().numpy()


def measure(pipeline: Pipeline, frames: np.ndarray, device: torch.device, precision: str,
            seconds: float) -> dict[str, object]:
    """ms per batch and frames/s over repeated calls after warm-up."""
    context = (torch.autocast(device.type, dtype=torch.float16)
               if precision == "fp16-autocast" else nullcontext())
    with context:
        def call(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return run_chain(pipeline, batch, device)

        for _ in range(3):
            swapped, faces = call(frames)
        synchronize(device)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            call(frames)
            calls += 1
        synchronize(device)
        busy = kernel_ms(call, frames) if device.type == "cuda" else None
    elapsed = time.perf_counter() - started
    fps = calls * len(frames) / elapsed
    return {"ms_per_batch": round(elapsed / calls * 1000, 2), "fps": round(fps, 1),
            "gpu_kernel_ms_per_batch": busy,
            "streams_at_24_fps": int(fps // STREAM_FPS),
            "faces_found_per_frame": round(float((faces[..., 4] > 0).sum()) / len(frames), 2),
            "swapped": swapped}


def kernel_ms(call: Callable[[np.ndarray], object], frames: np.ndarray,
              calls: int = PROFILED_CALLS) -> float:
    """The GPU's own time per call: the kernels' and copies' device time summed by the
    profiler, over `calls` calls (the rest of a call's wall time is launching and waiting)."""
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for _ in range(calls):
            call(frames)
        torch.cuda.synchronize()
    device_us = sum(event.self_device_time_total for event in profiler.key_averages()
                    if event.device_type == DeviceType.CUDA)  # kernels and copies, once each
    return round(device_us / calls / 1000, 2)


def cpu_reference(frame: np.ndarray) -> np.ndarray:
    """The CPU's fp32 swapped frame (the default modules), int16."""
    with torch.device("cpu"):
        cpu = build_pipeline(PipelineOptions())
        return cpu.run(frame[None])[SWAPPED][0].astype(np.int16)


def compare_with_cpu(reference: np.ndarray, gpu_swapped: np.ndarray) -> dict[str, float]:
    """How far a swapped frame from the GPU (any form, fp32 or fp16 autocast) is from the CPU's
    fp32 one (levels of 255)."""
    difference = np.abs(reference - gpu_swapped.astype(np.int16))
    return {"max_levels": int(difference.max()), "mean_levels": round(float(difference.mean()), 4),
            "pixels_over_2_levels_pct": round(float((difference > 2).mean() * 100), 4)}


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(output: Path, seconds: float, batches: tuple[int, ...] = BATCHES,
        precisions: tuple[str, ...] = PRECISIONS) -> dict[str, object]:
    """Every frame size x precision x batch; the results as JSON (errors recorded, not raised).
    Without CUDA it runs on the CPU (a smoke test of this script, not a figure)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    frames = megamind_frames(max(batches))
    reference = cpu_reference(on_canvas(frames[0], FRAME_SIZES[COMPARED_SIZE]))
    pipeline = build_pipeline(PipelineOptions())
    for module in (pipeline.detector, pipeline.landmarker, pipeline.swapper):
        module.to(device)
    # the modules make their index and constant tensors without a device (the exported graphs
    # hold them as constants): the default device puts them beside the weights
    torch.set_default_device(device)
    results: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(), "seconds_per_case": seconds,
        "what": "eager PyTorch chain detector -> landmarker -> swapper, uint8 frames copied in "
                "from host memory and swapped frames copied back; gpu_kernel_ms_per_batch: the "
                "GPU's own time (kernels and copies, by the profiler); no TensorRT, no Triton",
        "cases": []}
    for name, size in FRAME_SIZES.items():
        batch_frames = np.stack([on_canvas(f, size) for f in frames])
        for precision in precisions:
            for batch in batches:
                case = measure_case(pipeline, batch_frames[:batch], device,
                                    {"frame": name, "precision": precision, "batch": batch},
                                    seconds, reference)
                results["cases"].append(case)  # type: ignore[union-attr]
                print(json.dumps(case), flush=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    return results


def measure_case(pipeline: Pipeline, frames: np.ndarray, device: torch.device,
                 case: dict[str, object], seconds: float, reference: np.ndarray
                 ) -> dict[str, object]:
    """One case's figures (an error is recorded in the case, not raised); the first frame of a
    batch of one at COMPARED_SIZE is compared with the CPU's (`reference`)."""
    try:
        found = measure(pipeline, frames, device, str(case["precision"]), seconds)
    except (RuntimeError, ValueError, TypeError) as error:
        return {**case, "error": f"{type(error).__name__}: {error}"[:400],
                "where": traceback.format_exc().splitlines()[-6:-1]}
    swapped = found.pop("swapped")
    case = {**case, **found}
    if case["batch"] == 1 and case["frame"] == COMPARED_SIZE:
        case["vs_cpu"] = compare_with_cpu(reference, swapped[0])  # type: ignore[index]
    return case


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
