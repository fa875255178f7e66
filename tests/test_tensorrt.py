"""The tensorrt target's graphs: TensorRT 10.5-clean, equal to the CPU graphs and to the graphs
before the rewrite on real frames, deterministic where faces overlap, and safe in FP16."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from swaptron.export import tensorrt_check
from swaptron.export.tensorrt import ProfileOptions
from swaptron.networks.pipeline import PipelineOptions
from swaptron.server.ort_session import OrtChain
from swaptron.specs import NETWORKS

from helpers import export_target

REFERENCE = Path(__file__).resolve().parent / "data" / "graphs-before-tensorrt-rewrite.npz"


@pytest.fixture(scope="module")
def tensorrt_fp16_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tensorrt target with --fp16: float16 networks, float32 geometry."""
    return export_target(tmp_path_factory, "tensorrt", profiles=ProfileOptions(fp16=True))


@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_graphs_pass_the_check_and_cpu_graphs_only_declare_shapes(
        tensorrt_repository: Path, tensorrt_fp16_repository: Path,
        exported_repository: Path, fp16: bool) -> None:
    repository = tensorrt_fp16_repository if fp16 else tensorrt_repository
    for name in NETWORKS:
        findings = tensorrt_check.check_file(repository / name / "1" / "model.onnx")
        assert findings == [], [str(f) for f in findings]
        cpu = tensorrt_check.check_file(exported_repository / name / "1" / "model.onnx")
        # the CPU graphs differ only by data-dependent shapes and by their uint8 shortcuts
        # (crops gathered from the uint8 frame, the blend written into it)
        uint8 = [f for f in cpu if f.rule in {"UINT8_CONVERSION", "UINT8_INTERMEDIATE"}
                 or (f.rule == "INPUT_TYPE" and "UINT8" in str(f))]
        assert {f.rule for f in cpu if f not in uint8} <= {"DATA_DEPENDENT_SHAPE"}, [
            str(f) for f in cpu]


def test_new_graphs_give_the_outputs_of_the_graphs_before_the_rewrite(
        tmp_path_factory: pytest.TempPathFactory, megamind_frames: list[np.ndarray]) -> None:
    """The reference was made with the short-range detector, the default then."""
    reference = np.load(REFERENCE)
    short = PipelineOptions(face_detector="short", detector=None)
    for target in ("python-ort", "tensorrt"):
        repository = export_target(tmp_path_factory, target, short)
        chain = OrtChain.open(repository)
        for index in reference["frames"]:
            out, _ = chain.run(megamind_frames[index][None])
            np.testing.assert_allclose(out["FACES"][0], reference[f"faces_{index}"], atol=1e-3)
            np.testing.assert_allclose(out["LANDMARKS"][0], reference[f"landmarks_{index}"],
                                       atol=1e-2)
            x1, y1, x2, y2 = reference[f"box_{index}"]
            crop = out["SWAPPED"][0, y1:y2, x1:x2].astype(int)
            assert np.abs(crop - reference[f"swapped_{index}"]).max() <= 1, (repository, index)


def test_cpu_and_tensorrt_graphs_agree_on_every_frame(
        tensorrt_repository: Path, exported_repository: Path,
        megamind_frames: list[np.ndarray]) -> None:
    cpu, fixed = OrtChain.open(exported_repository), OrtChain.open(tensorrt_repository)
    for frame in megamind_frames[::15]:
        (a, _), (b, _) = cpu.run(frame[None]), fixed.run(frame[None])
        np.testing.assert_allclose(a["LANDMARKS"], b["LANDMARKS"], atol=1e-3)
        assert np.abs(a["SWAPPED"].astype(int) - b["SWAPPED"].astype(int)).max() <= 1


def overlapping_inputs(chain: OrtChain, frame: np.ndarray, presence: tuple[float, float]
                       ) -> dict[str, np.ndarray]:
    """The swapper's inputs for one real face (slot 0) and the same face 60 px to the right and
    10 px down (slot 1), so that their windows overlap."""
    found, _ = chain.run(frame[None])
    landmarks = found["LANDMARKS"].copy()
    landmarks[0, 1] = landmarks[0, 0] + np.array([60.0, 10.0], np.float32)
    return {"FRAME": frame[None], "LANDMARKS": landmarks,
            "PRESENCE": np.array([presence], np.float32),
            "TARGET": found["TARGET"], "LARGEST_ONLY": found["LARGEST_ONLY"]}


def test_overlapping_faces_blend_the_same_way_every_time_with_slot_0_on_top(
        tensorrt_repository: Path, exported_repository: Path,
        megamind_frames: list[np.ndarray]) -> None:
    frame = megamind_frames[120]
    cpu, fixed = OrtChain.open(exported_repository), OrtChain.open(tensorrt_repository)
    both = overlapping_inputs(cpu, frame, (1.0, 1.0))
    runs = [cpu.run_network("swapper", both)["SWAPPED"][0] for _ in range(3)]
    runs.append(fixed.run_network("swapper", both)["SWAPPED"][0])
    for other in runs[1:]:
        assert np.abs(other.astype(int) - runs[0].astype(int)).max() <= 1
    alone = {slot: cpu.run_network("swapper", overlapping_inputs(
        cpu, frame, (1.0, 0.0) if slot == 0 else (0.0, 1.0)))["SWAPPED"][0] for slot in (0, 1)}
    changed_by = {slot: np.abs(alone[slot].astype(int) - frame.astype(int)).max(axis=2) > 0
                  for slot in (0, 1)}
    overlap = changed_by[0] & changed_by[1]
    assert overlap.sum() > 1000  # the two faces really do overlap
    rows, columns = np.nonzero(overlap)  # a point of face 0 in the middle of the overlap
    centre = np.array([columns.mean(), rows.mean()])
    points = both["LANDMARKS"][0, 0]
    x, y = points[np.argmin(np.linalg.norm(points - centre, axis=1))].astype(int)
    patch = (slice(y - 3, y + 4), slice(x - 3, x + 4))
    assert overlap[patch].all()
    np.testing.assert_array_equal(runs[0][patch], alone[0][patch])  # slot 0 is on top
    assert (runs[0][patch] != alone[1][patch]).any()
    near_face_0 = cv2.dilate(changed_by[0].astype(np.uint8), np.ones((21, 21), np.uint8)) > 0
    only_one = changed_by[1] & ~near_face_0  # slot 1's far side, where slot 0 has no weight
    assert only_one.sum() > 1000
    # the same pixels, but for float rounding: the CPU graph samples each face through the
    # window the batch's faces fall in, so another face moves a rare pixel by one level
    difference = np.abs(runs[0][only_one].astype(int) - alone[1][only_one].astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.001


def test_fp16_networks_match_fp32_within_the_stated_tolerance(
        tensorrt_repository: Path, tensorrt_fp16_repository: Path,
        megamind_frames: list[np.ndarray]) -> None:
    """ONNX Runtime runs the float16 nodes on a CPU by casting them back to float32, so this
    measures float16 weights and the casts around the networks, not TensorRT's kernels."""
    full, half = OrtChain.open(tensorrt_repository), OrtChain.open(tensorrt_fp16_repository)
    for frame in megamind_frames[::27]:
        (a, _), (b, _) = full.run(frame[None]), half.run(frame[None])
        assert np.abs(a["FACES"] - b["FACES"]).max() <= 0.5  # pixels (and scores)
        assert np.abs(a["LANDMARKS"] - b["LANDMARKS"]).max() <= 1.0  # pixels
        difference = np.abs(a["SWAPPED"].astype(int) - b["SWAPPED"].astype(int))
        assert difference.max() <= 4 and (difference > 2).mean() <= 0.001
