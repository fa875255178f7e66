"""Extraction, training and the committed demo weights."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from swaptron import assets
from swaptron.networks.autoencoder import FaceAutoencoder
from swaptron.training.evaluate import TARGETS
from swaptron.training.extract import ExtractError, extract, parse_ranges
from swaptron.training.train import TrainOptions, load_faces, train

CARD_KEYS = ("recon_error", "swap_rate", "pose_error_deg", "mouth_corr", "seam_ratio", "steps",
             "minutes")


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty Megamind frames of each character, extracted with the detector and landmarker."""
    output = tmp_path_factory.mktemp("dataset")
    counts = extract(assets.demo_video(), ["a=20-39", "b=100-119"], output, 64)
    assert counts == {"a": 20, "b": 20}
    return output


def test_extract_writes_aligned_faces_of_the_right_size(small_dataset: Path) -> None:
    meta = json.loads((small_dataset / "a" / "meta.json").read_text())
    assert meta["face_size"] == 64
    faces = meta["faces"]
    assert [f["frame"] for f in faces] == list(range(20, 40))
    assert sum(f["split"] == "holdout" for f in faces) == 4  # every fifth face
    for record in faces:
        image = cv2.imread(str(small_dataset / "a" / "faces" / record["file"]))
        mask = cv2.imread(str(small_dataset / "a" / "masks" / record["file"]),
                          cv2.IMREAD_GRAYSCALE)
        assert image.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert mask.max() == 255 and mask[0, 0] == mask[63, 63] == 0
        rows, columns = np.nonzero(mask > 128)
        assert 16 < rows.mean() < 48 and 16 < columns.mean() < 48  # the face is in the middle
        assert len(record["landmarks"]) == 468
        left, top, right, bottom = record["box"]
        centre = np.array(record["landmarks"]).mean(axis=0)
        assert left < centre[0] < right and top < centre[1] < bottom
    # the two characters' aligned faces differ more than frames of one character
    a = load_faces(small_dataset, "a").images
    b = load_faces(small_dataset, "b").images
    within = (a[1:] - a[:-1]).abs().mean()
    between = (a[: len(b)] - b[: len(a)]).abs().mean()
    assert between > within


def test_frame_ranges_are_parsed_and_checked() -> None:
    assert parse_ranges("0-3,7,9-10") == [0, 1, 2, 3, 7, 9, 10]
    with pytest.raises(ExtractError, match="bad frame range"):
        parse_ranges("0-x")
    with pytest.raises(ExtractError, match="ends before it starts"):
        parse_ranges("9-3")


def test_a_few_steps_lower_the_loss(small_dataset: Path, tmp_path: Path) -> None:
    options = TrainOptions(dataset=small_dataset, output=tmp_path, steps=40, batch_size=8,
                           learning_rate=1e-3, seed=1, threads=2)
    model, history = train(options)
    assert history.steps == 40
    first, last = np.mean(history.losses[:5]), np.mean(history.losses[-5:])
    assert last < 0.9 * first, (first, last)
    reloaded = FaceAutoencoder.load(tmp_path / "autoencoder.safetensors")
    faces = load_faces(small_dataset, "a").images[:2]
    with torch.no_grad():
        np.testing.assert_allclose(reloaded(faces, "b")[0], model(faces, "b")[0], atol=1e-6)
    _, more = train(TrainOptions(dataset=small_dataset, output=tmp_path, steps=45,
                                       batch_size=8, resume=True, threads=2))
    assert more.steps == 45 and len(more.losses) == 45


@pytest.mark.parametrize(("pair", "identities"), [("megamind", {"a", "b"}),
                                                  ("people", {"m", "w"})])
def test_committed_weights_and_cards(pair: str, identities: set[str]) -> None:
    weights = assets.pair_weights(pair)
    assert weights.is_file(), f"{pair} weights missing: make demo-weights or people-weights"
    assert weights.stat().st_size < 50 * 1024 * 1024
    model = FaceAutoencoder.load(weights)
    assert model.preset.name == "lite" and model.preset.face_size == 64
    assert set(model.decoders) == identities
    card = json.loads((weights.parent / "card.json").read_text())
    for key in CARD_KEYS:
        assert key in card, key
    assert set(card["meets_targets"]) == set(card["targets"]) == set(TARGETS)
    for key, met in card["meets_targets"].items():  # a miss stays visible, never rounded away
        sense, bar = TARGETS[key]
        assert met == (card[key] >= bar if sense == ">=" else card[key] <= bar), key
    directions = {f"{a}2{b}" for a in identities for b in identities if a != b}
    assert set(card["swap_rate_by_direction"]) == directions
    assert (weights.parent / "TRAINING.md").is_file()
    assert (weights.parent / "loss.png").stat().st_size > 1000
