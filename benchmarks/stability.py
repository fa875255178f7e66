"""Do swaps hold still? Jitter, flicker, pops and lag, stateless against stabilized
(`swaptron bench --stability`).

Every frame of a video goes through the detector and landmarker modules, then either straight
to the swapper (stateless, like `faceswap`) or through the stabilizer first, frame after frame
with its state (like `faceswap_stream`). Measured on each:
- jitter (px): on still stretches, the rigid landmarks' frame-to-frame movement left after
  removing the global motion (a similarity fitted between the two frames);
- flicker: mean absolute frame-to-frame change, inside the face, of what the swap adds to the
  frame (swapped minus source): a still swap over a moving face adds a steady difference;
- pops: frames where a face swapped in the frames before and after is left unswapped;
- lag (frames): on moving stretches, the shift that best aligns the stabilized face centre with
  the stateless one.
The served stream (`faceswap_stream` on the embedded server: the tracker, which detects on
keyframes and follows faces between them, then the stabilizer) is measured the same way against
the same stateless run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from swaptron import assets
from swaptron.networks.face_template import RIGID_POINTS
from swaptron.networks.geometry import apply_affine, similarity_fit
from swaptron.networks.pipeline import Pipeline, PipelineOptions, build_pipeline
from swaptron.networks.stabilizer import initial_state
from swaptron.specs import (
    FACES,
    FRAME,
    LANDMARKS,
    NUM_LANDMARKS,
    PRESENCE,
    STREAM,
    SWAPPED,
)

STILL_SPEED = 0.01  # face widths per frame
MOVING_SPEED = 0.03
MAX_LAG = 5


@dataclass
class Track:
    """What a video became: per frame the first slot's landmarks, presence and swapped frame."""

    landmarks: np.ndarray  # [T,468,2]
    present: np.ndarray  # [T] bool
    swapped: list[np.ndarray]


@torch.no_grad()
def run_video(pipeline: Pipeline, frames: list[np.ndarray], stabilize: bool) -> Track:
    """The video through the modules, stateless or stabilized."""
    slots = pipeline.detector.options.max_faces
    state = initial_state(1, slots, NUM_LANDMARKS)
    landmarks, present, swapped = [], [], []
    for number, frame in enumerate(frames):
        found = pipeline.find(frame[None])
        points = torch.from_numpy(found[LANDMARKS])
        presence = torch.from_numpy(found[PRESENCE])
        if stabilize:
            reset = torch.tensor([[1.0 if number == 0 else 0.0]])
            _, points, presence, *state = pipeline.stabilizer(
                torch.from_numpy(found[FACES]), points, presence, *state, reset)
        out = pipeline.swapper(torch.from_numpy(frame[None]), points, presence)
        landmarks.append(points[0, 0].numpy())
        present.append(bool(presence[0, 0] > 0.5))
        swapped.append(out[0].numpy())
    return Track(np.stack(landmarks), np.array(present), swapped)


def run_served(url: str, frames: list[np.ndarray], sequence_id: int) -> Track:
    """The video as one sequence of the served `faceswap_stream`."""
    import tritonclient.grpc as grpcclient

    landmarks, present, swapped = [], [], []
    with grpcclient.InferenceServerClient(url) as client:
        for number, frame in enumerate(frames):
            tensor = grpcclient.InferInput(FRAME, [1, *frame.shape], "UINT8")
            tensor.set_data_from_numpy(frame[None])
            result = client.infer(STREAM, [tensor], sequence_id=sequence_id,
                                  sequence_start=number == 0,
                                  sequence_end=number == len(frames) - 1,
                                  outputs=[grpcclient.InferRequestedOutput(name)
                                           for name in (SWAPPED, FACES, LANDMARKS)])
            landmarks.append(result.as_numpy(LANDMARKS)[0, 0])
            present.append(bool(result.as_numpy(FACES)[0, 0, 4] > 0))
            swapped.append(result.as_numpy(SWAPPED)[0])
    return Track(np.stack(landmarks), np.array(present), swapped)


def face_widths(landmarks: np.ndarray) -> np.ndarray:
    """Width of the face (landmark extent) per frame [T]."""
    return np.maximum(landmarks[..., 0].max(axis=-1) - landmarks[..., 0].min(axis=-1), 1.0)


def speeds(landmarks: np.ndarray) -> np.ndarray:
    """Rigid-point movement per frame in face widths [T] (0 for the first frame)."""
    rigid = landmarks[:, list(RIGID_POINTS)]
    step = np.linalg.norm(np.diff(rigid, axis=0), axis=-1).mean(axis=-1)
    return np.concatenate([[0.0], step / face_widths(landmarks)[1:]])


def smoothed(values: np.ndarray, window: int = 5) -> np.ndarray:
    """Moving average (same length)."""
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="same")


def jitter(track: Track, still: np.ndarray) -> float:
    """Mean rigid-point residual (px) between consecutive still frames after a similarity."""
    residuals = []
    rigid = list(RIGID_POINTS)
    for t in range(1, len(still)):
        if not (still[t] and still[t - 1] and track.present[t] and track.present[t - 1]):
            continue
        before = torch.from_numpy(track.landmarks[t - 1][rigid])
        after = torch.from_numpy(track.landmarks[t][rigid])
        moved = apply_affine(before, similarity_fit(before, after))
        residuals.append(float((moved - after).norm(dim=-1).mean()))
    return round(float(np.mean(residuals)), 3) if residuals else float("nan")


def face_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The landmark extent as slices, shrunk by 15% to stay inside the face."""
    x1, y1 = landmarks.min(axis=0)
    x2, y2 = landmarks.max(axis=0)
    mx, my = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
    top, bottom = int(max(y1 + my, 0)), int(min(y2 - my, shape[0]))
    left, right = int(max(x1 + mx, 0)), int(min(x2 - mx, shape[1]))
    return slice(top, max(bottom, top + 1)), slice(left, max(right, left + 1))


def flicker_and_pops(track: Track, reference: Track, frames: list[np.ndarray]
                     ) -> tuple[float, int]:
    """Flicker of the swap inside the face (the stateless track's face box, the last one seen
    when the face is missed), and pops."""
    flicker, changed = [], []
    last_box = None
    for t, frame in enumerate(frames):
        if reference.present[t]:
            last_box = face_box(reference.landmarks[t], frame.shape)
        box = last_box
        changed.append(box is not None and bool(
            np.abs(track.swapped[t][box].astype(int) - frame[box]).max() > 8))
        if t == 0 or box is None or not (reference.present[t] and reference.present[t - 1]):
            continue
        now = track.swapped[t][box].astype(float) - frame[box]
        before = track.swapped[t - 1][box].astype(float) - frames[t - 1][box]
        flicker.append(float(np.abs(now - before).mean()))
    pops = sum(1 for t in range(1, len(frames) - 1)
               if changed[t - 1] and changed[t + 1] and not changed[t])
    return round(float(np.mean(flicker)), 3) if flicker else float("nan"), pops


def lag(track: Track, reference: Track, moving: np.ndarray) -> float:
    """Frames the stabilized face centre trails the stateless one, on moving stretches."""
    centre = track.landmarks.mean(axis=1)
    raw = reference.landmarks.mean(axis=1)
    frames = np.nonzero(moving & track.present & reference.present)[0]
    frames = frames[(frames >= MAX_LAG) & (frames < len(centre) - MAX_LAG)]
    if len(frames) == 0:
        return float("nan")
    errors = [float(np.linalg.norm(centre[frames] - raw[frames - shift], axis=-1).mean())
              for shift in range(0, MAX_LAG + 1)]
    return float(np.argmin(errors))


def measure_video(name: str, frames: list[np.ndarray], pipeline: Pipeline,
                  served: Track | None = None) -> dict[str, object]:
    """Stateless and stabilized figures of one video (and the served stream's, when given)."""
    stateless = run_video(pipeline, frames, stabilize=False)
    steady = run_video(pipeline, frames, stabilize=True)
    speed = smoothed(speeds(stateless.landmarks))
    still, moving = speed < STILL_SPEED, speed > MOVING_SPEED
    figures: dict[str, object] = {"frames": len(frames), "still_frames": int(still.sum()),
                                  "moving_frames": int(moving.sum())}
    tracks = (("stateless", stateless), ("stabilized", steady),
              *((("served", served),) if served is not None else ()))
    for label, track in tracks:
        flicker, pops = flicker_and_pops(track, stateless, frames)
        figures[label] = {"jitter_px": jitter(track, still), "flicker": flicker, "pops": pops}
    figures["lag_frames"] = lag(steady, stateless, moving)
    before, after = figures["stateless"], figures["stabilized"]
    figures["jitter_ratio"] = ratio(after["jitter_px"], before["jitter_px"])  # type: ignore[index]
    figures["flicker_ratio"] = ratio(after["flicker"], before["flicker"])  # type: ignore[index]
    if served is not None:
        on_server = figures["served"]
        figures["served_lag_frames"] = lag(served, stateless, moving)
        figures["served_jitter_ratio"] = ratio(on_server["jitter_px"],  # type: ignore[index]
                                               before["jitter_px"])  # type: ignore[index]
        figures["served_flicker_ratio"] = ratio(on_server["flicker"],  # type: ignore[index]
                                                before["flicker"])  # type: ignore[index]
    return figures


def ratio(after: float, before: float) -> float:
    """after / before, NaN when either is missing."""
    if not (np.isfinite(after) and np.isfinite(before)) or before == 0:
        return float("nan")
    return round(after / before, 3)


def stability_videos() -> dict[str, list[np.ndarray]]:
    """Megamind and the talking heads."""
    return {"megamind": assets.read_frames(assets.demo_video()),
            "wolfgang": assets.read_frames(assets.footage("WolfgangLanger_Pexels.mp4"))[:240],
            "single_face": assets.read_frames(assets.footage("single_face.mp4"))}


def run_stability(output: Path, work: Path | None = None) -> dict[str, object]:
    """Measure every video, in process and (with a work folder) through the served stream;
    write stability.json and stability.md into `output`."""
    from swaptron.export.build import export_repository
    from swaptron.export.repository import ServingOptions
    from swaptron.server.launcher import TritonServer, free_ports

    torch.set_num_threads(2)
    pipeline = build_pipeline(PipelineOptions(detector=None))
    videos = stability_videos()
    served: dict[str, Track] = {}
    if work is not None:
        repository = work / "repository"
        export_repository(PipelineOptions(), ServingOptions(), repository,
                          progress=lambda _: None)
        with TritonServer(repository, ports=free_ports(), log_path=work / "triton.log") as server:
            served = {name: run_served(server.grpc_url, frames, 900 + number)
                      for number, (name, frames) in enumerate(videos.items())}
    results = {name: measure_video(name, frames, pipeline, served.get(name))
               for name, frames in videos.items()}
    output.mkdir(parents=True, exist_ok=True)
    (output / "stability.json").write_text(json.dumps(results, indent=1) + "\n")
    (output / "stability.md").write_text(stability_markdown(results))
    return results


def stability_markdown(results: dict[str, dict[str, object]]) -> str:
    """The before/after table with the targets."""
    lines = ["# Stability: stateless `faceswap` against the stabilized stream", "",
             "`swaptron bench --stability`. Targets: jitter halved (ratio <= 0.5), flicker down "
             "at least 30% (ratio <= 0.7), no pops on Megamind, lag <= 1 frame.", "",
             "| video | jitter px (before / after) | ratio | flicker (before / after) | ratio | "
             "pops (before / after) | lag frames |", "|---|---|---|---|---|---|---|"]
    for name, figures in results.items():
        before, after = figures["stateless"], figures["stabilized"]
        lines.append(f"| {name} | {before['jitter_px']} / {after['jitter_px']} | "  # type: ignore[index]
                     f"{figures['jitter_ratio']} | {before['flicker']} / {after['flicker']} | "  # type: ignore[index]
                     f"{figures['flicker_ratio']} | {before['pops']} / {after['pops']} | "  # type: ignore[index]
                     f"{figures['lag_frames']} |")
    served = {name: figures for name, figures in results.items() if "served" in figures}
    if served:
        lines += ["", "The served stream (`faceswap_stream`: the tracker, detecting on keyframes "
                  "and following faces between them, then the stabilizer), against the same "
                  "stateless run:", "",
                  "| video | jitter px | ratio | flicker | ratio | pops | lag frames |",
                  "|---|---|---|---|---|---|---|"]
        for name, figures in served.items():
            row = figures["served"]
            lines.append(f"| {name} | {row['jitter_px']} | {figures['served_jitter_ratio']} | "  # type: ignore[index]
                         f"{row['flicker']} | {figures['served_flicker_ratio']} | "  # type: ignore[index]
                         f"{row['pops']} | {figures['served_lag_frames']} |")  # type: ignore[index]
    return "\n".join(lines) + "\n"
