"""Forgery detectors: shapes, the ImageNet EfficientNet-Lite0 port, ONNX export, MACs."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from skimage import data
from torch import nn

from swaptron import assets
from swaptron.export.tensorrt_check import check_model, summary
from swaptron.networks.crops import forensic_crops
from swaptron.networks.fake_score import BAND_MARGIN, FakeScorer, ScoreServing, domain_facts
from swaptron.networks.forensics import (
    DEFAULT_INPUT_SIZE,
    DETECTOR_NAMES,
    LITE0_MEAN,
    LITE0_STD,
    DeepStem,
    Dldfd,
    FaceNormalization,
    MeanLogit,
    Meso4,
    SbiDetector,
    build_detector,
    build_members,
    dldfd_widened_stem_extra_macs,
    load_efficientnet_lite0,
    multiply_accumulates,
    same_padding,
)
from swaptron.networks.geometry import GraphOptions
from swaptron.verdicts import DomainRules

SMALL_SIZE = {"meso4": 64, "dldfd": 64, "sbi": 96}  # fast shape checks
EXPORT_SIZE = {"meso4": 256, "dldfd": 64, "sbi": 224}
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def detector(name: str, size: int) -> nn.Module:
    """A detector in eval mode with every BatchNorm and the residual stem made non-trivial (as
    after training), so an export check covers every branch."""
    torch.manual_seed(0)
    model = build_detector(name, size)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, std=0.1)
            module.running_mean.normal_(std=0.1)
            module.running_var.uniform_(0.5, 1.5)
        elif isinstance(module, DeepStem):
            nn.init.normal_(module.reduce.weight, std=0.02)
    return model.eval()


def faces(count: int, size: int) -> torch.Tensor:
    """Random BGR faces in [0,1]."""
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(count))


@pytest.fixture(scope="module")
def lite0_checkpoint() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict (skips when it was not fetched)."""
    path = assets.cached_path(assets.EFFICIENTNET_LITE0)
    if not path.is_file():
        pytest.skip(f"{path} is missing: `swaptron weights` fetches it")
    return path


def photo_batch(size: int) -> torch.Tensor:
    """skimage's chelsea (a tabby cat) and coffee, centre-cropped square, resized, BGR [0,1]."""
    crops = []
    for image in (data.chelsea(), data.coffee()):
        height, width = image.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = image[top:top + side, left:left + side, ::-1]
        crops.append(cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA))
    batch = np.stack(crops).astype(np.float32) / 255.0
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("count", [1, 3])
def test_detectors_give_one_finite_logit_per_face(name: str, count: int) -> None:
    model = detector(name, SMALL_SIZE[name])
    with torch.no_grad():
        logits = model(faces(count, SMALL_SIZE[name]))
    assert logits.shape == (count,)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_build_detector_defaults_and_refusals() -> None:
    assert Meso4().input_size == DEFAULT_INPUT_SIZE["meso4"] == 256
    assert isinstance(build_detector("dldfd"), Dldfd)
    with pytest.raises(ValueError, match="meso4, dldfd, sbi"):
        build_detector("xception")
    with pytest.raises(ValueError, match="only 'sbi'"):
        build_detector("meso4", pretrained=Path("weights.pth"))


def test_meso4_refuses_sizes_not_divisible_by_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        Meso4(100)


def test_detectors_refuse_faces_of_another_size() -> None:
    with pytest.raises(ValueError, match=r"\[N,3,64,64\]"):
        Meso4(64)(faces(1, 96))


def test_same_padding_puts_the_odd_pixel_after() -> None:
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(224, 5, 2) == (1, 2)
    assert same_padding(97, 3, 2) == (1, 1)
    assert same_padding(56, 5, 1) == (2, 2)


def test_zero_initialised_stem_is_the_identity_as_a_residual() -> None:
    stem = DeepStem(zero_init=True)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(x + stem(x), x)
    stem = DeepStem()
    assert not torch.equal(x + stem(x), x)
    stem.zero_init_output()
    assert torch.equal(x + stem(x), x)


def test_efficientnet_lite0_classifies_real_photos(lite0_checkpoint: Path) -> None:
    model = load_efficientnet_lite0(lite0_checkpoint, 224).eval()
    normalize = FaceNormalization(LITE0_MEAN, LITE0_STD)
    with torch.no_grad():
        top5 = model(normalize(photo_batch(224))).topk(5, dim=1).indices.tolist()
    assert CAT_CLASSES & set(top5[0]), f"chelsea's top-5 {top5[0]} has no cat class"
    assert COFFEE_CLASSES & set(top5[1]), f"coffee's top-5 {top5[1]} has no espresso/cup/mug"


def test_sbi_backbone_holds_the_imagenet_weights(lite0_checkpoint: Path) -> None:
    checkpoint = torch.load(lite0_checkpoint, map_location="cpu", weights_only=True)
    backbone = SbiDetector(224, pretrained=lite0_checkpoint).backbone.state_dict()
    assert set(checkpoint) - set(backbone) == {"_fc.weight", "_fc.bias"}
    for key, value in backbone.items():
        assert torch.equal(value, checkpoint[key]), key


def test_sbi_starts_as_the_pretrained_backbone(lite0_checkpoint: Path) -> None:
    model = SbiDetector(224, pretrained=lite0_checkpoint).eval()
    photos = photo_batch(224)
    with torch.no_grad():
        got = model.backbone.features(model.normalize(photos) + model.stem(model.normalize(photos)))
        plain = model.backbone.features(FaceNormalization(LITE0_MEAN, LITE0_STD)(photos))
    assert torch.equal(got, plain)


def seed_ensemble(size: int, members: int = 2) -> MeanLogit:
    """A MeanLogit of meso4 detectors that differ (as training seeds do)."""
    networks = []
    for seed in range(members):
        member = detector("meso4", size)
        with torch.no_grad():
            member.classifier[-1].bias.fill_(float(seed))
            member.classifier[2].weight.mul_(1.0 + seed)
        networks.append(member)
    return MeanLogit(networks).eval()


def test_a_seed_ensemble_is_the_mean_of_its_members_logits() -> None:
    ensemble = seed_ensemble(64, 3)
    batch = faces(4, 64)
    with torch.no_grad():
        members = torch.stack([member(batch) for member in ensemble.networks])
        got = ensemble(batch)
    assert not torch.allclose(members[0], members[1])
    torch.testing.assert_close(got, members.mean(dim=0), rtol=0, atol=1e-5)
    assert isinstance(build_members("meso4", 64, 2), MeanLogit)
    assert isinstance(build_members("meso4", 64, 1), Meso4)
    for count in (0, 17):
        with pytest.raises(ValueError, match="1 to 16 members"):
            build_members("meso4", 64, count)
    with pytest.raises(ValueError, match="at least one detector"):
        MeanLogit([])


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")  # the fixed pads of "SAME"
@pytest.mark.parametrize("name", [*DETECTOR_NAMES, "meso4 seed ensemble"])
def test_detectors_export_to_onnx_for_tensorrt(name: str) -> None:
    if name == "meso4 seed ensemble":
        size = EXPORT_SIZE["meso4"]
        model: nn.Module = seed_ensemble(size)
    else:
        size = EXPORT_SIZE[name]
        model = detector(name, size)
    buffer = io.BytesIO()
    torch.onnx.export(model, (faces(2, size),), buffer, dynamo=False, opset_version=17,
                      input_names=["faces"], output_names=["logits"],
                      dynamic_axes={"faces": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load_from_string(buffer.getvalue())
    findings = check_model(graph)
    assert not findings, summary(findings)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    batch = faces(2, size)
    with torch.no_grad():
        expected = model(batch).numpy()
    (got,) = session.run(None, {"faces": batch.numpy()})
    assert got.shape == (2,)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * scale)


def test_multiply_accumulates() -> None:
    dldfd = multiply_accumulates(Dldfd(224), 224)
    assert 4.0e9 < dldfd < 4.6e9
    assert multiply_accumulates(Meso4(256), 256) < 0.2e9
    # a 1x1 convolution 3 -> 4 on 8x8 plus a linear 4 -> 2: 8*8*4*3 + 4*2
    tiny = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 2))
    assert multiply_accumulates(tiny, 8) == 8 * 8 * 4 * 3 + 4 * 2
    assert dldfd_widened_stem_extra_macs(224) == (7 * 7 * 192 * 64 - 7 * 7 * 3 * 64) * 112 * 112


def served_scorer(rules: DomainRules) -> FakeScorer:
    """A meso4 scorer with a calibration and bands, as `swaptron forensics evaluate` commits,
    built for the tensorrt target (fixed shapes)."""
    serving = ScoreServing(scale=0.5, bias=-0.2, real_below=0.3, threshold=0.6, rules=rules)
    return FakeScorer(detector("meso4", 64), 64, GraphOptions(fixed_shapes=True),
                      serving).eval()


def exported_scores(scorer: FakeScorer, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    """The scorer exported to ONNX (checked for TensorRT) and run in ONNX Runtime."""
    buffer = io.BytesIO()
    torch.onnx.export(scorer, inputs, buffer, dynamo=False, opset_version=17,
                      input_names=["FRAME", "LANDMARKS", "PRESENCE"],
                      output_names=["FAKE_SCORE"])
    findings = check_model(onnx.load_from_string(buffer.getvalue()))
    assert not findings, summary(findings)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    names = ("FRAME", "LANDMARKS", "PRESENCE")
    return session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0]


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")
def test_the_served_score_is_calibrated_in_domain_and_banded_outside(
        megamind_face: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    frame, landmarks, presence = megamind_face
    assert presence[0, 0] > 0.5
    inside = served_scorer(DomainRules())
    with torch.no_grad():
        crops, _ = forensic_crops(frame, landmarks, inside.template, 64)
        logit = inside.detector(crops)[0]
        got = inside(frame, landmarks, presence)[0, 0]
    assert float(got) == pytest.approx(float(torch.sigmoid(0.5 * logit - 0.2)), abs=1e-6)
    np.testing.assert_allclose(exported_scores(inside, megamind_face), [[float(got)]],
                               atol=1e-4)
    width, sharpness, luma = domain_facts(crops, landmarks[0])
    assert 100.0 < float(width[0]) < 400.0 and float(sharpness[0]) > 0.0
    assert 20.0 < float(luma[0]) < 235.0
    too_small = served_scorer(DomainRules(min_width_px=float(width[0]) + 1.0))
    too_dark = served_scorer(DomainRules(min_luma=float(luma[0]) + 1.0))
    for scorer in (too_small, too_dark):
        with torch.no_grad():
            assert not scorer.inside(crops, landmarks)[0, 0]
            banded = float(scorer(frame, landmarks, presence)[0, 0])
        assert banded == pytest.approx(min(max(float(got), 0.3), 0.6 - BAND_MARGIN), abs=1e-6)
        np.testing.assert_allclose(exported_scores(scorer, megamind_face), [[banded]],
                                   atol=1e-4)


def test_the_serving_survives_the_detector_file(tmp_path: Path) -> None:
    serving = ScoreServing(0.7, 0.1, 0.2, 0.5, DomainRules(30.0, 2.0, 25.0, 240.0))
    assert ScoreServing.from_dict(serving.to_dict()) == serving
    with pytest.raises(ValueError, match="real_below"):
        FakeScorer(detector("meso4", 64), 64, serving=ScoreServing(real_below=0.7,
                                                                   threshold=0.6))
