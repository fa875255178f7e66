"""The three verdicts: bands, domain rules, shares."""

from __future__ import annotations

import pytest

from swaptron.verdicts import (
    LIKELY_REAL,
    LIKELY_SWAPPED,
    UNCERTAIN,
    DomainFacts,
    DomainRules,
    in_domain,
    verdict,
    verdict_shares,
)


def test_scores_fall_into_three_bands() -> None:
    assert verdict(0.05, real_below=0.2, threshold=0.6) == LIKELY_REAL
    assert verdict(0.2, real_below=0.2, threshold=0.6) == UNCERTAIN  # the lower cut: uncertain
    assert verdict(0.6, real_below=0.2, threshold=0.6) == UNCERTAIN  # at threshold: not above
    assert verdict(0.61, real_below=0.2, threshold=0.6) == LIKELY_SWAPPED


def test_a_face_outside_the_domain_is_uncertain_whatever_its_score() -> None:
    assert verdict(0.99, 0.2, 0.6, inside=False) == UNCERTAIN
    assert verdict(0.01, 0.2, 0.6, inside=False) == UNCERTAIN


def test_equal_cuts_leave_no_uncertain_band() -> None:
    assert verdict(0.49, 0.5, 0.5) == LIKELY_REAL
    assert verdict(0.51, 0.5, 0.5) == LIKELY_SWAPPED


@pytest.mark.parametrize(("real_below", "threshold"), [(0.7, 0.6), (-0.1, 0.5), (0.2, 1.5)])
def test_cuts_out_of_order_are_refused(real_below: float, threshold: float) -> None:
    with pytest.raises(ValueError, match="real_below"):
        verdict(0.5, real_below, threshold)


def test_domain_rules_name_small_blurry_dark_and_bright_faces() -> None:
    rules = DomainRules(min_width_px=40, min_sharpness=5.0, min_luma=30.0, max_luma=230.0)
    assert in_domain(DomainFacts(120.0, 50.0, 120.0), rules)
    assert not in_domain(DomainFacts(39.0, 50.0, 120.0), rules)  # too small
    assert not in_domain(DomainFacts(120.0, 4.0, 120.0), rules)  # too blurry
    assert not in_domain(DomainFacts(120.0, 50.0, 20.0), rules)  # too dark
    assert not in_domain(DomainFacts(120.0, 50.0, 240.0), rules)  # blown out


def test_shares_count_each_verdict() -> None:
    shares = verdict_shares([0.1, 0.4, 0.9, 0.95], 0.2, 0.6, [True, True, True, False])
    assert shares == {LIKELY_REAL: 0.25, UNCERTAIN: 0.5, LIKELY_SWAPPED: 0.25}
    assert verdict_shares([], 0.2, 0.6) == {LIKELY_REAL: 0.0, UNCERTAIN: 0.0,
                                            LIKELY_SWAPPED: 0.0}
    with pytest.raises(ValueError, match="domain flags"):
        verdict_shares([0.1], 0.2, 0.6, [True, False])
