"""How much each searched parameter matters for each objective: Optuna's PED-ANOVA importance (of
reaching the objective's best `target_quantile` of trials) over the study's completed trials,
computed from the Parquet store's rows, so the report still reads the store alone. PED-ANOVA
rather than Optuna's default fANOVA because it needs no scikit-learn and is fast."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pandas as pd

from search.schema import PARAM, short_label
from search.spec import Objective

MAX_TRIALS = 2000  # beyond this, a fixed-seed sample of them: the picture does not change
MIN_TOP = 5  # trials in the top quantile, at least (PED-ANOVA's advice for a stable estimate)


def target_quantile(trials: int) -> float:
    """The share of trials whose parameters count as "reaching the top": 10%, or more for small
    studies so that at least `MIN_TOP` trials are in it (at most half)."""
    return min(0.5, max(0.1, MIN_TOP / max(trials, 1)))


def param_importances(candidates: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """One row per parameter (its short label as the index), one column per objective, each column
    summing to 1; empty when fewer than two trials or no parameter that varies."""
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial

    params = [
        c
        for c in candidates.columns
        if c.startswith(PARAM) and candidates[c].notna().all() and candidates[c].nunique() > 1
    ]
    if len(candidates) < 2 or not params:
        return pd.DataFrame()
    rows = candidates if len(candidates) <= MAX_TRIALS else candidates.sample(MAX_TRIALS, random_state=0)
    distributions: dict[str, BaseDistribution] = {}
    for column in params:
        values = rows[column]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            distributions[column] = CategoricalDistribution(sorted(values.astype(str).unique()))
        elif pd.api.types.is_integer_dtype(values):
            distributions[column] = IntDistribution(int(values.min()), int(values.max()))
        else:
            distributions[column] = FloatDistribution(float(values.min()), float(values.max()))
    better = {"max": StudyDirection.MAXIMIZE, "min": StudyDirection.MINIMIZE}
    directions = [better[o.direction] for o in objectives]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=directions)
    for record in rows.to_dict("records"):
        chosen = {
            c: str(record[c]) if isinstance(distributions[c], CategoricalDistribution) else record[c]
            for c in params
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=chosen,
                distributions=distributions,
                values=[float(record[o.metric]) for o in objectives],
            )
        )
    evaluator = PedAnovaImportanceEvaluator(target_quantile=target_quantile(len(rows)))
    table = {}
    for i, objective in enumerate(objectives):
        sign = -1.0 if objective.direction == "max" else 1.0  # PED-ANOVA takes lower as better

        def target(trial: FrozenTrial, i: int = i, sign: float = sign) -> float:
            return sign * trial.values[i]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna warns that a multi-objective target is given by hand
            scores = get_param_importances(study, evaluator=evaluator, target=target)
        table[objective.metric] = scores
    frame = pd.DataFrame(table).fillna(0.0)
    frame.index = [short_label(c) for c in frame.index]
    return frame
