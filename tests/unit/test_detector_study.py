"""The detector study's pick uses validation figures only (training/detector_study.py)."""

from __future__ import annotations

from swaptron.training.detector_study import pick


def test_the_pick_is_the_lowest_photo_validation_fpr_then_the_highest_auc() -> None:
    rows = [
        {"detector": "served", "photo_val_fpr": 0.02, "photo_val_auc": 0.99,
         "out_of_domain": {"fpr_real": 0.0}},
        {"detector": "new", "photo_val_fpr": 0.01, "photo_val_auc": 0.95,
         "out_of_domain": {"fpr_real": 0.5}},
        {"detector": "other", "photo_val_fpr": 0.01, "photo_val_auc": 0.97,
         "out_of_domain": {"fpr_real": 0.9}},
    ]
    assert pick(rows)["detector"] == "other"  # the stills' figures play no part
    assert pick([rows[0], {**rows[0], "detector": "tie"}])["detector"] == "served"

