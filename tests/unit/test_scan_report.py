"""What `swaptron scan` concludes: three verdicts from the served cuts, per frame and per clip."""

from __future__ import annotations

from swaptron.client.scan_report import NO_FACES, clip_verdict, stretches, summary_lines
from swaptron.verdicts import Cuts

CUTS = Cuts(threshold=0.8, real_below=0.5)


def test_a_clip_is_what_most_of_its_frames_say_else_uncertain() -> None:
    assert clip_verdict([0.9, 0.95, 0.1], CUTS)["verdict"] == "likely swapped"
    assert clip_verdict([0.1, 0.2, 0.9], CUTS)["verdict"] == "likely real"
    mixed = clip_verdict([0.1, 0.6, 0.9, 0.7], CUTS)
    assert mixed["verdict"] == "uncertain"
    assert mixed["verdict_shares"] == {"likely real": 0.25, "uncertain": 0.5,
                                       "likely swapped": 0.25}
    assert clip_verdict([], CUTS)["verdict"] == NO_FACES


def test_a_score_at_the_threshold_is_not_swapped_and_old_servers_have_two_verdicts() -> None:
    assert CUTS.band(0.8) == "uncertain" and CUTS.band(0.8001) == "likely swapped"
    assert CUTS.band(0.4999) == "likely real" and CUTS.band(0.5) == "uncertain"
    two = Cuts(threshold=0.3, real_below=0.3)  # a config without real_below
    assert {two.band(0.29), two.band(0.31)} == {"likely real", "likely swapped"}


def test_stretches_cover_the_frames_above_the_threshold() -> None:
    times = [0.0, 0.5, 1.0, 1.5, 2.0]
    scores = [0.9, 0.95, None, 0.2, 0.85]
    assert stretches(times, scores, 0.8, 2.0) == [{"start_s": 0.0, "end_s": 1.0},
                                                  {"start_s": 2.0, "end_s": 2.5}]


def test_the_summary_names_the_verdict_cuts_and_credentials() -> None:
    report = {"verdict": "uncertain", "frames_read": 4, "frames_with_faces": 4,
              "frames_failed": 0, "frames_per_second": 9.0, "threshold": 0.8,
              "real_below": 0.5, "detector": "meso4", "card": {"fpr_real": 0.0},
              "stretches_above_threshold": [], "credentials": None,
              **clip_verdict([0.1, 0.6, 0.9, 0.7], CUTS)}
    text = "\n".join(summary_lines(report))
    assert "verdict: uncertain" in text and "likely real under 0.5" in text
    assert "credentials: none" in text
