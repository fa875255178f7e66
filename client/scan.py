"""`swaptron scan`: is this clip swapped? Forgery scores from the served `scan` ensemble.

Frames stream through `scan` (detector -> landmarker -> forensics) through the client's
transport core, as `swaptron stream`'s frames do; each answer gives every face's box and fake
score. What the report concludes (three verdicts, stretches, summary) is in scan_report.py.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm
from tritonclient.utils import InferenceServerException

from swaptron.client.credentials import CredentialsError, describe, read_manifest
from swaptron.client.infer import sync_client
from swaptron.client.metrics import StreamMetrics
from swaptron.client.scan_marks import FaceRows, read_marks, reading_summary
from swaptron.client.scan_report import clip_verdict, stretches
from swaptron.client.sinks import VideoSink
from swaptron.client.sources import FrameSource
from swaptron.client.stream import Streamer, StreamOptions
from swaptron.client.transport import Outcome
from swaptron.specs import FACES, FAKE_SCORE, FORENSICS, MARK, SCAN
from swaptron.verdicts import Cuts


class ScanError(RuntimeError):
    """The scan cannot run (no forgery detector served); the message says how to fix it."""


@dataclass
class FaceScore:
    """One face of a frame: its box (x1, y1, x2, y2, frame pixels) and fake score (0..1)."""

    box: list[float]
    fake_score: float
    slot: int = 0  # the face slot it came in (FACES row)
    marked: bool | None = None  # the provenance mark read on its track (None: not read)


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
    cuts: Cuts
    card: dict[str, float]
    reads_marks: bool = False  # the scan ensemble gives MARK (the provenance mark's bits)


def detector_facts(url: str) -> DetectorFacts:
    """Read the served detector's name, threshold and card figures; ScanError without one."""
    with sync_client(url) as client:
        try:
            config = client.get_model_config(FORENSICS, as_json=True)["config"]
            scan_config = client.get_model_config(SCAN, as_json=True)["config"]
        except InferenceServerException as error:
            raise ScanError(f"the server at {url} serves no `{FORENSICS}` model or `{SCAN}` "
                            f"ensemble ({error}): export one with `swaptron export` after "
                            "`make forensics-weights`") from error
    reads_marks = any(output["name"] == MARK for output in scan_config.get("output", []))
    parameters = {key: value["string_value"]
                  for key, value in config.get("parameters", {}).items()}
    card = {key.removeprefix("card_"): float(value) for key, value in parameters.items()
            if key.startswith("card_")}
    threshold = float(parameters.get("threshold", "0.5"))
    real_below = float(parameters.get("real_below", threshold))  # older servers: two verdicts
    return DetectorFacts(parameters.get("detector", "unknown"), Cuts(threshold, real_below),
                         card, reads_marks)


VERDICT_COLOURS = {"likely real": (0, 200, 0), "uncertain": (0, 200, 230),
                   "likely swapped": (0, 0, 230)}  # BGR


def annotate(frame: np.ndarray, faces: list[FaceScore], cuts: Cuts) -> np.ndarray:
    """The frame with each face's box coloured by its verdict, with its score written."""
    image = frame.copy()
    for face in faces:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        said = cuts.band(face.fake_score)
        colour = VERDICT_COLOURS[said]
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(image, f"{face.fake_score:.2f} {said}", (x1, max(16, y1 - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
    return image


class Collector:
    """Gathers the per-frame results as answers come (the streamer's sink)."""

    def __init__(self, fps: float, cuts: Cuts, video: VideoSink | None, progress: tqdm
                 ) -> None:
        self.fps = fps
        self.cuts = cuts
        self.video = video
        self.progress = progress
        self.frames: dict[int, FrameScan] = {}
        self.marks: dict[int, np.ndarray] = {}

    def __call__(self, outcome: Outcome) -> None:
        if outcome.status != "received":
            return
        item, tensors = outcome.item, outcome.tensors
        faces = [FaceScore([round(float(v), 1) for v in box[:4]], round(float(score), 4), slot)
                 for slot, (box, score) in enumerate(zip(tensors[FACES], tensors[FAKE_SCORE],
                                                         strict=True))
                 if box[4] > 0 and score >= 0]
        if MARK in tensors:
            self.marks[item.index] = tensors[MARK]
        self.frames[item.index] = FrameScan(item.index, round(item.index / self.fps, 3),
                                            "received", faces)
        if self.video is not None:
            self.video.put(item.index, annotate(item.frame, faces, self.cuts))
        self.progress.update(1)


def mark_report(frames: list[FrameScan], marks: dict[int, np.ndarray], reads_marks: bool
                ) -> dict[str, object]:
    """Each face track's provenance mark (setting each face's `marked`), and whether any face
    is marked; nothing read when the server's scan ensemble has no MARK."""
    if not reads_marks:
        return {"marked": None, "marks": []}
    scanned = [frame for frame in frames if frame.faces and frame.index in marks]
    rows = [FaceRows(frame.time_s, [face.box for face in frame.faces],
                     [face.slot for face in frame.faces], marks[frame.index])
            for frame in scanned]
    summaries = []
    for number, (track, reading) in enumerate(read_marks(rows), start=1):
        for frame, face in track:
            scanned[frame].faces[face].marked = reading.present
        summaries.append(reading_summary(number, scanned[track[0][0]].time_s,
                                         scanned[track[-1][0]].time_s, reading))
    return {"marked": any(summary["marked"] for summary in summaries), "marks": summaries}


def credentials_of(spec: str) -> str | None:
    """The C2PA manifest of a scanned file, described; None for a camera, a folder, or a file
    without one (or one the C2PA library cannot read)."""
    path = Path(spec)
    if not path.is_file():
        return None
    try:
        store = read_manifest(path)
    except CredentialsError:
        return None
    return None if store is None else describe(store)


def scan(source: FrameSource, url: str, video: VideoSink | None = None,
         max_inflight: int = 3) -> dict[str, object]:
    """Scan every frame of a source through the served `scan` ensemble; the report."""
    facts = detector_facts(url)
    outputs = (FACES, FAKE_SCORE, MARK) if facts.reads_marks else (FACES, FAKE_SCORE)
    options = StreamOptions(url=url, model=SCAN, outputs=outputs,
                            max_inflight=max_inflight, live=False)
    metrics = StreamMetrics(origin=time.monotonic())
    total = source.frame_count()
    started = time.monotonic()
    with tqdm(total=total, desc=f"scanning with {facts.name}", unit="frame") as progress:
        collector = Collector(source.fps, facts.cuts, video, progress)
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
        "threshold": facts.cuts.threshold,
        "real_below": facts.cuts.real_below,
        "card": facts.card,
        "outcome": streamer.outcome,
        **clip_verdict([f.score for f in frames if f.score is not None], facts.cuts),
        "frames_read": len(frames),
        "frames_scored": sum(1 for f in frames if f.status == "received"),
        "frames_failed": sum(1 for f in frames if f.status == "failed"),
        "frames_per_second": round(len(frames) / elapsed, 2) if elapsed > 0 else math.nan,
        "stretches_above_threshold": stretches([f.time_s for f in frames],
                                               [f.score for f in frames],
                                               facts.cuts.threshold, source.fps),
        "credentials": credentials_of(source.options.spec),
        **mark_report(frames, collector.marks, facts.reads_marks),
        "frames": [{**asdict(frame), "score": frame.score} for frame in frames],
    }
