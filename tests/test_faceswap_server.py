"""The `faceswap` ensemble through a real tritonserver: swaps, batches, concurrency, bad input."""

from __future__ import annotations

import re
import threading

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from swaptron.server import access
from swaptron.server.launcher import TritonServer
from swaptron.specs import ENSEMBLE

pytestmark = pytest.mark.server


def swap(server: TritonServer, frames: np.ndarray) -> dict[str, np.ndarray]:
    """One gRPC request of a batch of frames; every output."""
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        tensor = grpcclient.InferInput("FRAME", list(frames.shape), "UINT8")
        tensor.set_data_from_numpy(frames)
        result = client.infer(ENSEMBLE, [tensor])
    return {name: result.as_numpy(name) for name in ("SWAPPED", "FACES", "LANDMARKS")}


def test_a_face_is_changed_and_the_rest_is_kept(faceswap_server: TritonServer,
                                                megamind_frames: list[np.ndarray]) -> None:
    frame = megamind_frames[120]
    out = swap(faceswap_server, frame[None])
    swapped, faces = out["SWAPPED"][0], out["FACES"][0]
    assert swapped.shape == frame.shape and swapped.dtype == np.uint8
    x1, y1, x2, y2, score = faces[0]
    assert score > 0.5
    difference = np.abs(swapped.astype(int) - frame.astype(int)).max(axis=2)
    inner = difference[int(y1 + 0.3 * (y2 - y1)):int(y2 - 0.2 * (y2 - y1)),
                       int(x1 + 0.2 * (x2 - x1)):int(x2 - 0.2 * (x2 - x1))]
    assert (inner > 3).mean() > 0.5  # the face itself changed
    margin = 0.5 * max(x2 - x1, y2 - y1)
    outside = np.ones_like(difference, dtype=bool)
    top, left = max(0, int(y1 - margin)), max(0, int(x1 - margin))
    outside[top:int(y2 + margin), left:int(x2 + margin)] = False
    assert difference[outside].max() <= 1


@pytest.mark.parametrize("kind", ["black", "noise", "fade-in"])
def test_a_frame_without_a_face_comes_back_unchanged(faceswap_server: TritonServer,
                                                     megamind_frames: list[np.ndarray],
                                                     kind: str) -> None:
    rng = np.random.default_rng(3)
    frame = {"black": np.zeros((480, 640, 3), np.uint8),
             "noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
             "fade-in": megamind_frames[0]}[kind]
    out = swap(faceswap_server, frame[None])
    np.testing.assert_array_equal(out["SWAPPED"][0], frame)
    assert (out["FACES"] == 0).all()


def test_a_batch_of_four_mixed_frames(faceswap_server: TritonServer,
                                      megamind_frames: list[np.ndarray]) -> None:
    frames = np.stack([megamind_frames[i] for i in (0, 12, 120, 230)])
    batched = swap(faceswap_server, frames)
    for position, frame in enumerate(frames):
        single = swap(faceswap_server, frame[None])
        np.testing.assert_allclose(batched["FACES"][position], single["FACES"][0], atol=1e-3)
        difference = np.abs(batched["SWAPPED"][position].astype(int) - single["SWAPPED"][0])
        assert difference.max() <= 1
    assert (batched["FACES"][0] == 0).all() and (batched["FACES"][1:, 0, 4] > 0.5).all()


def test_other_frame_sizes_work_over_http(faceswap_server: TritonServer,
                                          astronaut: np.ndarray) -> None:
    frame = cv2.resize(astronaut, (320, 240))
    with httpclient.InferenceServerClient(faceswap_server.http_url) as client:
        tensor = httpclient.InferInput("FRAME", [1, *frame.shape], "UINT8")
        tensor.set_data_from_numpy(frame[None])
        result = client.infer(ENSEMBLE, [tensor],
                              headers=access.http_headers(faceswap_server.admin_key))
    assert result.as_numpy("SWAPPED").shape == (1, 240, 320, 3)
    assert result.as_numpy("FACES")[0, 0, 4] > 0.5


def test_two_concurrent_clients_get_their_own_frames(faceswap_server: TritonServer,
                                                     megamind_frames: list[np.ndarray]) -> None:
    streams = {"woman": [megamind_frames[i] for i in range(20, 36)],
               "man": [megamind_frames[i] for i in range(200, 216)]}
    expected = {name: [swap(faceswap_server, f[None])["SWAPPED"][0] for f in frames]
                for name, frames in streams.items()}
    received: dict[str, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def client(name: str) -> None:
        try:
            received[name] = [swap(faceswap_server, f[None])["SWAPPED"][0]
                              for f in streams[name]]
        except InferenceServerException as error:
            errors.append(error)

    threads = [threading.Thread(target=client, args=(name,)) for name in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for name in streams:
        for got, want in zip(received[name], expected[name], strict=True):
            assert np.abs(got.astype(int) - want).max() <= 1


@pytest.mark.parametrize("outputs", [
    ("FACES",), ("LANDMARKS",), ("SWAPPED",), ("FACES", "LANDMARKS"), ("SWAPPED", "FACES"),
    ("SWAPPED", "LANDMARKS"), ("SWAPPED", "FACES", "LANDMARKS")])
def test_any_set_of_outputs_can_be_asked_for_alone(faceswap_server: TritonServer,
                                                   megamind_frames: list[np.ndarray],
                                                   outputs: tuple[str, ...]) -> None:
    frame = megamind_frames[120][None]
    everything = swap(faceswap_server, frame)
    with grpcclient.InferenceServerClient(faceswap_server.grpc_url) as client:
        tensor = grpcclient.InferInput("FRAME", list(frame.shape), "UINT8")
        tensor.set_data_from_numpy(frame)
        result = client.infer(ENSEMBLE, [tensor],
                              outputs=[grpcclient.InferRequestedOutput(n) for n in outputs])
    for name in outputs:
        np.testing.assert_allclose(result.as_numpy(name), everything[name], atol=1)
    for name in set(everything) - set(outputs):
        assert result.as_numpy(name) is None


def bad_request(server: TritonServer, array: np.ndarray, datatype: str) -> str:
    """Send a malformed FRAME; return the server's error text."""
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        tensor = grpcclient.InferInput("FRAME", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException) as caught:
            client.infer(ENSEMBLE, [tensor])
    return str(caught.value)


@pytest.mark.parametrize(("case", "expected"), [
    ("float frame", r"data-type is 'FP32', but model 'faceswap' expects 'UINT8'"),
    ("grey frame", r"unexpected shape for input 'FRAME'.*Expected \[-1,-1,-1,3\], got \[1,64,64\]"),
    ("no batch axis", r"unexpected shape for input 'FRAME'.*Expected \[-1,-1,-1,3\], "
                      r"got \[528,720,3\]"),
    ("empty frame", r"FRAME is 0x0 pixels"),
    ("4K frame", r"FRAME is 3840x2160 pixels"),
    ("huge frame", r"Failed to increase the shared memory pool size"),
    ("tiny frame", r"FRAME is 32x16 pixels"),
])
def test_bad_input_is_named_and_the_server_keeps_serving(
        faceswap_server: TritonServer, megamind_frames: list[np.ndarray], case: str,
        expected: str) -> None:
    array, datatype = {
        "float frame": (np.zeros((1, 64, 64, 3), np.float32), "FP32"),
        "grey frame": (np.zeros((1, 64, 64), np.uint8), "UINT8"),
        "no batch axis": (megamind_frames[120], "UINT8"),
        "empty frame": (np.zeros((1, 0, 0, 3), np.uint8), "UINT8"),
        "4K frame": (np.zeros((1, 2160, 3840, 3), np.uint8), "UINT8"),
        "huge frame": (np.zeros((1, 10000, 10000, 3), np.uint8), "UINT8"),
        "tiny frame": (np.zeros((1, 16, 32, 3), np.uint8), "UINT8"),
    }[case]
    message = bad_request(faceswap_server, array, datatype)
    assert re.search(expected, message), message
    healthy = swap(faceswap_server, megamind_frames[120][None])
    assert healthy["FACES"][0, 0, 4] > 0.5


def test_a_bad_request_among_good_ones_fails_alone(faceswap_server: TritonServer,
                                                   megamind_frames: list[np.ndarray]) -> None:
    outcomes: dict[str, object] = {}

    def good(name: str, frame: np.ndarray) -> None:
        outcomes[name] = swap(faceswap_server, frame[None])["SWAPPED"]

    def bad() -> None:
        outcomes["bad"] = bad_request(faceswap_server, np.zeros((1, 0, 0, 3), np.uint8), "UINT8")

    threads = [threading.Thread(target=good, args=(f"good{i}", megamind_frames[100 + i]))
               for i in range(4)] + [threading.Thread(target=bad)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "0x0" in str(outcomes["bad"])
    for i in range(4):
        assert outcomes[f"good{i}"].shape == (1, 528, 720, 3)
