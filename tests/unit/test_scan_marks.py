"""`swaptron scan` reads the provenance mark per face track: a swaptron codeword in a face's
MARK rows reads as present with its payload, noise reads absent, each face on its own track."""

from __future__ import annotations

import numpy as np

from swaptron.client.scan_marks import FaceRows, mark_line, read_marks, reading_summary
from swaptron.mark_code import CODE_BITS, MarkKey, encode_payload

KEY = MarkKey()


def soft_bits(server_id: int, identity: int, frames: int, seed: int) -> np.ndarray:
    """What the reader gives for a marked face: the codeword's signs, noisy, per frame."""
    signs = 2.0 * encode_payload(server_id, identity, KEY) - 1.0
    noise = np.random.default_rng(seed).normal(0.0, 0.6, (frames, CODE_BITS))
    return (signs + noise).astype(np.float32)


def test_a_marked_face_and_an_unmarked_one_are_told_apart_on_their_own_tracks() -> None:
    frames = 30
    marked = soft_bits(7, 3, frames, seed=1)
    unmarked = np.random.default_rng(2).normal(0.0, 1.0, (frames, CODE_BITS)).astype(np.float32)
    rows = [FaceRows(index / 24, [[10 + index, 10, 110 + index, 130], [300, 20, 400, 140]],
                     [1, 0], np.stack([unmarked[index], marked[index]]))  # slot 1: marked
            for index in range(frames)]
    found = read_marks(rows)
    assert len(found) == 2
    readings = {track[0][1]: reading for track, reading in found}
    assert readings[0].present and (readings[0].server_id, readings[0].identity) == (7, 3)
    assert not readings[1].present
    summary = reading_summary(1, 0.0, 1.2, readings[0])
    assert summary["marked"] is True and "mark: present" in mark_line(summary)
    assert "mark: absent" in mark_line(reading_summary(2, 0.0, 1.2, readings[1]))
