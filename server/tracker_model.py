"""The `tracker` model: a stream's faces found by the detector and followed between detections.

MediaPipe's face pipeline, as one step of the stream ensembles. Each face's crop comes from its
landmarks on the previous frame (their bounding box, levelled on the outer eye corners), so the
detector is off the frame's path. It runs on the frame's path only on a stream's first frame and on
the frame after a followed face was lost (landmark presence at or under `presence_threshold`).
Beside the path, a worker thread looks for new faces: every `keyframe_interval` frames while faces
are followed, and every other frame while none is; what it finds joins the stream two frames after
the one it looked at (always that frame, however fast the worker was) when it holds a face not
followed yet. The detector and the landmarker stay models of their own: this step calls them
(Triton's BLS), and their dynamic batchers still batch across streams. Outputs FACES, LANDMARKS and
PRESENCE, as the detector and landmarker give them.

Per-stream state (the last landmarks and presence, frames since the keyframe) lives here, keyed by
the sequence's correlation id: bounded by `max_streams` (a new stream past it is refused with
UNAVAILABLE), freed at the sequence's end or after `stream_idle_s` of silence.

Self-contained on purpose (NumPy and server/stream_side.py only): `swaptron export` copies this file
as the model's `model.py` for every target, with stream_side.py beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from stream_side import (
    Lookout,
    call_for,
    call_model,
    forget_idle,
    sequence_flags,
    stream_limit_refusal,
)


@dataclass
class Followed:
    """A stream's faces after its last frame."""

    landmarks: np.ndarray  # [K,468,2] frame pixels
    presence: np.ndarray  # [K]
    expected: int  # faces present after the last keyframe
    since_keyframe: int
    last_seen: float


@dataclass
class Frame:
    """One request of a batch: its frame, stream, and the faces its landmarker crops take."""

    position: int
    frame: np.ndarray  # [B,H,W,3]
    stream: Any
    start: bool
    end: bool
    faces: np.ndarray | None = None  # [B,K,5]
    keypoints: np.ndarray | None = None  # [B,K,6,2]
    keyframe: bool = True  # detected on the frame's path
    detected: bool = False  # a detection beside the path was taken in (counts as a keyframe)


def regions_from_landmarks(landmarks: np.ndarray, presence: np.ndarray, points: list[int],
                           threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """FACES [K,5] and KEYPOINTS [K,6,2] for the next frame from a frame's landmarks: each
    followed face's landmark bounding box with its presence as score, and the keypoints at the
    landmark indices `points` (outer eye corners first, so the crop levels on the eyes); empty
    slots where the face was not present."""
    kept = presence > threshold
    boxes = np.concatenate([landmarks.min(axis=1), landmarks.max(axis=1)], axis=-1)
    faces = np.concatenate([boxes, presence[:, None]], axis=-1).astype(np.float32)
    faces[~kept] = 0.0
    keypoints = landmarks[:, points].astype(np.float32)
    keypoints[~kept] = 0.0
    return faces, keypoints


Detections = tuple[np.ndarray, np.ndarray]  # FACES [1,K,5], KEYPOINTS [1,K,6,2]


class TritonPythonModel:
    """Detector on keyframes, landmarks-followed crops between them, landmarker every frame."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the called models, the keyframe policy and the stream bounds from the config."""
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.model_name = args["model_name"]
        self.detector = parameters["detector"]
        self.landmarker = parameters["landmarker"]
        self.interval = int(parameters["keyframe_interval"])
        self.threshold = float(parameters["presence_threshold"])
        self.points = [int(p) for p in parameters["keypoint_landmarks"].split(",")]
        self.limit = int(parameters["max_streams"])
        idle_us = int(config["sequence_batching"].get("max_sequence_idle_microseconds", 0))
        self.idle_s = idle_us / 1e6 if idle_us else 10.0
        self.frame_input = config["input"][0]["name"]
        self.faces_output, self.landmarks_output, self.presence_output = (
            spec["name"] for spec in config["output"])
        self.detector_outputs = parameters["detector_outputs"].split(",")  # FACES, KEYPOINTS
        self.streams: dict[Any, Followed] = {}
        self.lookout = Lookout(self.detect_one)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer each request; at most one frame per stream is in a call (sequence batcher)."""
        now = time.monotonic()
        forget_idle(self.streams, self.idle_s, now, self.lookout)
        responses: list[Any] = [None] * len(requests)
        frames: list[Frame] = []
        for position, request in enumerate(requests):
            start, end = sequence_flags(request)
            item = Frame(position,
                         pb_utils.get_input_tensor_by_name(request, self.frame_input).as_numpy(),
                         request.correlation_id(), start, end)
            if item.stream not in self.streams and len(self.streams) >= self.limit:
                responses[position] = stream_limit_refusal(self.model_name, self.limit,
                                                           self.idle_s)
                continue
            self.plan(item)
            frames.append(item)
        self.detect([f for f in frames if f.keyframe], responses)
        self.follow([f for f in frames if responses[f.position] is None], responses, now)
        return responses

    def plan(self, item: Frame) -> None:
        """Detect on the path (a stream's first frame, a lost face), or take the crops from the
        stream's previous landmarks, or from a detection beside the path that found a new face;
        ask the lookout for one when it is time."""
        followed = None if item.start else self.streams.get(item.stream)
        if followed is None or item.frame.shape[0] != 1 or self.interval <= 1:
            return  # on the path: a first frame, several frames, or detection on every frame
        present = int((followed.presence > self.threshold).sum())
        joined = self.lookout.joined(item.stream)
        if present < followed.expected:
            return  # a followed face was lost: find it again on this frame
        item.keyframe = False
        if joined is not None and int((joined[0][0, :, 4] > 0).sum()) > present:
            item.faces, item.keypoints, item.detected = joined[0], joined[1], True
            return
        faces, keypoints = regions_from_landmarks(followed.landmarks, followed.presence,
                                                  self.points, self.threshold)
        item.faces, item.keypoints = faces[None], keypoints[None]
        item.detected = joined is not None
        due = present == 0 or followed.since_keyframe + 1 >= self.interval
        if due and not item.detected and not self.lookout.pending(item.stream):
            self.lookout.ask(item.stream, item.frame)

    def detect_one(self, inputs: tuple[np.ndarray, ...]) -> Detections:
        """The detector on one frame (the lookout's worker)."""
        found = call_model(self.detector, {self.frame_input: inputs[0]}, self.detector_outputs)
        faces, keypoints = (found[name] for name in self.detector_outputs)
        return faces, keypoints

    def detect(self, keyframes: list[Frame], responses: list[Any]) -> None:
        """The detector on the keyframes, one call per frame shape."""
        for group in by_shape(keyframes):
            found = call_for([item.position for item in group], responses, self.detector,
                             {self.frame_input: stack(group)}, self.detector_outputs)
            if found is None:
                continue
            start = 0
            for item in group:
                rows = slice(start, start + item.frame.shape[0])
                item.faces, item.keypoints = (found[name][rows] for name in self.detector_outputs)
                start = rows.stop

    def follow(self, items: list[Frame], responses: list[Any], now: float) -> None:
        """The landmarker on every frame, one call per frame shape; answers and keeps state."""
        faces_name, keypoints_name = self.detector_outputs
        for group in by_shape(items):
            inputs = {self.frame_input: stack(group),
                      faces_name: np.concatenate([item.faces for item in group]),
                      keypoints_name: np.concatenate([item.keypoints for item in group])}
            found = call_for([item.position for item in group], responses, self.landmarker,
                             inputs, [self.landmarks_output, self.presence_output])
            if found is None:
                continue
            start = 0
            for item in group:
                rows = slice(start, start + item.frame.shape[0])
                start = rows.stop
                landmarks = found[self.landmarks_output][rows]
                presence = found[self.presence_output][rows]
                responses[item.position] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(self.faces_output, item.faces.astype(np.float32)),
                    pb_utils.Tensor(self.landmarks_output, landmarks),
                    pb_utils.Tensor(self.presence_output, presence)])
                self.keep(item, landmarks[-1], presence[-1], now)

    def keep(self, item: Frame, landmarks: np.ndarray, presence: np.ndarray, now: float) -> None:
        """Remember a stream's faces for its next frame, or forget it at its end."""
        if item.end:
            self.streams.pop(item.stream, None)
            self.lookout.forget(item.stream)
            return
        previous = self.streams.get(item.stream)
        if item.keyframe or item.detected or previous is None:
            expected, since = int((presence > self.threshold).sum()), 0
        else:
            expected, since = previous.expected, previous.since_keyframe + 1
        self.streams[item.stream] = Followed(landmarks.copy(), presence.copy(), expected, since,
                                             now)

    def finalize(self) -> None:
        """Stop the lookout."""
        self.lookout.stop()


def by_shape(items: list[Frame]) -> list[list[Frame]]:
    """Items grouped by frame size, in order."""
    groups: dict[tuple[int, ...], list[Frame]] = {}
    for item in items:
        groups.setdefault(item.frame.shape[1:], []).append(item)
    return list(groups.values())


def stack(group: list[Frame]) -> np.ndarray:
    """The frames of a group as one batch."""
    return np.concatenate([item.frame for item in group]) if len(group) > 1 else group[0].frame
