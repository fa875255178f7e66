"""Identities chosen per request through a real tritonserver: two streams into different
identities, an unknown name among good requests, the listing, the largest face only."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from swaptron import assets
from swaptron.networks.autoencoder import FaceAutoencoder
from swaptron.networks.pipeline import PipelineOptions
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import (
    ENSEMBLE,
    FACE_CHOICES,
    FACES,
    FRAME,
    IDENTITY,
    STREAM,
    SWAPPED,
    WHICH_FACES,
)

from helpers import export_target

pytestmark = pytest.mark.server

FRAMES = 16


def frame_inputs(frame: np.ndarray, identity: str | None = None, which: str | None = None
                 ) -> list[grpcclient.InferInput]:
    """FRAME [1,H,W,3] and the named choices that are given."""
    tensor = grpcclient.InferInput(FRAME, [1, *frame.shape], "UINT8")
    tensor.set_data_from_numpy(frame[None])
    inputs = [tensor]
    for name, value in ((IDENTITY, identity), (WHICH_FACES, which)):
        if value is not None:
            choice = grpcclient.InferInput(name, [1, 1], "BYTES")
            choice.set_data_from_numpy(np.array([[value.encode()]], dtype=object))
            inputs.append(choice)
    return inputs


def sequence_swaps(url: str, frames: list[np.ndarray], identity: str | None = None
                   ) -> list[np.ndarray]:
    """`faceswap_stream`'s SWAPPED for frames sent as one sequence."""
    with grpcclient.InferenceServerClient(url) as client:
        return [client.infer(STREAM, frame_inputs(frame, identity), sequence_id=77,
                             sequence_start=index == 0, sequence_end=index == len(frames) - 1
                             ).as_numpy(SWAPPED)[0] for index, frame in enumerate(frames)]


def swap(url: str, frame: np.ndarray, identity: str | None = None, which: str | None = None
         ) -> dict[str, np.ndarray]:
    """One `faceswap` request; SWAPPED and FACES."""
    with grpcclient.InferenceServerClient(url) as client:
        result = client.infer(ENSEMBLE, frame_inputs(frame, identity, which))
    return {name: result.as_numpy(name)[0] for name in (SWAPPED, FACES)}


def start_stream(url: str, output: Path, *options: str) -> subprocess.Popen[str]:
    """`swaptron stream` of the first frames of the demo video, as a user runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "swaptron", "stream", "--no-display", "--quiet", "--source",
         str(assets.demo_video()), "--frames", str(FRAMES), "--url", url, "--output",
         str(output), *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def only_a_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default export with `a` as the default identity: the single-identity export of a."""
    return export_target(tmp_path_factory, "python-ort", PipelineOptions(identity="a"))


def test_two_streams_with_different_identities_match_their_own_exports(
        faceswap_server: TritonServer, only_a_repository: Path,
        megamind_frames: list[np.ndarray], tmp_path: Path) -> None:
    streams = {name: start_stream(faceswap_server.grpc_url, tmp_path / name, "--identity", name)
               for name in ("a", "b")}  # at once, so that their requests share batches
    got = {}
    for name, process in streams.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stdout + stderr
        got[name] = [cv2.imread(str(path)) for path in sorted((tmp_path / name).glob("*.png"))]
        assert len(got[name]) == FRAMES
    frames = megamind_frames[:FRAMES]
    with TritonServer(only_a_repository, ports=free_ports(),
                      log_path=tmp_path / "only-a.log") as only_a:
        wanted = {"a": sequence_swaps(only_a.grpc_url, frames)}  # its default: a
    wanted["b"] = sequence_swaps(faceswap_server.grpc_url, frames)  # the default export's: b
    for name in ("a", "b"):
        for index in range(FRAMES):
            assert np.abs(got[name][index].astype(int) - wanted[name][index]).max() <= 1, (
                name, index)
    face_frames = [i for i in range(FRAMES)
                   if np.abs(got["a"][i].astype(int) - got["b"][i]).max() > 40]
    assert len(face_frames) >= FRAMES // 2  # different faces came back


def test_an_unknown_identity_fails_alone_and_the_others_are_served(
        faceswap_server: TritonServer, megamind_frames: list[np.ndarray]) -> None:
    frame = megamind_frames[120]
    outcomes: dict[str, object] = {}

    def ask(key: str, identity: str | None, which: str | None = None) -> None:
        try:
            outcomes[key] = swap(faceswap_server.grpc_url, frame, identity, which)[SWAPPED]
        except InferenceServerException as error:
            outcomes[key] = error

    cases = {"a": ("a", None), "b": ("b", None), "default": (None, None),
             "largest": ("a", "largest"), "unknown": ("zed", None),
             "bad faces": (None, "biggest"), "huge name": ("x" * 5000, None)}
    for _ in range(4):  # bursts: refusals batched with good requests (this crashed Triton once)
        threads = [threading.Thread(target=ask, args=(key, *case)) for key, case in cases.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(not isinstance(outcome, InferenceServerException) or outcome.status() ==
                   "StatusCode.INVALID_ARGUMENT" for outcome in outcomes.values()), outcomes
    for key in ("unknown", "bad faces", "huge name"):
        assert isinstance(outcomes[key], InferenceServerException), key
        assert outcomes[key].status() == "StatusCode.INVALID_ARGUMENT", key
    assert "unknown IDENTITY 'zed'; this server swaps into a, b (default b)" in str(
        outcomes["unknown"])
    assert f"unknown WHICH_FACES 'biggest'; choose {' or '.join(FACE_CHOICES)}" in str(
        outcomes["bad faces"])
    assert len(str(outcomes["huge name"])) < 300  # the name is shortened in the error
    served = {key: outcomes[key] for key in ("a", "b", "default", "largest")}
    for key, image in served.items():
        assert isinstance(image, np.ndarray) and image.shape == frame.shape, key
    np.testing.assert_array_equal(served["default"], served["b"])
    assert np.abs(served["a"].astype(int) - served["b"]).max() > 40


def test_the_listing_matches_the_weights(faceswap_server: TritonServer) -> None:
    result = subprocess.run([sys.executable, "-m", "swaptron", "identities", "--url",
                             faceswap_server.grpc_url, "--json"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(result.stdout)
    decoders = list(FaceAutoencoder.load(assets.demo_weights()).decoders)
    assert listed == {"identities": decoders, "default": decoders[-1],
                      "face_choices": list(FACE_CHOICES)}
    plain = subprocess.run([sys.executable, "-m", "swaptron", "identities", "--url",
                            faceswap_server.grpc_url], capture_output=True, text=True,
                           timeout=60, check=False)
    assert f"{decoders[-1]}  (default)" in plain.stdout
    nowhere = subprocess.run([sys.executable, "-m", "swaptron", "identities", "--url",
                              f"127.0.0.1:{free_ports().grpc}"], capture_output=True,
                             text=True, timeout=60, check=False)
    assert nowhere.returncode == 1 and "cannot read the identities" in nowhere.stdout


def test_largest_swaps_only_the_largest_face(faceswap_server: TritonServer) -> None:
    image = cv2.imread(str(assets.footage("multi_face.jpg")))
    every = swap(faceswap_server.grpc_url, image)
    largest = swap(faceswap_server.grpc_url, image, which="largest")
    found = every[FACES][every[FACES][:, 4] > 0.5]
    assert len(found) >= 2  # two face slots hold faces
    changed = {key: np.abs(out[SWAPPED].astype(int) - image).max(axis=2) > 8
               for key, out in (("every", every), ("largest", largest))}
    areas = (found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1])
    x0, y0, x1, y1 = found[np.argmax(areas), :4]
    width, height = x1 - x0, y1 - y0
    near = np.zeros(image.shape[:2], bool)
    near[max(int(y0 - height), 0):int(y1 + height), max(int(x0 - width), 0):int(x1 + width)] = True
    assert changed["largest"].sum() > 100
    assert not (changed["largest"] & ~near).any()  # nothing changed away from the largest face
    assert (changed["every"] & ~near).sum() > 100  # where "all" swapped another face
