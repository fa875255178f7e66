"""The three PyTorch modules: against the TFLite originals, their ONNX graphs, and real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from tflite_runtime.interpreter import Interpreter

from swaptron import assets
from swaptron.export import onnx_export
from swaptron.networks.pipeline import Pipeline, build_finder
from swaptron.networks.tflite_port import TfliteNetwork
from swaptron.specs import FAKE_SCORE, MARK, PUBLISHED_SUFFIX, SWAPPED, model_specs


def tflite_outputs(weights: assets.WheelFile, image: np.ndarray) -> list[np.ndarray]:
    """Run the original `.tflite` file in the TFLite interpreter (NHWC float input)."""
    interpreter = Interpreter(model_path=str(assets.tflite_path(weights)))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def port_outputs(weights: assets.WheelFile, image: np.ndarray) -> list[np.ndarray]:
    """Run the PyTorch port on the same NHWC input."""
    network = TfliteNetwork(assets.tflite_path(weights)).eval()
    with torch.no_grad():
        return [o.numpy() for o in network(torch.from_numpy(image).permute(0, 3, 1, 2))]


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Reference letterbox with OpenCV: RGB in [-1, 1], scale and content offset (x, y)."""
    height, width = frame.shape[:2]
    scale = size / max(height, width)
    resized = cv2.resize(frame, (round(width * scale), round(height * scale)),
                         interpolation=cv2.INTER_AREA)
    canvas = np.zeros((size, size, 3), np.uint8)
    offset = np.array([(size - resized.shape[1]) // 2, (size - resized.shape[0]) // 2])
    canvas[offset[1]:offset[1] + resized.shape[0], offset[0]:offset[0] + resized.shape[1]] = (
        resized)
    rgb = canvas[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
    return rgb[None], scale, offset


# BlazeFace anchors written out plainly, per variant: (cells per side, anchors per cell) layers
ANCHOR_LAYERS = {"short": ((16, 2), (8, 6)), "back": ((16, 2), (8, 6)), "full": ((48, 1),)}
INPUT_SIDE = {"short": 128, "back": 256, "full": 192}


def reference_anchors(variant: str) -> np.ndarray:
    """Anchor centres (normalised) of a variant, in MediaPipe's order."""
    rows = []
    for cells, per_cell in ANCHOR_LAYERS[variant]:
        for y in range(cells):
            for x in range(cells):
                rows += [[(x + 0.5) / cells, (y + 0.5) / cells]] * per_cell
    return np.array(rows)


@pytest.mark.parametrize("variant", ["short", "back", "full"])
@pytest.mark.parametrize("frame_index", [10, 120, 230])
def test_detector_network_matches_tflite(megamind_frames: list[np.ndarray],
                                         frame_index: int, variant: str) -> None:
    image, _, _ = letterbox(megamind_frames[frame_index], INPUT_SIDE[variant])
    weights = assets.DETECTOR_WEIGHTS[variant]
    expected = tflite_outputs(weights, image)
    actual = port_outputs(weights, image)
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-3 * np.abs(want).max())


def test_landmarker_network_matches_tflite(astronaut: np.ndarray) -> None:
    crop = cv2.resize(astronaut[40:220, 140:320], (192, 192))
    image = (crop[:, :, ::-1].astype(np.float32) / 255.0)[None]
    expected = tflite_outputs(assets.LANDMARKER_TFLITE, image)
    actual = port_outputs(assets.LANDMARKER_TFLITE, image)
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-3 * np.abs(want).max())


@pytest.mark.parametrize("variant", ["short", "back", "full"])
def test_detector_graph_matches_a_tflite_reference_pipeline(astronaut: np.ndarray,
                                                            variant: str) -> None:
    side = INPUT_SIDE[variant]
    image, scale, offset = letterbox(astronaut, side)
    regressors, logits = tflite_outputs(assets.DETECTOR_WEIGHTS[variant], image)
    best = int(np.argmax(logits[0, :, 0]))
    anchor = reference_anchors(variant)[best] * side
    centre = regressors[0, best, 0:2] + anchor
    half = regressors[0, best, 2:4] / 2
    expected_box = (np.concatenate([centre - half, centre + half]) - np.tile(offset, 2)) / scale
    expected_eyes = ((regressors[0, best, 4:8].reshape(2, 2) + anchor) - offset) / scale
    tensors = build_finder(max_faces=2, face_detector=variant).find(astronaut[None])
    np.testing.assert_allclose(tensors["FACES"][0, 0, :4], expected_box, atol=4.0)
    np.testing.assert_allclose(tensors["KEYPOINTS"][0, 0, :2], expected_eyes, atol=4.0)


def test_detector_finds_the_astronaut_and_landmarks_fall_in_the_box(pipeline: Pipeline,
                                                                     astronaut: np.ndarray
                                                                     ) -> None:
    tensors = pipeline.run(astronaut[None])
    x1, y1, x2, y2, score = tensors["FACES"][0, 0]
    assert score > 0.8
    assert tensors["FACES"][0, 1, 4] == 0  # one face only
    assert 150 < x1 < (x1 + x2) / 2 < 240 < x2 < 300  # the face, not the suit or the flag
    assert 60 < y1 < (y1 + y2) / 2 < 140 < y2 < 200
    assert_landmarks_in_box(tensors["LANDMARKS"][0, 0], tensors["FACES"][0, 0])
    assert tensors["PRESENCE"][0, 0] > 0.9


def assert_landmarks_in_box(landmarks: np.ndarray, face: np.ndarray) -> None:
    """At least 90% of the mesh inside the box, all of it inside the box grown by 20%."""
    x1, y1, x2, y2, _ = face
    grow_x, grow_y = 0.2 * (x2 - x1), 0.2 * (y2 - y1)

    def inside(gx: float, gy: float) -> np.ndarray:
        return ((landmarks[:, 0] >= x1 - gx) & (landmarks[:, 0] <= x2 + gx)
                & (landmarks[:, 1] >= y1 - gy) & (landmarks[:, 1] <= y2 + gy))

    assert inside(0.0, 0.0).mean() >= 0.9
    assert inside(grow_x, grow_y).all()


def test_detector_finds_a_face_in_nine_of_ten_megamind_frames(
        pipeline: Pipeline, megamind_frames: list[np.ndarray]) -> None:
    found = 0
    for start in range(0, len(megamind_frames), 16):
        batch = np.stack(megamind_frames[start:start + 16])
        with torch.no_grad():
            faces, _ = pipeline.detector(torch.from_numpy(batch))
        found += int((faces[:, 0, 4] > 0).sum())
    assert found >= 0.9 * len(megamind_frames)


@pytest.mark.parametrize("frame_index", [15, 60, 130, 180, 250])
def test_landmarks_fall_in_the_box_on_megamind(pipeline: Pipeline,
                                               megamind_frames: list[np.ndarray],
                                               frame_index: int) -> None:
    tensors = pipeline.run(megamind_frames[frame_index][None])
    assert tensors["FACES"][0, 0, 4] > 0.5
    assert_landmarks_in_box(tensors["LANDMARKS"][0, 0], tensors["FACES"][0, 0])


def test_nothing_is_found_on_blank_or_noise(pipeline: Pipeline) -> None:
    rng = np.random.default_rng(7)
    frames = np.stack([np.zeros((480, 640, 3), np.uint8), np.full((480, 640, 3), 255, np.uint8),
                       rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                       cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                                        (0, 0), 3)])
    tensors = pipeline.run(frames)
    assert (tensors["FACES"] == 0).all()
    assert (tensors["LANDMARKS"] == 0).all()
    np.testing.assert_array_equal(tensors["SWAPPED"], frames)


def mixed_inputs(megamind_frames: list[np.ndarray], astronaut: np.ndarray) -> np.ndarray:
    """Three frames at a size the graphs were not traced at: a face, two faces, none."""
    size = (640, 480)
    return np.stack([cv2.resize(megamind_frames[120], size), cv2.resize(megamind_frames[12], size),
                     cv2.resize(astronaut, size)[::-1].copy()])


@pytest.mark.parametrize("model", ["detector", "landmarker", "swapper"])
def test_onnx_matches_pytorch_at_another_batch_and_size(
        pipeline: Pipeline, exported_repository, megamind_frames: list[np.ndarray],
        astronaut: np.ndarray, model: str) -> None:
    frames = mixed_inputs(megamind_frames, astronaut)
    tensors = pipeline.run(frames)
    spec = model_specs(2)[model]
    differences = onnx_export.max_difference(exported_repository / model / "1" / "model.onnx",
                                             pipeline.modules()[model], spec, tensors)
    bounds = {"FACES": 0.01, "KEYPOINTS": 0.01, "LANDMARKS": 0.01, "PRESENCE": 1e-4,
              "SWAPPED": 1.0}
    for output, difference in differences.items():
        assert difference <= bounds[output.removesuffix(PUBLISHED_SUFFIX)], (output, difference)


def test_the_chain_runs_under_fp16_autocast_close_to_fp32(
        pipeline: Pipeline, megamind_frames: list[np.ndarray], astronaut: np.ndarray) -> None:
    """Eager fp16 autocast (a GPU host's cheap path, here on the CPU): pixel positions and the
    mark reader's window sums stay float32, so the chain runs, the frame stays within a few
    levels of fp32, and every slot's mark and score stay finite and close."""
    frames = mixed_inputs(megamind_frames, astronaut)
    full = pipeline.run(frames)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        half = pipeline.run(frames)
    pixels = np.abs(full[SWAPPED].astype(np.int16) - half[SWAPPED].astype(np.int16))
    assert (full[SWAPPED] != frames).any()
    assert pixels.max() <= 16 and (pixels > 2).mean() < 1e-3, (pixels.max(), (pixels > 2).mean())
    assert np.isfinite(half[MARK]).all() and np.isfinite(half[FAKE_SCORE]).all()
    assert np.abs(full[MARK] - half[MARK]).max() < 0.02
    assert np.abs(full[FAKE_SCORE] - half[FAKE_SCORE]).max() < 0.02
