"""What `swaptron scan` concludes from the frames it scored: the verdicts, the stretches of
time above the threshold, the printed summary and the plot.

A frame's score is its most suspicious face's. Each scored frame falls in a band of the served
detector's cuts (swaptron/verdicts.py): above `threshold` "likely swapped", under `real_below`
"likely real", between them "uncertain" (the served graph also holds a face it cannot judge, too
small, blurred or dark, in that band). The clip is "likely swapped" when more than half of its
frames with a face are, "likely real" when more than half are, else "uncertain"; "no faces
found" when no frame has one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from swaptron.client.scan_marks import mark_line
from swaptron.verdicts import LIKELY_REAL, LIKELY_SWAPPED, UNCERTAIN, VERDICTS, Cuts

NO_FACES = "no faces found"


def clip_verdict(scores: list[float], cuts: Cuts) -> dict[str, object]:
    """The clip's verdict from its frames' scores, the share of frames per verdict, and the
    mean score's band."""
    if not scores:
        return {"verdict": NO_FACES, "frames_with_faces": 0, "majority_vote": None,
                "mean_score": None, "verdict_shares": None}
    bands = [cuts.band(score) for score in scores]
    shares = {name: round(bands.count(name) / len(bands), 4) for name in VERDICTS}
    decided = next((name for name in (LIKELY_SWAPPED, LIKELY_REAL) if shares[name] > 0.5),
                   UNCERTAIN)
    mean = float(np.mean(scores))
    return {"verdict": decided, "frames_with_faces": len(scores),
            "majority_vote": shares[LIKELY_SWAPPED], "verdict_shares": shares,
            "mean_score": round(mean, 4), "mean_says": cuts.band(mean)}


def stretches(times: list[float], scores: list[float | None], threshold: float, fps: float
              ) -> list[dict[str, float]]:
    """Runs of consecutive frames scoring above the threshold, in seconds."""
    found: list[dict[str, float]] = []
    start: float | None = None
    last: float | None = None
    for time_s, score in zip(times, scores, strict=True):
        above = score is not None and score > threshold
        if above and start is None:
            start = time_s
        if not above and start is not None and last is not None:
            found.append({"start_s": start, "end_s": round(last + 1.0 / fps, 3)})
            start = None
        last = time_s
    if start is not None and last is not None:
        found.append({"start_s": start, "end_s": round(last + 1.0 / fps, 3)})
    return found


def plot_scores(report: dict[str, object], path: Path) -> None:
    """The frame score over time, the two cuts, and the stretches above the threshold shaded."""
    frames = report["frames"]
    times = [frame["time_s"] for frame in frames]  # type: ignore[union-attr]
    scores = [np.nan if frame["score"] is None else frame["score"]
              for frame in frames]  # type: ignore[union-attr]
    figure = Figure(figsize=(8, 3))
    axes = figure.subplots()
    for stretch in report["stretches_above_threshold"]:  # type: ignore[union-attr]
        axes.axvspan(stretch["start_s"], stretch["end_s"], color="red", alpha=0.15)
    axes.plot(times, scores, color="black", linewidth=1, label="fake score (frame)")
    axes.axhline(report["threshold"], color="red", linestyle="--",  # type: ignore[arg-type]
                 label=f"threshold {report['threshold']}")
    if report.get("real_below") != report["threshold"]:
        axes.axhline(report["real_below"], color="green", linestyle=":",  # type: ignore[arg-type]
                     label=f"real below {report['real_below']}")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("seconds")
    axes.set_ylabel("fake score")
    axes.set_title(f"{report['source']}: {report['verdict']} ({report['detector']})")
    axes.legend(fontsize=7, loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def summary_lines(report: dict[str, object]) -> list[str]:
    """What `swaptron scan` prints."""
    card = report["card"]
    figures = ", ".join(f"{key} {value}" for key, value in card.items())  # type: ignore[union-attr]
    lines = [f"verdict: {report['verdict']}",
             f"  frames read {report['frames_read']}, with a face "
             f"{report['frames_with_faces']}, failed {report['frames_failed']} "
             f"({report['frames_per_second']} frames/s)"]
    shares = report.get("verdict_shares")
    if shares:
        lines.append("  frames: " + ", ".join(f"{name} {share:.0%}"  # type: ignore[union-attr]
                                              for name, share in shares.items()))
        lines.append(f"  cuts: likely swapped above {report['threshold']}, likely real under "
                     f"{report['real_below']}; mean score {report['mean_score']} "
                     f"({report['mean_says']})")
        for stretch in report["stretches_above_threshold"][:10]:  # type: ignore[index]
            lines.append(f"  above the threshold from {stretch['start_s']:.2f} s to "
                         f"{stretch['end_s']:.2f} s")
    lines.append(f"  detector {report['detector']} (card: {figures or 'no card'})")
    if report.get("marked") is None:
        lines.append("provenance mark: not read (the server's scan ensemble gives no MARK)")
    else:
        lines.append("provenance mark (swaptron's own, independent of the score above):")
        lines += [mark_line(summary) for summary in report["marks"]]  # type: ignore[union-attr]
    credentials = report.get("credentials")
    lines.append(f"credentials: {credentials}" if credentials else
                 "credentials: none (no C2PA manifest; re-encoding strips one)")
    lines.append("  a forgery score is evidence, not proof: see docs/forensics.md for what it "
                 "can and cannot claim")
    return lines
