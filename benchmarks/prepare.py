"""What the measurements need before any server runs: the variants' repositories, the demo
video's frames, perf_analyzer input data from them, and the in-process baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swaptron import assets
from swaptron.benchmarks import inputs, variants
from swaptron.benchmarks.plan import BenchError, BenchPlan, BenchRequest
from swaptron.benchmarks.state import Collected, Progress, stopwatch
from swaptron.server.ort_session import OrtChain


@dataclass(frozen=True)
class Prepared:
    """Frames, perf_analyzer input data and the in-process baseline."""

    video: Path
    frames: dict[str, object]
    input_files: dict[str, Path]
    in_process: dict[str, Any]


def export_variants(plan: BenchPlan, request: BenchRequest, say: Progress
                    ) -> dict[str, Path]:
    """Repositories for the variants to serve (only the default one with --url)."""
    from swaptron.export.build import ExportError

    folder = request.work_dir / "variants"
    default = folder / "default"
    repositories: dict[str, Path] = {}
    try:
        for name in plan.variants:
            if name != "default" and request.url is not None:
                continue
            seed = request.seed_repository if name == "default" else default
            say(f"exporting variant {name}")
            repositories[name] = variants.prepare_repository(
                variants.find_variant(name), seed, folder / name, say,
                replace_graphs=name != "default")
    except (ExportError, assets.AssetError, FileNotFoundError) as error:
        raise BenchError(f"cannot export the repositories: {error}") from error
    return repositories


def prepare_inputs(repository: Path, plan: BenchPlan, work: Path, found: Collected,
                   say: Progress) -> Prepared:
    """Decode the demo video, write input data from one-face frames, time the in-process chain."""
    phase = stopwatch()
    try:
        video = assets.demo_video()
        frames = assets.read_frames(video)
    except assets.AssetError as error:
        raise BenchError(str(error)) from error
    serving = variants.find_variant("default").serving
    chain = OrtChain.open(repository, serving.intra_op_threads, serving.intra_op_spinning)
    indices = inputs.one_face_frames(chain, frames, plan.perf_frames)
    if not indices:
        raise BenchError(f"no frame of {video} has exactly one face: check the detector export")
    input_files = inputs.input_data_files(chain, frames, indices, work / "input-data")
    sized, found.frame_sizes["face_found_1920x1080"] = inputs.frame_size_files(
        chain, frames[indices[0]], work / "input-data")
    input_files.update(sized)
    found.timings["inputs_s"] = phase()
    say(f"input data from frames {indices}")
    phase = stopwatch()
    in_process = inputs.in_process_baseline(chain, frames, plan.in_process_seconds)
    found.timings["in_process_s"] = phase()
    say(f"in-process chain: {in_process['fps']} FPS ({in_process['frames']} frames)")
    height, width = frames[0].shape[:2]
    info = {"video": str(video), "count": len(frames), "width": width, "height": height,
            "perf_analyzer_frames": indices}
    return Prepared(video, info, input_files, in_process)
