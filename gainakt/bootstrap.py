"""Student-level bootstrap intervals for every metric of one model on one split (`eval --bootstrap`).

Students are the unit that is sampled: the positions of one student are not independent, so
resampling positions would understate the noise. Each resample draws as many students as the
split has, with repetition, and recomputes every metric of `EvalMetrics` on their windows;
`mastery_lift` is paired, measured on each resample against the best baseline's `mastery_corr`
on the same students. Intervals are percentile intervals (scipy.stats.bootstrap); a resample
on which a metric is undefined (NaN) is left out of that metric's interval.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import numpy as np

from . import metrics
from .evaluate import Observations, eval_metrics
from .schema import EvalMetrics

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


def bootstrap_intervals(
    model: Observations,
    baselines: Mapping[str, Observations],
    resamples: int,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Interval]:
    """A percentile interval for every metric of `EvalMetrics` over `resamples` student resamples;
    `progress(k)` is called after the k-th resample."""
    if resamples < 2:
        raise ValueError(f"a bootstrap needs at least 2 resamples, got {resamples}")
    names = [f.name for f in fields(EvalMetrics)]
    done = 0

    def statistic(students: np.ndarray) -> np.ndarray:
        nonlocal done
        lookups = [b.resample(students) for b in baselines.values()]
        against = max(
            (c for o in lookups if not math.isnan(c := metrics.pearson(o.next_mastery, o.next_response))),
            default=math.nan,
        )
        values = eval_metrics(model.resample(students), against).as_dict()
        done += 1
        if progress is not None:
            progress(done)
        return np.array([float(values[name]) for name in names])

    from scipy import stats  # here: half a second of every import of a run folder's reader otherwise

    students = np.unique(model.student)
    with warnings.catch_warnings():  # a metric fixed by construction has a degenerate distribution
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (students,),
            statistic,
            vectorized=False,
            n_resamples=resamples,
            method="percentile",
            confidence_level=confidence,
            rng=np.random.default_rng(seed),
        )
    tail = 100 * (1 - confidence) / 2
    out = {}
    for name, draws in zip(names, result.bootstrap_distribution):
        finite = draws[np.isfinite(draws)]
        low, high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (math.nan, math.nan)
        out[name] = Interval(float(low), float(high))
    return out


def stderr_progress(total: int) -> Callable[[int], None]:
    """One line on stderr at every tenth of `total`."""
    step = max(1, total // 10)

    def report(done: int) -> None:
        if done % step == 0 or done == total:
            print(f"bootstrap: {done}/{total} resamples", file=sys.stderr, flush=True)

    return report
