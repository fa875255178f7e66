"""Detail cues: what they measure, their fusion with the detector, and the served graph."""

from __future__ import annotations

import io

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from swaptron.export.tensorrt_check import check_model, summary
from swaptron.networks.crops import forensic_crops, forensic_template
from swaptron.networks.detail_cues import CUES, CueFusion, DetailCues, Fusion, hull_mask
from swaptron.networks.fake_score import FakeScorer, ScoreServing
from swaptron.networks.forensics import build_detector
from swaptron.networks.geometry import GraphOptions
from swaptron.training.forensics_serving import fit_fusion
from swaptron.verdicts import DomainRules

SIZE = 256
NAMES = ("FRAME", "LANDMARKS", "PRESENCE")
FUSION = Fusion(0.5, (-1.0, -0.5, -0.8, -0.3), (0.1, 1.5, 0.0, 2.0), (0.3, 0.4, 0.3, 0.5), 0.2)


@pytest.fixture(scope="module")
def face_crop(megamind_face: tuple[torch.Tensor, ...]) -> np.ndarray:
    """The anchor face's forensic crop, uint8 BGR [SIZE,SIZE,3]."""
    frame, landmarks, _ = megamind_face
    crops, _ = forensic_crops(frame, landmarks, forensic_template(SIZE), SIZE)
    return np.ascontiguousarray(
        (crops[0].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8))


def cues_of(*images: np.ndarray) -> np.ndarray:
    """DetailCues of uint8 BGR crops -> [N,CUES]."""
    faces = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return DetailCues(SIZE)(faces).numpy()


def test_a_blurred_face_in_a_sharp_photo_loses_detail_against_its_surroundings(
        face_crop: np.ndarray) -> None:
    """The swap's signature: the face alone blurred (as our autoencoder draws it) lowers the
    face-against-ring cues far more than blurring the whole photo does."""
    inner = hull_mask(forensic_template(SIZE).numpy(), SIZE, 1.0)[..., None] > 0
    blurred = cv2.GaussianBlur(face_crop, (0, 0), 1.5)
    face_only = np.where(inner, blurred, face_crop)
    original, whole, swapped_like = cues_of(face_crop, blurred, face_only)
    assert swapped_like[0] < original[0] - 0.5  # fine detail inside against the ring
    assert swapped_like[2] < original[2] - 0.2  # fine/coarse ratio inside against the ring
    assert abs(whole[0] - original[0]) < abs(swapped_like[0] - original[0]) / 2
    assert swapped_like[3] < original[3]  # fine detail inside


def test_cues_on_a_chroma_channel_are_blind_to_a_luma_only_shift(face_crop: np.ndarray) -> None:
    """The provenance mark shifts B, G and R alike: luma cues read it as detail, cues on a
    chroma channel (training/cue_channels.py) do not."""
    rng = np.random.default_rng(28)
    shift = rng.choice([-3.0, 3.0], size=(SIZE, SIZE, 1))  # a fine luma-only pattern
    marked = face_crop.astype(np.float32) + shift
    faces = torch.from_numpy(np.stack([face_crop.astype(np.float32), marked])).permute(
        0, 3, 1, 2) / 255.0
    with torch.no_grad():
        luma = DetailCues(SIZE)(faces).numpy()
        chroma = DetailCues(SIZE, (-0.114, -0.587, 0.701))(faces).numpy()
    assert np.abs(luma[1] - luma[0]).max() > 0.1
    np.testing.assert_allclose(chroma[1], chroma[0], atol=1e-4)


def test_a_crop_too_small_for_the_cues_is_refused() -> None:
    with pytest.raises(ValueError, match="no margin"):
        DetailCues(32)


def test_a_fusion_survives_the_detector_file_and_refuses_bad_shapes() -> None:
    assert Fusion.from_dict(FUSION.to_dict()) == FUSION
    with pytest.raises(ValueError, match="weights"):
        Fusion(1.0, (1.0,), (0.0,), (1.0,), 0.0)
    with pytest.raises(ValueError, match="positive"):
        Fusion(1.0, (1.0,) * CUES, (0.0,) * CUES, (1.0, 1.0, 0.0, 1.0), 0.0)


def test_the_fusion_weighs_the_cue_that_tells_real_from_swapped() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    logits = rng.normal(0.0, 1.0, len(labels))  # a detector that knows nothing
    cues = rng.normal(0.0, 1.0, (len(labels), CUES))
    cues[:, 2] -= 2.0 * labels  # swaps lose detail against their ring
    fusion = fit_fusion(logits, cues, labels)
    assert fusion.weights[2] < 0.0
    assert abs(fusion.weights[2]) > 3 * max(abs(w) for i, w in enumerate(fusion.weights)
                                            if i != 2)
    assert abs(fusion.logit_weight) < abs(fusion.weights[2])


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")
def test_the_fused_served_graph_passes_the_tensorrt_check_and_matches_torch(
        megamind_face: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    frame, landmarks, presence = megamind_face
    torch.manual_seed(0)
    detector = CueFusion(build_detector("meso4", SIZE).eval(), SIZE, FUSION).eval()
    serving = ScoreServing(real_below=0.3, threshold=0.6, rules=DomainRules())
    scorer = FakeScorer(detector, SIZE, GraphOptions(fixed_shapes=True), serving).eval()
    with torch.no_grad():
        crops, _ = forensic_crops(frame, landmarks, scorer.template, SIZE)
        raw = float(detector.detector(crops).reshape(-1)[0])
        cues = detector.cues(crops)[0].numpy()
        got = float(scorer(frame, landmarks, presence)[0, 0])
    spread, mean = np.array(FUSION.spread), np.array(FUSION.mean)
    fused = FUSION.logit_weight * raw + float(
        np.dot(FUSION.weights, (cues - mean) / spread)) + FUSION.bias
    assert got == pytest.approx(float(1.0 / (1.0 + np.exp(-fused))), abs=1e-5)
    buffer = io.BytesIO()
    torch.onnx.export(scorer, megamind_face, buffer, dynamo=False, opset_version=17,
                      input_names=list(NAMES), output_names=["FAKE_SCORE"])
    findings = check_model(onnx.load_from_string(buffer.getvalue()))
    assert not findings, summary(findings)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    served = session.run(None, {n: t.numpy() for n, t in zip(NAMES, megamind_face,
                                                             strict=True)})[0]
    np.testing.assert_allclose(served, [[got]], atol=1e-4)
