"""The canonical face the swapper aligns to: FaceMesh landmark indices and template positions.

The template (`assets/face_template.json`) holds the 468 FaceMesh points of a frontal face in unit
square coordinates; the face sits at the same place in every aligned SxS crop, for extraction,
training and the swapper graph alike. `build_template` made it from the landmarks our own graphs
find on scikit-image's `astronaut.png` (`swaptron export --rebuild-template` redoes it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TEMPLATE_FILE = Path(__file__).resolve().parent / "assets" / "face_template.json"

# points that move little with expression: eye corners, brows, nose, forehead, temples
RIGID_POINTS = (33, 133, 362, 263, 70, 105, 334, 300, 168, 6, 197, 195, 5, 4, 1, 98, 327,
                10, 151, 9, 127, 234, 356, 454)
# the face outline, in order around the face
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
             109)
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
NOSE_TIP, CHIN, FOREHEAD = 1, 152, 10
FACE_FILL = 0.80  # the outline's longer side spans this fraction of the crop


def build_template(landmarks: np.ndarray) -> np.ndarray:
    """Level the eyes, then centre the outline in the unit square spanning FACE_FILL of it."""
    eye_vector = landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER]
    angle = np.arctan2(eye_vector[1], eye_vector[0])
    rotation = np.array([[np.cos(-angle), -np.sin(-angle)], [np.sin(-angle), np.cos(-angle)]])
    level = landmarks @ rotation.T
    outline = level[list(FACE_OVAL)]
    low, high = outline.min(axis=0), outline.max(axis=0)
    scale = FACE_FILL / float((high - low).max())
    return (level - (low + high) / 2.0) * scale + 0.5


def load_template() -> np.ndarray:
    """The 468x2 template in unit-square coordinates."""
    points = np.asarray(json.loads(TEMPLATE_FILE.read_text())["points"], dtype=np.float32)
    if points.shape != (468, 2):
        raise ValueError(f"{TEMPLATE_FILE} holds {points.shape} points, expected (468, 2)")
    return points


def save_template(points: np.ndarray, source: str) -> None:
    """Write the template asset."""
    payload = {"source": source, "face_fill": FACE_FILL,
               "points": np.round(points, 5).tolist()}
    TEMPLATE_FILE.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
