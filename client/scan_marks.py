"""The provenance mark in `swaptron scan`: each face's frames grouped into a track, the
`scan` ensemble's MARK rows of a track decoded in windows of up to 24 frames (a face is marked
when any window reads a valid payload), never folded into the forgery score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swaptron.client.marks import track_faces
from swaptron.mark_code import MarkReading, decode

WINDOW = 24  # frames of one face voted on at once


@dataclass(frozen=True)
class FaceRows:
    """One scanned frame's faces: their boxes, their slots, and the frame's MARK [K,BITS]."""

    time_s: float
    boxes: list[list[float]]
    slots: list[int]
    marks: np.ndarray


def read_windows(rows: np.ndarray) -> MarkReading:
    """A track's reading: the first window that reads a payload, else the most confident."""
    readings = [decode(rows[start:start + WINDOW]) for start in range(0, len(rows), WINDOW)]
    found = [reading for reading in readings if reading.present]
    return found[0] if found else max(readings, key=lambda reading: reading.confidence)


def read_marks(frames: Sequence[FaceRows]) -> list[tuple[list[tuple[int, int]], MarkReading]]:
    """Each face track, as (frame, face) pairs into `frames`, with its reading."""
    tracks = track_faces([frame.boxes for frame in frames])
    found = []
    for track in tracks:
        rows = np.stack([frames[frame].marks[frames[frame].slots[face]] for frame, face in track])
        found.append((track, read_windows(rows)))
    return found


def reading_summary(number: int, start_s: float, end_s: float, reading: MarkReading
                    ) -> dict[str, object]:
    """A track's reading as the report keeps it."""
    return {"face": number, "start_s": start_s, "end_s": end_s, "frames": reading.frames,
            "marked": reading.present, "server_id": reading.server_id,
            "identity_index": reading.identity, "confidence": round(reading.confidence, 3)}


def mark_line(summary: dict[str, object]) -> str:
    """What `swaptron scan` prints for a face track."""
    where = f"face {summary['face']} ({summary['start_s']:.2f}-{summary['end_s']:.2f} s)"
    if summary["marked"]:
        return (f"  {where}: mark: present (swaptron server {summary['server_id']}, identity "
                f"{summary['identity_index']}, confidence {summary['confidence']})")
    return f"  {where}: mark: absent (confidence {summary['confidence']})"
