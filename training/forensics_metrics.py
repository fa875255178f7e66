"""Ranking figures of a detector's scores: AUC, ROC and EER."""

from __future__ import annotations

import numpy as np


def auc(real: np.ndarray, fake: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    if len(real) == 0 or len(fake) == 0:
        return float("nan")
    both = np.concatenate([real, fake])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    sorted_scores = both[order]
    position = 0
    while position < len(both):  # average ranks over ties
        end = position
        while end + 1 < len(both) and sorted_scores[end + 1] == sorted_scores[position]:
            end += 1
        ranks[order[position:end + 1]] = (position + end) / 2.0 + 1.0
        position = end + 1
    fake_ranks = ranks[len(real):].sum()
    return float((fake_ranks - len(fake) * (len(fake) + 1) / 2.0) / (len(real) * len(fake)))


def roc(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates over every threshold."""
    thresholds = np.unique(np.concatenate([real, fake, [np.inf]]))[::-1]
    fpr = np.array([(real >= t).mean() for t in thresholds])
    tpr = np.array([(fake >= t).mean() for t in thresholds])
    return fpr, tpr


def eer(real: np.ndarray, fake: np.ndarray) -> float:
    """Equal error rate: where the false-positive and false-negative rates meet."""
    fpr, tpr = roc(real, fake)
    gap = np.abs(fpr - (1.0 - tpr))
    point = int(gap.argmin())
    return float((fpr[point] + 1.0 - tpr[point]) / 2.0)
