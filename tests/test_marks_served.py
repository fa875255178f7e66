"""The invisible mark through a real server: the swap ensemble marks the face, the `scan`
ensemble returns MARK (the reader's soft bits) beside FAKE_SCORE, and a real face reads absent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from swaptron.client.marks import read_track
from swaptron.mark_code import MarkKey, encode_payload
from swaptron.networks.pipeline import Pipeline
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import (
    ENSEMBLE,
    FAKE_SCORE,
    LANDMARKS,
    MARK,
    MARK_READER,
    SCAN,
    SWAPPED,
)

from helpers import infer_frame

pytestmark = pytest.mark.server

FRAMES = tuple(range(208, 232, 2))  # Megamind's held-out segment: one face


@pytest.fixture(scope="module")
def server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TritonServer]:
    """The embedded server on the default export (mark on, server id 0)."""
    assert (exported_repository / MARK_READER / "config.pbtxt").is_file()
    log = tmp_path_factory.mktemp("marks-server") / "triton.log"
    with TritonServer(exported_repository, ports=free_ports(), log_path=log) as served:
        yield served


def agreement(soft: np.ndarray, identity: int) -> float:
    """Fraction of bits whose signs match the identity's codeword."""
    code = encode_payload(0, identity, MarkKey()).astype(bool)
    return float(((soft > 0) == code).mean())


def test_the_swap_is_marked_and_scan_returns_the_mark_beside_the_score(
        server: TritonServer, pipeline: Pipeline, megamind_frames: list[np.ndarray]) -> None:
    identity = pipeline.swapper.identities.index(pipeline.swapper.default)
    assert "mark_server_id" in (Path(server.repository) / "swapper" / "config.pbtxt").read_text()
    marks = []
    for index in FRAMES:
        frame = megamind_frames[index][None]
        swap = infer_frame(server.grpc_url, ENSEMBLE, frame, (SWAPPED, LANDMARKS))
        scan = infer_frame(server.grpc_url, SCAN, swap[SWAPPED], (LANDMARKS, FAKE_SCORE, MARK))
        assert scan[MARK].shape == (1, 2, 40) and 0.0 <= scan[FAKE_SCORE][0, 0] <= 1.0
        assert not scan[MARK][0, 1].any()  # the empty slot reads nothing
        with torch.no_grad():  # the served reader is the eager one
            eager = pipeline.reader(torch.from_numpy(swap[SWAPPED]),
                                    torch.from_numpy(scan[LANDMARKS]),
                                    torch.tensor([[1.0, 0.0]]))[0].numpy()
            own = pipeline.reader(torch.from_numpy(swap[SWAPPED]),
                                  torch.from_numpy(swap[LANDMARKS]),
                                  torch.tensor([[1.0, 0.0]]))[0].numpy()
        np.testing.assert_allclose(scan[MARK][0, 0], eager[0, 0], atol=0.05)
        # one frame, read where the swapper put it: the face carries its identity's codeword
        # (chance is 0.5; the host's own detail flips a few bits, left to the vote)
        assert agreement(own[0, 0], identity) >= 0.75
        marks.append(scan[MARK][0])
    # the scan's own readings (landmarks found on the swapped frames), voted: the payload
    reading = read_track(marks, [(frame, 0) for frame in range(len(marks))])
    assert (reading.present, reading.server_id, reading.identity) == (True, 0, identity)


def test_a_real_face_reads_absent(server: TritonServer,
                                  megamind_frames: list[np.ndarray]) -> None:
    marks = [infer_frame(server.grpc_url, SCAN, megamind_frames[index][None], (MARK,))[MARK][0]
             for index in FRAMES]
    reading = read_track(marks, [(frame, 0) for frame in range(len(marks))])
    assert not reading.present and reading.frames == len(FRAMES)
