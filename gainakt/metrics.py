"""Evaluation metrics, one definition each (DESIGN.md's table). Pure functions on numpy arrays.

A series that is constant has no correlation: the functions return NaN, never 0.
"""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN with one class only."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = average_rank[inverse][labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Share of positions where `p >= 0.5` matches the label; NaN when empty."""
    labels = np.asarray(labels).ravel()
    if labels.size == 0:
        return float("nan")
    return float(((np.asarray(probabilities).ravel() >= 0.5) == labels.astype(bool)).mean())


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN with fewer than two points or a constant series."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:  # the mean of a constant may round off it
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    if denominator == 0 or not np.isfinite(denominator):
        return float("nan")
    return float((dx * dy).sum() / denominator)


def per_student_pearson(x: np.ndarray, y: np.ndarray, students: np.ndarray, min_positions: int = 5) -> float:
    """Pearson per student (at least `min_positions`, non-constant), averaged; NaN if no student qualifies."""
    x, y, students = (np.asarray(a).ravel() for a in (x, y, students))
    order = np.argsort(students, kind="stable")
    x, y, students = x[order], y[order], students[order]
    bounds = np.flatnonzero(np.diff(students)) + 1
    values = [
        pearson(xs, ys)
        for xs, ys in zip(np.split(x, bounds), np.split(y, bounds))
        if xs.size >= min_positions
    ]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def neg_gain_rate(gains: np.ndarray) -> float:
    """Share of gain entries (all concepts, real positions) below 0; NaN when empty."""
    gains = np.asarray(gains)
    return float((gains < 0).mean()) if gains.size else float("nan")


def monotonicity_violation_rate(before: np.ndarray, after: np.ndarray, correct: np.ndarray) -> float:
    """Share of correct answers after which the answered concept's mastery went down.

    `before[i]`, `after[i]`: mastery of the concept answered at step i, at steps i-1 and i.
    """
    correct = np.asarray(correct).astype(bool).ravel()
    if not correct.any():
        return float("nan")
    return float((np.asarray(after).ravel()[correct] < np.asarray(before).ravel()[correct]).mean())
