"""`swaptron scan`: is this clip swapped? Forgery scores from the served `scan` ensemble.

Frames stream through `scan` (detector -> landmarker -> forensics) on the same pipelined gRPC
stream as `swaptron stream`; each answer gives every face's box and fake score. A frame's score is
its most suspicious face's. The clip gets a verdict from the frames with a face: "likely swapped"
when most of them score at or above the detector's threshold (majority vote, as DLDFD decides a
video), else "likely real"; "no faces found" when no frame has one. The mean score is given too,
with the threshold, the detector's name and its card figures (read from the served model's
config), and the stretches of time that score above the threshold.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm
from tritonclient.utils import InferenceServerException

from swaptron.client.infer import sync_client
from swaptron.client.metrics import StreamMetrics
from swaptron.client.sinks import VideoSink
from swaptron.client.sources import FrameSource
from swaptron.client.stream import Streamer, StreamOptions
from swaptron.client.transport import Outcome
from swaptron.specs import FACES, FAKE_SCORE, FORENSICS, SCAN

LIKELY_SWAPPED = "likely swapped"
LIKELY_REAL = "likely real"
NO_FACES = "no faces found"


class ScanError(RuntimeError):
    """The scan cannot run (no forgery detector served); the message says how to fix it."""


@dataclass(frozen=True)
class FaceScore:
    """One face of a frame: its box (x1, y1, x2, y2, frame pixels) and fake score (0..1)."""

    box: list[float]
    fake_score: float


@dataclass
class FrameScan:
    """One frame read from the source: what happened to it and the faces found."""

    index: int
    time_s: float
    status: str = "read"
    faces: list[FaceScore] = field(default_factory=list)
    error: str | None = None

    @property
    def score(self) -> float | None:
        """The frame's score: its most suspicious face, None without a face."""
        return max((face.fake_score for face in self.faces), default=None)


@dataclass(frozen=True)
class DetectorFacts:
    """What the served `forensics` model says about itself (its config parameters)."""

    name: str
    threshold: float
    card: dict[str, float]


def detector_facts(url: str) -> DetectorFacts:
    """Read the served detector's name, threshold and card figures; ScanError without one."""
    with sync_client(url) as client:
        try:
            config = client.get_model_config(FORENSICS, as_json=True)["config"]
        except InferenceServerException as error:
            raise ScanError(f"the server at {url} serves no `{FORENSICS}` model ({error}): "
                            "export one with `swaptron export` after `make forensics-weights`"
                            ) from error
    parameters = {key: value["string_value"]
                  for key, value in config.get("parameters", {}).items()}
    card = {key.removeprefix("card_"): float(value) for key, value in parameters.items()
            if key.startswith("card_")}
    return DetectorFacts(parameters.get("detector", "unknown"),
                         float(parameters.get("threshold", "0.5")), card)


def box_colour(score: float) -> tuple[int, int, int]:
    """BGR from green (0, real) to red (1, fake)."""
    return (0, round(255 * (1.0 - score)), round(255 * score))


def annotate(frame: np.ndarray, faces: list[FaceScore], threshold: float) -> np.ndarray:
    """The frame with each face's box coloured by its score, and the score written."""
    image = frame.copy()
    for face in faces:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        colour = box_colour(face.fake_score)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 3 if face.fake_score >= threshold
                      else 2)
        cv2.putText(image, f"{face.fake_score:.2f}", (x1, max(16, y1 - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
    return image


class Collector:
    """Gathers the per-frame results as answers come (the streamer's sink)."""

    def __init__(self, fps: float, threshold: float, video: VideoSink | None,
                 progress: tqdm) -> None:
        self.fps = fps
        self.threshold = threshold
        self.video = video
        self.progress = progress
        self.frames: dict[int, FrameScan] = {}

    def __call__(self, outcome: Outcome) -> None:
        if outcome.status != "received":
            return
        item, tensors = outcome.item, outcome.tensors
        faces = [FaceScore([round(float(v), 1) for v in box[:4]], round(float(score), 4))
                 for box, score in zip(tensors[FACES], tensors[FAKE_SCORE], strict=True)
                 if box[4] > 0 and score >= 0]
        self.frames[item.index] = FrameScan(item.index, round(item.index / self.fps, 3),
                                            "received", faces)
        if self.video is not None:
            self.video.put(item.index, annotate(item.frame, faces, self.threshold))
        self.progress.update(1)


def stretches(frames: list[FrameScan], threshold: float, fps: float) -> list[dict[str, float]]:
    """Runs of consecutive frames scoring at or above the threshold, in seconds."""
    found, start, last = [], None, None
    for frame in frames:
        above = frame.score is not None and frame.score >= threshold
        if above and start is None:
            start = frame.time_s
        if not above and start is not None:
            found.append({"start_s": start, "end_s": round(last + 1.0 / fps, 3)})
            start = None
        last = frame.time_s
    if start is not None and last is not None:
        found.append({"start_s": start, "end_s": round(last + 1.0 / fps, 3)})
    return found


def verdict(frames: list[FrameScan], threshold: float) -> dict[str, object]:
    """The clip's verdict and its two video-level scores."""
    scores = np.array([frame.score for frame in frames if frame.score is not None])
    if len(scores) == 0:
        return {"verdict": NO_FACES, "frames_with_faces": 0, "majority_vote": None,
                "mean_score": None}
    vote = float((scores >= threshold).mean())
    return {"verdict": LIKELY_SWAPPED if vote > 0.5 else LIKELY_REAL,
            "frames_with_faces": len(scores), "majority_vote": round(vote, 4),
            "mean_score": round(float(scores.mean()), 4),
            "mean_says": LIKELY_SWAPPED if scores.mean() >= threshold else LIKELY_REAL}


def scan(source: FrameSource, url: str, video: VideoSink | None = None,
         max_inflight: int = 3) -> dict[str, object]:
    """Scan every frame of a source through the served `scan` ensemble; the report."""
    facts = detector_facts(url)
    options = StreamOptions(url=url, model=SCAN, outputs=(FACES, FAKE_SCORE),
                            max_inflight=max_inflight, live=False)
    metrics = StreamMetrics(origin=time.monotonic())
    total = source.frame_count()
    started = time.monotonic()
    with tqdm(total=total, desc=f"scanning with {facts.name}", unit="frame") as progress:
        collector = Collector(source.fps, facts.threshold, video, progress)
        streamer = Streamer(source, options, [collector], metrics)
        asyncio.run(streamer.run())
    elapsed = time.monotonic() - started
    frames = []
    for index, timing in sorted(metrics.frames.items()):
        frame = collector.frames.get(index) or FrameScan(
            index, round(index / source.fps, 3), timing.status, [], timing.error)
        if frame.status != "received" and timing.status != "received":
            frame.status = "failed" if timing.status in ("captured", "sent") else timing.status
        frames.append(frame)
    return {
        "source": source.options.spec,
        "detector": facts.name,
        "threshold": facts.threshold,
        "card": facts.card,
        "outcome": streamer.outcome,
        **verdict(frames, facts.threshold),
        "frames_read": len(frames),
        "frames_scored": sum(1 for f in frames if f.status == "received"),
        "frames_failed": sum(1 for f in frames if f.status == "failed"),
        "frames_per_second": round(len(frames) / elapsed, 2) if elapsed > 0 else math.nan,
        "stretches_above_threshold": stretches(frames, facts.threshold, source.fps),
        "frames": [{**asdict(frame), "score": frame.score} for frame in frames],
    }


def plot_scores(report: dict[str, object], path: Path) -> None:
    """The frame score over time, the threshold, and the stretches above it shaded."""
    frames = report["frames"]
    times = [frame["time_s"] for frame in frames]  # type: ignore[union-attr]
    scores = [np.nan if frame["score"] is None else frame["score"]
              for frame in frames]  # type: ignore[union-attr]
    figure = Figure(figsize=(8, 3))
    axes = figure.subplots()
    for stretch in report["stretches_above_threshold"]:  # type: ignore[union-attr]
        axes.axvspan(stretch["start_s"], stretch["end_s"], color="red", alpha=0.15)
    axes.plot(times, scores, color="black", linewidth=1, label="fake score (frame)")
    axes.axhline(report["threshold"], color="red", linestyle="--",  # type: ignore[arg-type]
                 label=f"threshold {report['threshold']}")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("seconds")
    axes.set_ylabel("fake score")
    axes.set_title(f"{report['source']}: {report['verdict']} ({report['detector']})")
    axes.legend(fontsize=7, loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def summary_lines(report: dict[str, object]) -> list[str]:
    """What `swaptron scan` prints."""
    card = report["card"]
    figures = ", ".join(f"{key} {value}" for key, value in card.items())  # type: ignore[union-attr]
    lines = [f"verdict: {report['verdict']}",
             f"  frames read {report['frames_read']}, with a face "
             f"{report['frames_with_faces']}, failed {report['frames_failed']} "
             f"({report['frames_per_second']} frames/s)"]
    if report["majority_vote"] is not None:
        lines.append(f"  majority vote: {report['majority_vote']:.0%} of the frames with a face "
                     f"score >= {report['threshold']}; mean score {report['mean_score']} "
                     f"({report['mean_says']})")
        for stretch in report["stretches_above_threshold"][:10]:  # type: ignore[index]
            lines.append(f"  above the threshold from {stretch['start_s']:.2f} s to "
                         f"{stretch['end_s']:.2f} s")
    lines.append(f"  detector {report['detector']} (card: {figures or 'no card'})")
    return lines
