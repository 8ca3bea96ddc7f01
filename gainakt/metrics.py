"""Evaluation metrics, one definition each (docs/metrics.md). Pure functions on numpy arrays.

A series that is constant has no correlation: the functions return NaN, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Groups:
    """The positions of each group of equal keys, as one sort: `order` lists the positions group by
    group (within a group in the order they come), group g taking order[start[g]:start[g] + size[g]]."""

    order: np.ndarray
    start: np.ndarray
    size: np.ndarray

    @classmethod
    def of(cls, keys: np.ndarray) -> Groups:
        keys = np.asarray(keys).ravel()
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        start = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if keys.size else np.zeros(0, int)
        return cls(order, start, np.diff(np.r_[start, keys.size]))

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per group, the sum of `values` (indexed by position)."""
        if not self.size.size:
            return np.zeros(0)
        return np.add.reduceat(np.asarray(values, dtype=np.float64)[self.order], self.start)

    def spread(self, values: np.ndarray) -> np.ndarray:
        """Per group, max - min of `values`."""
        if not self.size.size:
            return np.zeros(0)
        ordered = np.asarray(values, dtype=np.float64)[self.order]
        return np.maximum.reduceat(ordered, self.start) - np.minimum.reduceat(ordered, self.start)

    def each(self, values: np.ndarray) -> np.ndarray:
        """A per-group array spread back to the positions of each group."""
        out = np.empty(self.order.size, dtype=np.float64)
        out[self.order] = np.repeat(values, self.size)
        return out


def pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One integer key per distinct (a[i], b[i]) pair, e.g. per (window, concept)."""
    pairs = np.stack([np.asarray(a).ravel(), np.asarray(b).ravel()], axis=1)
    return np.unique(pairs, axis=0, return_inverse=True)[1].ravel() if len(pairs) else np.zeros(0, dtype=int)


def per_group_pearson(x: np.ndarray, y: np.ndarray, groups: np.ndarray, min_positions: int) -> float:
    """Pearson within each group of at least `min_positions` (non-constant), averaged;
    NaN if no group qualifies."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    g = Groups.of(groups)
    dx = x - g.each(g.sums(x) / np.maximum(g.size, 1))  # deviations from the group's mean
    dy = y - g.each(g.sums(y) / np.maximum(g.size, 1))
    sxx, syy, sxy = g.sums(dx * dx), g.sums(dy * dy), g.sums(dx * dy)
    denominator = np.sqrt(sxx * syy)
    # as `pearson`: a constant series has none (the mean of a constant may round off it)
    qualifies = (g.size >= max(min_positions, 2)) & (g.spread(x) > 0) & (g.spread(y) > 0)
    qualifies &= (denominator > 0) & np.isfinite(denominator)
    return float(np.mean(sxy[qualifies] / denominator[qualifies])) if qualifies.any() else float("nan")


def per_student_pearson(x: np.ndarray, y: np.ndarray, students: np.ndarray, min_positions: int = 5) -> float:
    """Pearson per student (at least `min_positions`, non-constant), averaged; NaN if no student qualifies."""
    return per_group_pearson(x, y, students, min_positions)


NEG_GAIN_TOLERANCE = 1e-6  # a gain counts as negative below -1e-6, not for rounding noise around 0


def neg_gain_rate(gains: np.ndarray) -> float:
    """Share of gain entries (all concepts, real positions) below -NEG_GAIN_TOLERANCE; NaN when empty."""
    gains = np.asarray(gains)
    return float((gains < -NEG_GAIN_TOLERANCE).mean()) if gains.size else float("nan")


SATURATION_MARGIN = 0.01


def saturation(values: np.ndarray, margin: float = SATURATION_MARGIN) -> float:
    """Share of values within `margin` of 0 or of 1; NaN when empty."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if not values.size:
        return float("nan")
    return float(((values <= margin) | (values >= 1 - margin)).mean())


def prospective_correlation(
    mastery: np.ndarray, responses: np.ndarray, groups: np.ndarray, min_attempts: int = 6
) -> float:
    """Pooled Pearson, over groups of at least `min_attempts` attempts in time order, between the mastery
    estimated just before the second half of a group's attempts and the accuracy on that second half.

    `mastery[i]` is the estimate for attempt i made before its answer `responses[i]` was seen; a group is
    one (student, concept). NaN when fewer than two groups qualify or either series is constant.
    """
    mastery, responses = np.asarray(mastery, dtype=np.float64).ravel(), np.asarray(responses).ravel()
    g = Groups.of(groups)
    kept = g.size >= min_attempts
    start, size = g.start[kept], g.size[kept]
    half = size // 2
    before = mastery[g.order[start + half]]
    correct_so_far = np.r_[0.0, np.cumsum(responses[g.order], dtype=np.float64)]  # over the sorted positions
    accuracy = (correct_so_far[start + size] - correct_so_far[start + half]) / (size - half)
    return pearson(before, accuracy)


def monotonicity_violation_rate(before: np.ndarray, after: np.ndarray, correct: np.ndarray) -> float:
    """Share of correct answers after which the answered concept's mastery went down.

    `before[i]`, `after[i]`: mastery of the concept answered at step i, at steps i-1 and i.
    """
    correct = np.asarray(correct).astype(bool).ravel()
    if not correct.any():
        return float("nan")
    return float((np.asarray(after).ravel()[correct] < np.asarray(before).ravel()[correct]).mean())
