"""Pareto analysis over the trial table: the non-dominated trials for any objectives."""

from __future__ import annotations

from collections.abc import Sequence

import moocore
import numpy as np
import pandas as pd

from .spec import Objective


def usable(trials: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Completed trials whose every objective is a number."""
    if not len(trials):
        return trials
    done = trials[trials["status"] == "COMPLETED"]
    values = done[[o.metric for o in objectives]].astype(float)
    return done[np.isfinite(values.to_numpy()).all(axis=1)]


def front(trials: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """The non-dominated usable trials (ties kept), best first on the first objective."""
    candidates = usable(trials, objectives)
    if not len(candidates):
        return candidates
    points = candidates[[o.metric for o in objectives]].to_numpy(dtype=float)
    keep = moocore.is_nondominated(points, maximise=[o.direction == "max" for o in objectives], keep_weakly=True)
    first = objectives[0]
    return candidates[keep].sort_values(first.metric, ascending=first.direction == "min", ignore_index=True)
