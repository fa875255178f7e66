"""The DFM contract (networks/dfm.py), DeepFaceLive's alignment and merge (dfm_align, dfm_merge)
on synthetic DFM files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from dfm_synthetic import amp_dfm, broken_dfm, channel_swap_dfm, identity_dfm

from swaptron.networks.dfm import DfmError, read_dfm, rename_tensors, safe_names
from swaptron.networks.dfm_align import (
    DFM_TEMPLATE_SCALE,
    AlignOptions,
    cut_face,
    dfm_normalisation,
    invert,
    load_dfm_template,
    similarity,
    transform,
    whole_face_matrix,
)
from swaptron.networks.dfm_graphs import DfmCrop, DfmMerge
from swaptron.networks.dfm_merge import erode_blur, merge_face, run_dfm, swap_frame
from swaptron.networks.face_template import FACE_OVAL, RIGID_POINTS, load_template

FAULTS = {  # fault -> words the refusal must contain
    "not_onnx": "not an ONNX file",
    "dynamic_r": "R must be fixed",
    "nchw": "NHWC",
    "wrong_name": "must contain 'in_face'",
    "three_inputs": "3 inputs",
    "bad_morph": "must contain 'morph_value'",
    "two_outputs": "2 outputs",
    "wrong_shapes": "(face mask)",
    "unknown_op": "ONNX Runtime cannot load",
    "out_of_range": "leaves 0..1",
}


def session(path: Path) -> ort.InferenceSession:
    """A one-thread CPU session."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def placed_face(scale: float, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """DeepFaceLive's mean face [468,2] rotated, scaled and moved into a frame."""
    points = load_dfm_template().points - 0.5
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ turn.T * scale + np.array(centre)


def test_good_files_are_described(tmp_path: Path) -> None:
    plain = read_dfm(identity_dfm(tmp_path / "identity.dfm", 96))
    assert plain.resolution == 96 and not plain.has_morph and plain.deepfacelive_names
    assert plain.output_names == ("out_face_mask:0", "out_celeb_face:0",
                                  "out_celeb_face_mask:0")
    amp = read_dfm(amp_dfm(tmp_path / "amp.dfm"))
    assert amp.has_morph and amp.input_names == ("in_face:0", "morph_value:0")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_files_are_refused_by_name(tmp_path: Path, fault: str) -> None:
    path = broken_dfm(tmp_path / f"{fault}.dfm", fault)
    with pytest.raises(DfmError) as refusal:
        read_dfm(path)
    assert str(path) in str(refusal.value) and FAULTS[fault] in str(refusal.value)


def test_missing_empty_and_oversized_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dfm"
    empty.write_bytes(b"")
    good = identity_dfm(tmp_path / "identity.dfm")
    for path, limit, words in ((tmp_path / "absent.dfm", 1 << 30, "no such file"),
                               (empty, 1 << 30, "no graph"),
                               (good, 100, "over the size limit of 100 bytes")):
        with pytest.raises(DfmError, match=words):
            read_dfm(path, size_limit=limit)


def test_names_with_colons_map_to_safe_names(tmp_path: Path) -> None:
    info = read_dfm(amp_dfm(tmp_path / "amp.dfm"))
    mapping = safe_names(info)
    assert mapping["in_face:0"] == "in_face_0" and mapping["morph_value:0"] == "morph_value_0"
    assert all(":" not in name for name in mapping.values())
    renamed = rename_tensors(onnx.load(str(info.path)), mapping)
    onnx.checker.check_model(renamed)
    onnx.save(renamed, str(tmp_path / "renamed.dfm"))
    again = read_dfm(tmp_path / "renamed.dfm")
    assert again.input_names == ("in_face_0", "morph_value_0") and not again.deepfacelive_names


def test_outputs_by_position_keep_bgr_order_and_morph(tmp_path: Path) -> None:
    faces = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    swap = read_dfm(channel_swap_dfm(tmp_path / "swap.dfm"))
    face_mask, celeb, celeb_mask = run_dfm(session(swap.path), swap, faces)
    np.testing.assert_array_equal(celeb, faces[..., ::-1])
    assert face_mask.shape == celeb_mask.shape == (2, 64, 64, 1) and face_mask.min() == 1.0
    amp = read_dfm(amp_dfm(tmp_path / "amp.dfm"))
    _, morphed, _ = run_dfm(session(amp.path), amp, faces, morph=0.25)
    np.testing.assert_allclose(morphed, faces * 0.25, rtol=1e-6)


def test_alignment_puts_the_mean_face_where_deepfacelive_does() -> None:
    template = load_dfm_template()
    face = placed_face(180.0, 0.3, (300.0, 200.0))
    matrix = whole_face_matrix(face, template, 224)
    # the template's unit square sits at the crop centre, side R / coverage, raised by 0.08
    expected = (template.points - [0.5, 0.42]) * (224 / 2.2) + 112.0
    np.testing.assert_allclose(transform(face, matrix), expected, atol=1e-6)
    wider = whole_face_matrix(face, template, 224, AlignOptions(coverage=4.4, y_offset=0.0))
    np.testing.assert_allclose(transform(face, wider),
                               (template.points - 0.5) * (224 / 4.4) + 112.0, atol=1e-6)


def test_moving_parts_do_not_move_the_crop() -> None:
    template = load_dfm_template()
    face = placed_face(150.0, -0.2, (320.0, 240.0))
    opened = face.copy()
    moving = np.setdiff1d(np.arange(468), template.rigid)
    opened[moving] += np.random.default_rng(1).normal(0, 8, (len(moving), 2))
    np.testing.assert_allclose(whole_face_matrix(opened, template, 224),
                               whole_face_matrix(face, template, 224), atol=1e-9)
    with_them = whole_face_matrix(opened, template, 224, AlignOptions(rigid_only=False))
    assert np.abs(with_them - whole_face_matrix(face, template, 224)).max() > 1e-3


def test_the_dfm_template_is_ours_normalised() -> None:
    """Derived from our template by the documented fixed similarity; no data file."""
    template, ours = load_dfm_template(), load_template().astype(np.float64)
    np.testing.assert_allclose(template.points, transform(ours, dfm_normalisation()), atol=1e-9)
    assert template.rigid == RIGID_POINTS
    height = np.ptp(template.points[list(FACE_OVAL), 1])  # the outline: 0.8 of our square
    assert abs(height - 0.8 * DFM_TEMPLATE_SCALE) < 1e-3


def test_similarity_and_invert_round_trip() -> None:
    points = np.random.default_rng(2).random((20, 2)) * 100
    moved = points @ np.array([[0.8, -0.6], [0.6, 0.8]]).T * 1.5 + 7.0
    fitted = similarity(points, moved)
    np.testing.assert_allclose(transform(points, fitted), moved, atol=1e-9)
    np.testing.assert_allclose(transform(transform(points, fitted), invert(fitted)), points,
                               atol=1e-9)


def test_mask_fades_to_the_crop_border() -> None:
    faded = erode_blur(np.ones((96, 96), np.float32), erode=5, blur=25)
    assert faded[0].max() < 0.05 and faded[:, -1].max() < 0.05
    assert faded[48, 48] > 0.99
    assert erode_blur(np.ones((96, 96), np.float32), 0, 0).min() == 1.0


def smooth_frame() -> np.ndarray:
    """A 480x640 frame of smooth colour ramps (resampling changes it little)."""
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
    channels = [xs / 640 * 200 + 20, ys / 480 * 200 + 30, (xs + ys) / 1120 * 150 + 50]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def test_identity_model_leaves_the_frame_and_swap_model_swaps(tmp_path: Path) -> None:
    frame, template = smooth_frame(), load_dfm_template()
    face = placed_face(120.0, 0.1, (320.0, 240.0))
    identity = read_dfm(identity_dfm(tmp_path / "identity.dfm", 224))
    same = swap_frame(frame, [face], session(identity.path), identity, template)
    assert np.abs(same.astype(int) - frame.astype(int)).max() <= 2
    swap = read_dfm(channel_swap_dfm(tmp_path / "swap.dfm", 224))
    swapped = swap_frame(frame, [face], session(swap.path), swap, template)
    centre = cv2.transform(np.array([[[0.5, 0.5]]]), invert(whole_face_matrix(face, template, 1)))
    x, y = np.rint(centre[0, 0]).astype(int)
    np.testing.assert_allclose(swapped[y, x].astype(int), frame[y, x, ::-1].astype(int), atol=2)
    assert (swapped[0, 0] == frame[0, 0]).all()


def test_the_crop_and_merge_graphs_match_the_numpy_reference(tmp_path: Path) -> None:
    """networks/dfm_graphs.py (served) against dfm_align/dfm_merge (reference), in PyTorch."""
    frame, template = smooth_frame(), load_dfm_template()
    face = placed_face(120.0, 0.1, (320.0, 240.0))
    landmarks = torch.from_numpy(np.stack([face, face * 0.0])[None]).float()  # slot 1 empty
    presence, largest = torch.tensor([[1.0, 0.0]]), torch.zeros(1, 1, dtype=torch.int32)
    frames = torch.from_numpy(frame[None].copy())
    with torch.no_grad():
        crops, matrices, valid = DfmCrop(96)(frames, landmarks, presence, largest)
    expected = whole_face_matrix(face, template, 96)
    np.testing.assert_allclose(matrices[0, 0].numpy(), expected, atol=2e-3)
    np.testing.assert_allclose(crops[0, 0].numpy(), cut_face(frame, expected, 96), atol=2e-2)
    assert valid.tolist() == [[1.0, 0.0]]
    swap = read_dfm(channel_swap_dfm(tmp_path / "swap.dfm", 96))
    face_mask, celeb, celeb_mask = run_dfm(session(swap.path), swap, crops[0].numpy())
    layers = [torch.from_numpy(x[None]) for x in (face_mask, celeb, celeb_mask)]
    with torch.no_grad():
        merged = DfmMerge(96)(frames, *layers, matrices, valid)[0].numpy()
    reference = merge_face(frame, matrices[0, 0].numpy().astype(np.float64), celeb[0],
                           face_mask[0], celeb_mask[0])
    assert np.abs(merged.astype(int) - reference.astype(int)).max() <= 2
    assert np.abs(merged.astype(int) - frame.astype(int)).max() > 10  # it did swap (B, R differ)
