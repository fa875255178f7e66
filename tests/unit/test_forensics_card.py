"""The card's default detector (training/forensics_card.py default_model)."""

from __future__ import annotations

from swaptron.training.forensics_card import default_model


def entry(val_auc: float, ms: float, ood_fpr: float | None) -> dict[str, object]:
    """A card entry with the figures the default reads."""
    ood = {} if ood_fpr is None else {"all": {"fpr_real": ood_fpr, "uncertain_real": 0.05,
                                              "auc_vs_our_swaps": 1.0, "tpr_our_swaps": 0.9}}
    return {"val_auc_vs_our_swaps": 1.0, "val_auc_vs_self_blend": val_auc, "ms_per_face": ms,
            "auc_vs_our_swaps": 0.999, "out_of_domain": ood}


def test_a_detector_that_accuses_real_photos_is_never_the_default() -> None:
    entries = {"meso4": entry(0.85, 4.0, 0.0), "sbi": entry(0.93, 8.4, 0.105),
               "dldfd": entry(0.99, 96.0, 0.0)}
    assert default_model(entries) == "meso4"  # sbi validates better, dldfd is too slow
    entries["meso4"] = entry(0.85, 4.0, 0.0526)
    assert default_model(entries) == "sbi"  # none within budget holds: the validation pick
    entries["meso4"] = entry(0.85, 4.0, None)
    assert default_model(entries) == "meso4"  # no stills measured: nothing to gate on
