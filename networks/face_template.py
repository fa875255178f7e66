"""The canonical face the swapper aligns to: FaceMesh landmark indices and template positions.

The template (`face_template.json`) holds the 468 FaceMesh points of a frontal face in unit
square coordinates; the face sits at the same place in every aligned SxS crop, for extraction,
training and the swapper graph alike. It was made once from the landmarks our landmarker finds
on scikit-image's `astronaut.png`: eyes levelled, the outline centred and spanning FACE_FILL of
the square (TEMPLATE_FILL; its `source` and `face_fill` fields say so).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TEMPLATE_FILE = Path(__file__).resolve().parent / "face_template.json"

# points that move little with expression: eye corners, brows, nose, forehead, temples
RIGID_POINTS = (33, 133, 362, 263, 70, 105, 334, 300, 168, 6, 197, 195, 5, 4, 1, 98, 327,
                10, 151, 9, 127, 234, 356, 454)
# the face outline, in order around the face
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
             109)
TEMPLATE_FILL = 0.80  # the outline's longer side spans this fraction of the unit square
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14


def load_template() -> np.ndarray:
    """The 468x2 template in unit-square coordinates."""
    points = np.asarray(json.loads(TEMPLATE_FILE.read_text())["points"], dtype=np.float32)
    if points.shape != (468, 2):
        raise ValueError(f"{TEMPLATE_FILE} holds {points.shape} points, expected (468, 2)")
    return points
