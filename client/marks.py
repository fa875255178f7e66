"""The invisible mark on the client side: a face's frames grouped into tracks, and each track's
MARK rows (the `scan` ensemble's soft bits) decoded into one reading (swaptron/mark_code.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from swaptron.mark_code import MarkKey, MarkReading, decode


def box_iou(first: Sequence[float], second: Sequence[float]) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = ((first[2] - first[0]) * (first[3] - first[1])
             + (second[2] - second[0]) * (second[3] - second[1]) - inter)
    return inter / union if union > 0 else 0.0


def track_faces(boxes: Sequence[Sequence[Sequence[float]]], min_iou: float = 0.3
                ) -> list[list[tuple[int, int]]]:
    """Group faces across frames: boxes[frame][face] -> tracks of (frame, face) pairs.

    Each face joins the track whose last box overlaps it most (IoU >= min_iou) and that no
    other face of its frame took, else starts one.
    """
    tracks: list[list[tuple[int, int]]] = []
    last: list[Sequence[float]] = []
    for frame_index, frame_boxes in enumerate(boxes):
        taken: set[int] = set()
        for face_index, box in enumerate(frame_boxes):
            scores = [(box_iou(box, previous), track) for track, previous in enumerate(last)
                      if track not in taken]
            best = max(scores, default=(0.0, -1))
            if best[0] >= min_iou:
                tracks[best[1]].append((frame_index, face_index))
                last[best[1]] = box
                taken.add(best[1])
            else:
                tracks.append([(frame_index, face_index)])
                last.append(box)
                taken.add(len(tracks) - 1)
    return tracks


def read_track(marks: Sequence[np.ndarray], track: Sequence[tuple[int, int]],
               key: MarkKey | None = None) -> MarkReading:
    """One face track's reading: marks[frame] is that frame's MARK [K,CODE_BITS] (the scan's
    output without its batch axis), track the (frame, slot) pairs of the face, in order."""
    rows = [np.asarray(marks[frame])[slot] for frame, slot in track]
    return decode(np.stack(rows) if rows else np.zeros((0, 1), np.float32), key)
