"""Statistics of repeated runs: the figures a confirmation reports, pure functions of a runs table.

A runs table has one row per (source trial, seed, fold): the columns `source`, `seed`, `fold`
and one column per metric. From it:

- `summarize`: per source trial and metric, the mean, the sample standard deviation and the
  95% t interval of the mean over its seeds x folds (scipy.stats.t), and the number of runs;
- `paired_difference`: the difference of two source trials on one metric, paired on the
  (seed, fold) both have, with the t interval of its mean: common seeds cancel the noise the
  two runs share, so the paired interval is the one to judge a difference by;
- `robust_front`: the non-dominated source trials on their means, each with the trials it is
  not distinguishable from: those whose paired interval includes 0 on every objective.

With a single run there is no interval (NaN bounds); NaN runs are left out of a metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from search.analysis import pareto
from search.schema import TrialStatus, split_column
from search.spec import Objective

CONFIDENCE = 0.95
SOURCE, SEED, FOLD = "source", "seed", "fold"
INDISTINGUISHABLE = "indistinguishable_from"


@dataclass(frozen=True)
class Estimate:
    """The mean of some runs with its t interval."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        mean = float(x.mean())
        if x.size < 2:
            return cls(mean, math.nan, math.nan, math.nan, 1)
        std = float(x.std(ddof=1))
        if std == 0:
            return cls(mean, 0.0, mean, mean, int(x.size))
        from scipy import stats  # here: importing scipy.stats takes seconds, and most reports need none

        low, high = stats.t.interval(confidence, x.size - 1, loc=mean, scale=std / math.sqrt(x.size))
        return cls(mean, std, float(low), float(high), int(x.size))

    def includes(self, value: float) -> bool:
        """Whether `value` lies in the interval; True where there is no interval (nothing is shown)."""
        return math.isnan(self.low) or self.low <= value <= self.high


def shown(mean: float, low: float, high: float) -> str:
    """`0.7265 [0.7216, 0.7306]`, or the mean alone where there is no interval."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if math.isnan(low) else f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def shown_column(frame: pd.DataFrame, metric: str, mean: str | None = None) -> list[str]:
    """`shown` for every row of a `summarize`-style frame: mean in `mean` (default `METRIC.mean`),
    bounds in `METRIC.low` and `METRIC.high`."""
    means = frame[mean or f"{metric}.mean"]
    return [shown(*v) for v in zip(means, frame[f"{metric}.low"], frame[f"{metric}.high"])]


def confirmed_split(table: pd.DataFrame) -> str:
    """The split a confirm table was scored on: test when it has test figures, else validation."""
    return "test" if any(c.startswith("test.") for c in table.columns) else "valid"


def confirmed_runs(table: pd.DataFrame, metrics: Sequence[str], split: str) -> pd.DataFrame:
    """The completed rows of a confirm table (`search/run/confirm.py`), `split.METRIC` renamed `METRIC`."""
    done = table[table["status"] == TrialStatus.COMPLETED.value]
    return done.rename(columns={split_column(split, m): m for m in metrics})


def summarize(runs: pd.DataFrame, metrics: Sequence[str], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per source trial: `METRIC.mean`, `.std`, `.low`, `.high` for each metric, and `runs`."""
    rows = []
    for source, group in runs.groupby(SOURCE, sort=True):
        row: dict[str, object] = {SOURCE: source, "runs": len(group)}
        for metric in metrics:
            estimate = Estimate.of(pd.to_numeric(group[metric], errors="coerce"), confidence)
            row.update(
                {f"{metric}.{part}": getattr(estimate, part) for part in ("mean", "std", "low", "high")}
            )
        rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(
    runs: pd.DataFrame, a: str, b: str, metric: str, confidence: float = CONFIDENCE
) -> Estimate:
    """Source trial a minus b on `metric`, paired on the (seed, fold) both were run with."""
    keys = [SEED, FOLD]
    left = runs.loc[runs[SOURCE] == a, [*keys, metric]]
    right = runs.loc[runs[SOURCE] == b, [*keys, metric]]
    both = left.merge(right, on=keys, suffixes=("_a", "_b"))
    difference = pd.to_numeric(both[f"{metric}_a"], errors="coerce") - pd.to_numeric(
        both[f"{metric}_b"], errors="coerce"
    )
    return Estimate.of(difference, confidence)


def distinguishable(
    runs: pd.DataFrame, a: str, b: str, objectives: Sequence[Objective], confidence: float = CONFIDENCE
) -> bool:
    """Whether a and b differ on some objective: its paired interval excludes 0."""
    return any(not paired_difference(runs, a, b, o.metric, confidence).includes(0.0) for o in objectives)


def robust_front(
    runs: pd.DataFrame, objectives: Sequence[Objective], confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """The source trials non-dominated on their means (`summarize` columns), best first, each with
    the other source trials it cannot be told apart from (`indistinguishable_from`, a list)."""
    summary = summarize(runs, [o.metric for o in objectives], confidence)
    means = summary.rename(columns={f"{o.metric}.mean": o.metric for o in objectives})
    values = pareto.objective_values(means, objectives)
    keep = np.isfinite(values).all(axis=1)
    candidates = means[keep]
    if not len(candidates):
        return candidates.assign(**{INDISTINGUISHABLE: []})
    front = candidates[pareto.nondominated(values[keep], objectives)].copy()
    sources = list(summary[SOURCE])
    front[INDISTINGUISHABLE] = [
        [
            other
            for other in sources
            if other != s and not distinguishable(runs, s, other, objectives, confidence)
        ]
        for s in front[SOURCE]
    ]
    first = objectives[0]
    return front.sort_values(first.metric, ascending=first.direction == "min", kind="stable").reset_index(
        drop=True
    )
