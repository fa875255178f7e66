"""The forgery detectors' data and committed weights, on real frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from swaptron import assets
from swaptron.networks.fake_score import ScoreServing, build_scorer
from swaptron.networks.pipeline import PipelineOptions, build_finder, build_pipeline
from swaptron.specs import LANDMARKS, PRESENCE, SWAPPED
from swaptron.training.forensics_card import auc, eer
from swaptron.training.forensics_data import (
    Cropper,
    PrepareError,
    Source,
    prepare,
    split_of,
)
from swaptron.training.forensics_domains import logits_of
from swaptron.training.forensics_ood import MAX_FACES, read_photo
from swaptron.training.forensics_serving import calibrated, choose_serving, fit_platt
from swaptron.training.forensics_train import load_trained
from swaptron.verdicts import LIKELY_SWAPPED, DomainRules, verdict

FORENSICS = assets.weights_root() / "forensics"
UNSEEN_FRAME = 30  # of the unseen video (forensics_data.UNSEEN), never trained on


def test_a_face_free_or_corrupt_source_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(50_000))
    cases = ((Source("empty", assets.footage("no_face.mp4")), "no face found in empty"),
             (Source("broken", corrupt), "cannot decode broken"))
    for source, message in cases:
        output = tmp_path / "dataset"
        with pytest.raises(PrepareError, match=message):
            prepare(output, [source], [assets.demo_weights()])
        assert not output.exists()
        assert not output.with_name("dataset.part").exists()
    with pytest.raises(PrepareError, match="no autoencoder weights"):
        prepare(tmp_path / "dataset", [], [])


def test_videos_split_by_contiguous_segments_with_a_gap() -> None:
    splits = [split_of(index, 100, "megamind") for index in range(100)]
    assert splits[:65] == ["train"] * 65
    assert splits[65:71] == [None] * 6 and splits[71:75] == ["val"] * 4
    assert splits[75:81] == [None] * 6 and splits[81:] == ["test"] * 19
    assert {split_of(index, 72, "single_face") for index in range(72)} == {"unseen"}


def test_auc_and_eer_on_known_scores() -> None:
    assert auc(np.array([0.1, 0.2]), np.array([0.8, 0.9])) == 1.0
    assert auc(np.array([0.8, 0.9]), np.array([0.1, 0.2])) == 0.0
    assert auc(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.5
    assert eer(np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8, 0.9])) == 0.0


@pytest.fixture(scope="module")
def held_out_faces() -> tuple[np.ndarray, np.ndarray]:
    """A real face of the unseen video (a person no detector trained on) and the same frame
    swapped (into b), both cropped the way `prepare` and the served graph crop them."""
    cropper = Cropper(build_finder(max_faces=1), 256)
    frame = assets.read_frames(assets.footage("single_face.mp4"), [UNSEEN_FRAME])[0]
    swapped = build_pipeline(PipelineOptions(max_faces=1, identity="b")).run(
        frame[None])[SWAPPED][0]
    real, fake = cropper.crop(frame), cropper.crop(swapped)
    assert real is not None and fake is not None
    return real[0], fake[0]


def test_the_committed_default_detector_tells_a_held_out_real_face_from_our_swap(
        held_out_faces: tuple[np.ndarray, np.ndarray]) -> None:
    card = json.loads((FORENSICS / "card.json").read_text())
    name = card["default"]
    model, meta = load_trained(FORENSICS / f"{name}.pt")
    threshold = card["models"][name]["threshold"]
    serving = ScoreServing.from_dict(meta["serving"])  # the served calibration
    assert serving.threshold == threshold
    with torch.no_grad():
        logits = logits_of(model, int(meta["input_size"]), list(held_out_faces))
    real, fake = calibrated(logits, serving.scale, serving.bias)
    assert real < threshold < fake, (real, threshold, fake)


def test_the_card_has_the_keys_scripts_read() -> None:
    card = json.loads((FORENSICS / "card.json").read_text())
    for name in ("meso4", "dldfd", "sbi"):
        entry = card["models"][name]
        for key in ("auc_vs_our_swaps", "auc_unseen_generator", "fpr_real", "ms_per_face"):
            assert key in entry, (name, key)
    assert card["default"] in card["models"]
    assert (FORENSICS / "CARD.md").is_file()
    for name in ("meso4", "sbi"):  # committed; dldfd is rebuilt by make forensics-weights
        assert (FORENSICS / f"roc-{name}.png").is_file()
        assert (FORENSICS / f"{name}.pt").stat().st_size < 30 * 2**20


@pytest.mark.parametrize("photo", ["obama.jpg", "astronaut.png"])
def test_the_served_graph_never_calls_a_real_still_photo_swapped(photo: str) -> None:
    """A real photograph of a person no training video shows (face_recognition's test image,
    scikit-image's astronaut), through our finder and the committed default detector's served
    `forensics` graph (calibrated, banded, domain-guarded): "likely real" or "uncertain"."""
    stills = [path for paths in assets.fetch_stills().values() for path in paths
              if path.name == photo]
    card = json.loads((FORENSICS / "card.json").read_text())
    scorer = build_scorer(FORENSICS / f"{card['default']}.pt")
    assert scorer.serving is not None
    image = read_photo(stills[0])
    found = build_finder(MAX_FACES).find(image[None])
    with torch.no_grad():
        scores = scorer(torch.from_numpy(image[None]), torch.from_numpy(found[LANDMARKS]),
                        torch.from_numpy(found[PRESENCE]))[0].numpy()
    faces = scores[found[PRESENCE][0] > 0.5]
    assert len(faces) == 1
    verdicts = [verdict(float(s), scorer.serving.real_below, scorer.serving.threshold)
                for s in faces]
    assert LIKELY_SWAPPED not in verdicts, (photo, faces, scorer.serving)


def test_platt_calibration_recovers_a_known_scale_and_bias() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, 20000)
    labels = rng.random(20000) < calibrated(logits, 0.5, -1.0)
    scale, bias = fit_platt(logits[~labels], logits[labels])
    # class-balanced weighting moves the bias by the log prior odds
    prior = float(np.log((~labels).sum() / labels.sum()))
    assert scale == pytest.approx(0.5, abs=0.05)
    assert bias == pytest.approx(-1.0 + prior, abs=0.1)


def test_the_served_cut_flags_95_percent_of_every_videos_swaps() -> None:
    real = np.linspace(-6.0, -2.0, 200)
    easy, hard = np.linspace(4.0, 8.0, 100), np.linspace(-1.0, 3.0, 100)
    serving = choose_serving(real, np.concatenate([easy, hard]), [easy, hard], DomainRules())
    hard_scores = calibrated(hard, serving.scale, serving.bias)
    real_scores = calibrated(real, serving.scale, serving.bias)
    assert (hard_scores >= serving.threshold).mean() >= 0.95
    assert (real_scores > serving.threshold).mean() <= 0.01
    assert serving.real_below == min(0.5, serving.threshold)
