"""Lookup baselines a model's mastery must beat: estimators with no model inside, fitted on the
training windows only and scored with the same metric code as the model (`gainakt.evaluate`).

Each baseline gives, for every interaction i of a set of windows, `before[i]`: its estimate that
the answer r[i] is correct, from the window's interactions before i only, and `after[i]`: its
estimate for the same concept c[i] once r[i] is known. History is counted within the window, not
over the student's whole sequence, because the model sees one window at a time too.

- `base_rate`: the concept's share of correct answers in the training windows.
- `running_accuracy`: the student's smoothed accuracy on the concept so far in the window.
- `last_response`: the student's last answer on the concept in the window (the base rate before one).
- `pfa`: Performance Factors Analysis, a logistic regression on the earlier successes and failures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import metrics
from .errors import DataError
from .evaluate import Observations, eval_metrics
from .schema import EvalMetrics
from .sequences import Dataset, Sequences

BASELINES: tuple[str, ...] = ("base_rate", "running_accuracy", "last_response", "pfa")

SMOOTHING_GRID = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # running_accuracy's candidate strengths k
PFA_L2 = 1.0  # strength of the N(logit(overall rate), 1 / PFA_L2) prior on each concept's bias
PFA_MAX_STEPS = 50
PFA_TOLERANCE = 1e-9


@dataclass(frozen=True)
class History:
    """Every interaction of a set of windows, window by window, with what the student did earlier on
    the same concept within the same window."""

    index: np.ndarray  # flat index into the windows' arrays (`Sequences.positions()`)
    concept: np.ndarray
    response: np.ndarray
    successes: np.ndarray  # earlier correct answers on this concept in this window
    failures: np.ndarray  # earlier wrong answers on this concept in this window
    last: np.ndarray  # the last earlier answer on this concept in this window; -1 when none

    @classmethod
    def of(cls, windows: Sequences) -> History:
        index = windows.positions()
        concept, response = windows.concepts[index], windows.responses[index]
        window = np.repeat(np.arange(len(windows)), windows.lengths)
        order = np.lexsort((concept, window))  # stable: time order within each (window, concept)
        w, c, r = window[order], concept[order], response[order]
        step = np.arange(order.size)
        first = np.ones(order.size, dtype=bool)
        first[1:] = (c[1:] != c[:-1]) | (w[1:] != w[:-1])
        group_start = np.maximum.accumulate(np.where(first, step, 0))
        earlier_correct = np.cumsum(r) - r
        successes = earlier_correct - earlier_correct[group_start]
        attempts = step - group_start
        last = np.where(first, -1, np.roll(r, 1))

        def unsort(values: np.ndarray) -> np.ndarray:
            out = np.empty_like(values)
            out[order] = values
            return out

        return cls(
            index=index,
            concept=concept,
            response=response,
            successes=unsort(successes),
            failures=unsort(attempts - successes),
            last=unsort(last),
        )


class Baseline(Protocol):
    def estimate(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        """(before, after) for every interaction of `history`, in its order."""
        ...


@dataclass(frozen=True)
class BaseRate:
    """Each concept's share of correct answers in training; the overall share for a concept never seen."""

    rates: np.ndarray  # [concepts]
    overall: float

    @classmethod
    def fit(cls, train: History, num_concepts: int) -> BaseRate:
        size = max(num_concepts, int(train.concept.max(initial=-1)) + 1)
        attempts = np.bincount(train.concept, minlength=size)
        correct = np.bincount(train.concept, weights=train.response, minlength=size)
        overall = float(correct.sum() / attempts.sum())
        safe = np.maximum(attempts, 1)
        return cls(np.where(attempts > 0, correct / safe, overall), overall)

    def of(self, concepts: np.ndarray) -> np.ndarray:
        known = concepts < len(self.rates)
        return np.where(known, self.rates[np.where(known, concepts, 0)], self.overall)

    def estimate(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        rate = self.of(history.concept)
        return rate, rate


@dataclass(frozen=True)
class RunningAccuracy:
    """(successes + k * rate) / (attempts + k): the student's accuracy on the concept so far in the
    window, pulled towards the concept's base rate by k pseudo-attempts.

    k counts pseudo-attempts at the base rate: a small k trusts the student's first answers, a large
    k the concept's rate. It is the value of `SMOOTHING_GRID` whose `before` has the highest AUC on
    the training windows (ties go to the smaller k); ASSIST2015 with validation fold 0 picks k = 8.
    """

    prior: BaseRate
    k: float

    @classmethod
    def fit(cls, train: History, prior: BaseRate) -> RunningAccuracy:
        auc = {k: metrics.roc_auc(train.response, cls(prior, k).estimate(train)[0]) for k in SMOOTHING_GRID}
        return cls(prior, max(SMOOTHING_GRID, key=lambda k: auc[k]))  # max keeps the first of ties

    def estimate(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        s, n = history.successes, history.successes + history.failures
        pseudo = self.k * self.prior.of(history.concept)
        return (s + pseudo) / (n + self.k), (s + history.response + pseudo) / (n + 1 + self.k)


@dataclass(frozen=True)
class LastResponse:
    """The student's last answer on the concept in the window; the base rate before the first."""

    prior: BaseRate

    def estimate(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        before = np.where(history.last >= 0, history.last, self.prior.of(history.concept))
        return before.astype(np.float64), history.response.astype(np.float64)


@dataclass(frozen=True)
class Pfa:
    """Performance Factors Analysis: sigmoid(bias[c] + w_success * log(1 + successes)
    + w_failure * log(1 + failures)), counts of the student's earlier answers on c in the window.

    Fitted by Newton's method on the penalised log-likelihood of the training windows. The penalty,
    a N(logit(overall rate), 1 / PFA_L2) prior on each bias, keeps the bias of a concept answered
    always right (or always wrong) in training finite, and gives a concept never seen the overall rate.
    """

    bias: np.ndarray  # [concepts]
    w_success: float
    w_failure: float
    prior_bias: float  # for a concept beyond `bias`

    @staticmethod
    def features(successes: np.ndarray, failures: np.ndarray) -> np.ndarray:
        return np.stack([np.log1p(successes), np.log1p(failures)], axis=1)

    @classmethod
    def fit(cls, train: History, prior: BaseRate) -> Pfa:
        c, y = train.concept, train.response.astype(np.float64)
        x = cls.features(train.successes, train.failures)  # [n, 2]
        size = len(prior.rates)
        prior_bias = float(_logit(prior.overall))
        theta = np.concatenate([_logit(prior.rates), [0.0, 0.0]])  # start from the base rate

        def objective(theta: np.ndarray) -> float:
            z = theta[c] + x @ theta[size:]
            penalty = 0.5 * PFA_L2 * float(((theta[:size] - prior_bias) ** 2).sum())
            return float((np.logaddexp(0.0, z) - y * z).sum()) + penalty

        current = objective(theta)
        for _ in range(PFA_MAX_STEPS):
            p = _sigmoid(theta[c] + x @ theta[size:])
            residual, weight = p - y, p * (1 - p)
            gradient = np.concatenate(
                [
                    np.bincount(c, weights=residual, minlength=size) + PFA_L2 * (theta[:size] - prior_bias),
                    x.T @ residual,
                ]
            )
            hessian = np.zeros((size + 2, size + 2))
            hessian[np.arange(size), np.arange(size)] = (
                np.bincount(c, weights=weight, minlength=size) + PFA_L2
            )
            cross = np.stack([np.bincount(c, weights=weight * x[:, j], minlength=size) for j in (0, 1)], 1)
            hessian[:size, size:], hessian[size:, :size] = cross, cross.T
            hessian[size:, size:] = x.T @ (weight[:, None] * x)
            step = np.linalg.solve(hessian, gradient)
            scale = 1.0
            while scale > 1e-6 and objective(theta - scale * step) > current:  # halve until no worse
                scale /= 2
            value = objective(theta - scale * step)
            if value > current:  # no descent left at the precision of the objective
                break
            theta, previous, current = theta - scale * step, current, value
            if previous - current <= PFA_TOLERANCE * max(1.0, abs(current)):
                break
        return cls(theta[:size], float(theta[size]), float(theta[size + 1]), prior_bias)

    def probability(self, concepts: np.ndarray, successes: np.ndarray, failures: np.ndarray) -> np.ndarray:
        known = concepts < len(self.bias)
        bias = np.where(known, self.bias[np.where(known, concepts, 0)], self.prior_bias)
        x = self.features(successes, failures)
        return _sigmoid(bias + x @ np.array([self.w_success, self.w_failure]))

    def estimate(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        c, s, f, r = history.concept, history.successes, history.failures, history.response
        return self.probability(c, s, f), self.probability(c, s + r, f + 1 - r)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p) - np.log1p(-p)


# ---------------------------------------------------------------------------- fitting and scoring


def fit_baselines(train: Sequences, num_concepts: int) -> dict[str, Baseline]:
    """Every baseline of `BASELINES`, fitted on the interactions of the `train` windows only."""
    if train.num_interactions == 0:
        raise DataError("no training windows to fit the baselines on (every fold is the validation fold)")
    history = History.of(train)
    rate = BaseRate.fit(history, num_concepts)
    return {
        "base_rate": rate,
        "running_accuracy": RunningAccuracy.fit(history, rate),
        "last_response": LastResponse(rate),
        "pfa": Pfa.fit(history, rate),
    }


def estimates(baseline: Baseline, windows: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) indexed like the windows' flat arrays, as `Observations.from_estimates` takes
    them; NaN at positions outside the windows."""
    history = History.of(windows)
    before, after = np.full(windows.concepts.shape, math.nan), np.full(windows.concepts.shape, math.nan)
    before[history.index], after[history.index] = baseline.estimate(history)
    return before, after


def unpractised_estimates(baseline: Baseline, num_concepts: int) -> np.ndarray:
    """[C] the baseline's estimate for each concept before any practice of it in the window."""
    concepts = np.arange(num_concepts)
    none = np.zeros(num_concepts, dtype=np.int64)
    return baseline.estimate(History(concepts, concepts, none, none, none, none - 1))[0]


def baseline_observations(
    train: Sequences, windows: Sequences, num_concepts: int, fitted: Mapping[str, Baseline] | None = None
) -> dict[str, Observations]:
    """What the metrics look at for each baseline, fitted on `train` (or the `fitted` ones given, to
    score one fit on several splits), on `windows`, in `BASELINES` order."""
    fitted = fitted or fit_baselines(train, num_concepts)
    out = {}
    for name in BASELINES:
        before, after = estimates(fitted[name], windows)
        unpractised = unpractised_estimates(fitted[name], num_concepts)
        out[name] = Observations.from_estimates(windows, before, after, unpractised, num_concepts)
    return out


def baseline_metrics(
    train: Sequences, windows: Sequences, num_concepts: int, fitted: Mapping[str, Baseline] | None = None
) -> dict[str, EvalMetrics]:
    """Every metric of each baseline, fitted on `train` (or given `fitted`) and scored on `windows`, in
    `BASELINES` order."""
    observed = baseline_observations(train, windows, num_concepts, fitted)
    return {name: eval_metrics(obs) for name, obs in observed.items()}


def best_mastery_corr(scores: Mapping[str, EvalMetrics]) -> float:
    """What `mastery_lift` is measured against: the best baseline's `mastery_corr`, NaN when none has one."""
    try:
        return best_baseline(scores)[1].mastery_corr
    except ValueError:
        return math.nan


def best_baseline(scores: Mapping[str, EvalMetrics]) -> tuple[str, EvalMetrics]:
    """The baseline with the highest `mastery_corr` (NaN ones left out); ValueError when none has one."""
    defined = [(name, m) for name, m in scores.items() if not math.isnan(m.mastery_corr)]
    if not defined:
        raise ValueError("no baseline has a defined mastery_corr")
    return max(defined, key=lambda item: item[1].mastery_corr)


def fold_baseline(dataset: Dataset, fold: int) -> float:
    """The best lookup's `mastery_corr` on validation fold `fold`, fitted on the other folds: the
    figure a run's `mastery_lift` is measured against."""
    train, valid = dataset.split(fold)
    return best_mastery_corr(baseline_metrics(train, valid, dataset.num_concepts))
