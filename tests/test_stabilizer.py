"""Swaps that hold still, through a real server: `faceswap_stream` (the stabilizer, state per
sequence in the server) against stateless `faceswap`, on real footage; and faces found far from
the camera."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from swaptron import assets
from swaptron.benchmarks.detector_range import found as detected
from swaptron.benchmarks.detector_range import labelled_faces, place
from swaptron.benchmarks.stability import (
    MOVING_SPEED,
    STILL_SPEED,
    Track,
    jitter,
    lag,
    smoothed,
    speeds,
)
from swaptron.export.repository import ServingOptions
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import (
    ENSEMBLE,
    FACES,
    FRAME,
    LANDMARKS,
    STREAM,
    STREAM_LIMIT_ERROR,
    TRACKER,
)

pytestmark = pytest.mark.server
LIMIT = ServingOptions().max_streams


@pytest.fixture(scope="module")
def stream_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[TritonServer]:
    """The embedded server on the default export."""
    log = tmp_path_factory.mktemp("stream-server") / "triton.log"
    with TritonServer(exported_repository, ports=free_ports(), log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def client(stream_server: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    """One gRPC client for the module."""
    with grpcclient.InferenceServerClient(stream_server.grpc_url) as found:
        yield found


def send(client: grpcclient.InferenceServerClient, model: str, frame: np.ndarray,
         **sequence: object) -> dict[str, np.ndarray]:
    """FACES and LANDMARKS of one frame [H,W,3] (batch axis removed)."""
    tensor = grpcclient.InferInput(FRAME, [1, *frame.shape], "UINT8")
    tensor.set_data_from_numpy(frame[None])
    result = client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput(FACES),
                                                    grpcclient.InferRequestedOutput(LANDMARKS)],
                          **sequence)  # type: ignore[arg-type]
    return {FACES: result.as_numpy(FACES)[0], LANDMARKS: result.as_numpy(LANDMARKS)[0]}


def track(answers: list[dict[str, np.ndarray]]) -> Track:
    """Slot 0's landmarks and presence over the frames."""
    return Track(np.stack([a[LANDMARKS][0] for a in answers]),
                 np.array([a[FACES][0, 4] > 0 for a in answers]), [])


def run_stream(client: grpcclient.InferenceServerClient, frames: list[np.ndarray],
               sequence_id: int) -> Track:
    """A video as one sequence of `faceswap_stream`, ended with its last frame."""
    return track([send(client, STREAM, frame, sequence_id=sequence_id,
                       sequence_start=index == 0, sequence_end=index == len(frames) - 1)
                  for index, frame in enumerate(frames)])


def run_stateless(client: grpcclient.InferenceServerClient, frames: list[np.ndarray]) -> Track:
    """A video frame by frame through `faceswap`."""
    return track([send(client, ENSEMBLE, frame) for frame in frames])


def test_a_stream_has_at_most_half_the_jitter_on_a_still_stretch(
        client: grpcclient.InferenceServerClient) -> None:
    frames = assets.read_frames(assets.footage("single_face.mp4"))
    stateless = run_stateless(client, frames)
    steady = run_stream(client, frames, sequence_id=11)
    still = smoothed(speeds(stateless.landmarks)) < STILL_SPEED
    assert still.sum() >= 10, "the video has no still stretch to measure"
    before, after = jitter(stateless, still), jitter(steady, still)
    assert after <= 0.5 * before, (before, after)


def test_a_stream_lags_at_most_one_frame_on_a_moving_stretch(
        client: grpcclient.InferenceServerClient, megamind_frames: list[np.ndarray]) -> None:
    stateless = run_stateless(client, megamind_frames)
    steady = run_stream(client, megamind_frames, sequence_id=12)
    moving = smoothed(speeds(stateless.landmarks)) > MOVING_SPEED
    assert moving.sum() >= 10, "the video has no moving stretch to measure"
    assert lag(steady, stateless, moving) <= 1
    # and it follows: the steady face stays on the face
    both = steady.present & stateless.present
    centre_gap = np.linalg.norm(steady.landmarks[both].mean(axis=1)
                                - stateless.landmarks[both].mean(axis=1), axis=-1)
    assert np.median(centre_gap) < 3.0


def test_interleaved_streams_keep_their_own_state(
        client: grpcclient.InferenceServerClient, megamind_frames: list[np.ndarray]) -> None:
    first = megamind_frames[60:90]
    second = assets.read_frames(assets.footage("single_face.mp4"))[:30]
    alone = [run_stream(client, first, sequence_id=21), run_stream(client, second,
                                                                   sequence_id=22)]
    answers: list[list[dict[str, np.ndarray]]] = [[], []]
    for index in range(len(first)):
        for number, (frames, sequence_id) in enumerate(((first, 31), (second, 32))):
            answers[number].append(send(client, STREAM, frames[index], sequence_id=sequence_id,
                                        sequence_start=index == 0,
                                        sequence_end=index == len(frames) - 1))
    for together, on_its_own in zip(map(track, answers), alone, strict=True):
        np.testing.assert_allclose(together.landmarks, on_its_own.landmarks, atol=1e-3)
    # the state is doing something: a stream is not its frames taken one by one
    stateless = run_stateless(client, first)
    assert np.abs(alone[0].landmarks - stateless.landmarks).max() > 0.1


def test_streams_past_the_limit_are_refused_until_one_ends(
        client: grpcclient.InferenceServerClient, megamind_frames: list[np.ndarray]) -> None:
    frame = megamind_frames[120]
    opened = []
    try:
        for stream in range(LIMIT):
            send(client, STREAM, frame, sequence_id=1000 + stream, sequence_start=True)
            opened.append(1000 + stream)
        with pytest.raises(InferenceServerException) as refused:
            send(client, STREAM, frame, sequence_id=2000, sequence_start=True)
        assert STREAM_LIMIT_ERROR in str(refused.value)
        assert f"{LIMIT} streams are live" in str(refused.value)
        assert TRACKER in str(refused.value)  # the stream's first stateful step
        # the stateless ensemble is not affected
        assert send(client, ENSEMBLE, frame)[FACES][0, 4] > 0
        # ending one stream frees its place
        send(client, STREAM, frame, sequence_id=opened.pop(), sequence_end=True)
        send(client, STREAM, frame, sequence_id=2000, sequence_start=True, sequence_end=True)
    finally:
        for sequence_id in opened:
            send(client, STREAM, frame, sequence_id=sequence_id, sequence_end=True)


def two_faces(man: np.ndarray, second: np.ndarray | None) -> np.ndarray:
    """A 1360x528 frame: the man of single_face.mp4 on the left, and on the right Megamind's
    frame 120 (a second face) or grey."""
    canvas = np.full((528, 1360, 3), 128, np.uint8)
    canvas[:man.shape[0], :man.shape[1]] = man
    if second is not None:
        canvas[:, 640:] = second
    return canvas


def test_the_tracker_follows_a_face_and_picks_up_one_that_enters(
        client: grpcclient.InferenceServerClient, megamind_frames: list[np.ndarray]) -> None:
    interval = ServingOptions().keyframe_interval
    man = assets.read_frames(assets.footage("single_face.mp4"))
    alone, entering = 8, interval + 48  # the bound is loose: the lookout works beside frames
    answers = []
    for index in range(alone + entering):
        frame = two_faces(man[index % len(man)],
                          megamind_frames[120] if index >= alone else None)
        answers.append(send(client, STREAM, frame, sequence_id=77, sequence_start=index == 0,
                            sequence_end=index == alone + entering - 1))
    counts = [int((answer[FACES][:, 4] > 0).sum()) for answer in answers]
    print(f"faces per frame: {counts}")
    assert counts[:alone] == [1] * alone  # followed on every frame, not dropped between
    picked_up = next((i - alone for i in range(alone, len(counts)) if counts[i] == 2), None)
    print(f"the entering face was picked up {picked_up} frames after it entered")
    assert picked_up is not None and picked_up <= interval + 24
    assert counts[alone + picked_up:] == [2] * (entering - picked_up)  # then both followed


def test_a_request_without_a_sequence_id_is_refused_with_the_reason(
        client: grpcclient.InferenceServerClient, megamind_frames: list[np.ndarray]) -> None:
    with pytest.raises(InferenceServerException, match="correlation ID"):
        send(client, STREAM, megamind_frames[0])


@pytest.mark.parametrize("width_share", [0.08, 0.15])
def test_a_face_far_from_the_camera_is_found(client: grpcclient.InferenceServerClient,
                                             width_share: float) -> None:
    faces = {face.name: face for face in labelled_faces()}
    for name in ("megamind:120", "single_face:10", "astronaut"):
        frame, box = place(faces[name], width_share, np.random.default_rng(7))
        answer = send(client, ENSEMBLE, frame)
        assert detected(answer[FACES], box), f"{name} at {width_share:.0%} of the width"
