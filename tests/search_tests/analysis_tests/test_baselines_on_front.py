"""The lookups (and DKT, when confirmed) stand on every front beside the trials, with the constraints
applied: the sweep's front (`pareto.analyse`) and the robust front of a confirmation. The case of
the ASSIST2015 study: trial 32966f0b, saturated and so infeasible, sat on the robust front, and PFA,
left out, dominates it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from search.analysis import pareto
from search.analysis.statistics import FOLD, SEED, SOURCE, left_out, robust_front, robust_table
from search.schema import DOMINATED_BY, FEASIBLE, GUARANTEED, TRIAL_KEY
from search.spec import Constraint, Objective

# The study's objectives and constraints (studies/assist2015.toml), its figures on fold 0
# (docs/results/assist2015.md) and PFA's (docs/metrics.md).
OBJECTIVES = (
    Objective("auc", "max"),
    Objective("mastery_lift", "max"),
    Objective("monotonicity_violation_rate", "min"),
)
CONSTRAINTS = tuple(
    Constraint.parse(c) for c in ("faithfulness > 0", "copy_corr < 0.9", "mastery_saturation < 0.5")
)
TRIALS = {  # auc, mastery_lift, monotonicity, faithfulness, copy_corr, saturation, guaranteed
    "ef68b935": (0.7264, 0.0491, 0.2474, 0.0947, 0.67, 0.0, "residual_share,mastery_pred_corr"),
    "32966f0b": (0.5575, -0.2010, 0.0, 0.0862, 0.12, 0.61, "neg_gain_rate,monotonicity_violation_rate"),
    "632def56": (0.6766, -0.0725, 0.1904, 0.0790, 0.32, 0.0, ""),
}
PFA = {"auc": 0.6975, "mastery_corr": 0.3044, "monotonicity_violation_rate": 0.0, "faithfulness": 0.0989}
LOOKUPS = {
    "pfa": {**PFA, "copy_corr": 0.6064, "mastery_saturation": 0.0},
    "base_rate": {
        "auc": 0.6432,
        "mastery_corr": 0.2201,
        "monotonicity_violation_rate": 0.0,
        "faithfulness": 0.0998,
    },
}
COLUMNS = (
    "auc",
    "mastery_lift",
    "monotonicity_violation_rate",
    "faithfulness",
    "copy_corr",
    "mastery_saturation",
)


def trial_table(names: list[str]) -> pd.DataFrame:
    rows = []
    for number, name in enumerate(names):
        *figures, fixed = TRIALS[name]
        rows.append(
            {
                TRIAL_KEY: name,
                "number": number,
                "status": "COMPLETED",
                **dict(zip(COLUMNS, figures)),
                GUARANTEED: fixed,
            }
        )
    return pd.DataFrame(rows)


def analysed(names: list[str], constraints=CONSTRAINTS) -> pareto.Analysis:
    return pareto.analyse(trial_table(names), pd.DataFrame(), OBJECTIVES, constraints, None, LOOKUPS)


def test_a_lookup_no_trial_beats_stands_on_the_front_and_flags_the_trial_it_dominates():
    analysis = analysed(list(TRIALS))
    front = list(analysis.front[TRIAL_KEY])
    assert sorted(front) == ["baseline:pfa", "ef68b935"]  # 32966f0b's monotonicity 0 is PFA's too
    flagged = analysis.candidates.set_index(TRIAL_KEY)[DOMINATED_BY]
    assert flagged.to_dict() == {"ef68b935": "", "32966f0b": "pfa,base_rate", "632def56": "pfa"}
    lookups = analysis.lookups.set_index(TRIAL_KEY)
    assert lookups.loc["baseline:pfa", "mastery_lift"] == 0.0  # the best lookup's own lift
    assert lookups.loc["baseline:base_rate", "mastery_lift"] == pytest.approx(0.2201 - 0.3044)
    # PFA meets the study's constraints, so it stands on the constrained front beside ef68b935
    assert sorted(analysis.feasible_front[TRIAL_KEY]) == ["baseline:pfa", "ef68b935"]
    assert pareto.verdict(analysis) is None  # a feasible trial no baseline dominates


def test_a_feasible_trial_a_lookup_dominates_is_left_off_the_constrained_front_and_said_first():
    analysis = analysed(["632def56", "32966f0b"])
    assert analysis.candidates.set_index(TRIAL_KEY).loc["632def56", FEASIBLE]  # feasible ...
    assert "632def56" not in set(analysis.feasible_front[TRIAL_KEY])  # ... but PFA beats it
    assert list(analysis.feasible_front[TRIAL_KEY]) == ["baseline:pfa"]
    said = pareto.verdict(analysis)
    assert said == (
        "No trial beats the baselines: the feasible trial is dominated by pfa on auc:max, mastery_lift:max, "
        "monotonicity_violation_rate:min."
    )
    # with targets nothing meets, the sentence says so, and names the lookup that beats every trial
    strict = (Constraint.parse("faithfulness > 0.5"),)
    said = pareto.verdict(analysed(["632def56", "32966f0b"], strict))
    assert said is not None and said.startswith("No trial meets the constraints: none of the 2 usable trials")
    assert said.endswith(
        "and pfa dominates every one on auc:max, mastery_lift:max, monotonicity_violation_rate:min."
    )


def confirm_runs(seeds: int = 5) -> pd.DataFrame:
    """Confirmation runs around the fold-0 figures: 5 seeds per trial, DKT above every trial, and the
    lookups once per fold (deterministic)."""
    rng = np.random.default_rng(0)
    rows = []
    sources = {name: figures[:-1] for name, figures in TRIALS.items()}
    sources["dkt"] = (0.7325, 0.0606, 0.0113, 0.0967, 0.67, 0.0)
    for source, figures in sources.items():
        for seed in range(1000, 1000 + seeds):
            noisy = [v + rng.normal(0, 0.0005) if i < 2 else v for i, v in enumerate(figures)]
            rows.append({SOURCE: source, SEED: seed, FOLD: 1, **dict(zip(COLUMNS, noisy))})
    for name, figures in LOOKUPS.items():
        lift = figures["mastery_corr"] - PFA["mastery_corr"]
        rows.append({SOURCE: f"baseline:{name}", SEED: -1, FOLD: 1, "mastery_lift": lift, **figures})
    return pd.DataFrame(rows)


def test_an_infeasible_trial_is_never_on_the_robust_front_and_the_lookups_and_dkt_stand_on_it():
    runs = confirm_runs()
    trials_only = runs[~runs[SOURCE].str.startswith("baseline:") & (runs[SOURCE] != "dkt")]
    # as the page had it: no constraints, no baselines, and the saturated trial on the front
    assert "32966f0b" in set(robust_front(trials_only, OBJECTIVES)[SOURCE])
    fixed = {name: figures[-1] for name, figures in TRIALS.items()}
    alone = robust_front(trials_only, OBJECTIVES, CONSTRAINTS, fixed)
    assert "32966f0b" not in set(alone[SOURCE])  # infeasible: never on it
    table = robust_table(runs, OBJECTIVES, CONSTRAINTS, fixed).set_index(SOURCE)
    assert not table.loc["32966f0b", FEASIBLE] and table.loc["baseline:pfa", FEASIBLE]
    front = robust_front(runs, OBJECTIVES, CONSTRAINTS, fixed)
    assert sorted(front[SOURCE]) == ["baseline:pfa", "dkt"]  # DKT beats every trial on the means
    assert table.loc["ef68b935", DOMINATED_BY] == "dkt"
    assert table.loc["32966f0b", DOMINATED_BY] == "base_rate,pfa"  # DKT's monotonicity is above 0
    assert left_out(robust_table(runs, OBJECTIVES, CONSTRAINTS, fixed)) == [
        "32966f0b (dominated by base_rate, pfa)",
        "632def56 (dominated by pfa, dkt)",
        "ef68b935 (dominated by dkt)",
    ]
    lookup = front.set_index(SOURCE).loc["baseline:pfa"]
    assert lookup["runs"] == 1 and math.isnan(lookup["auc.low"])  # a lookup has no interval


def test_a_best_lookup_threshold_reads_the_lookups_of_the_front_it_judges():
    auc = Constraint.parse("auc >= best_lookup")
    analysis = analysed(list(TRIALS), (auc,))
    (resolved,) = analysis.constraints
    assert resolved.threshold == PFA["auc"]
    feasible = analysis.candidates.set_index(TRIAL_KEY)[FEASIBLE]
    assert feasible.to_dict() == {"ef68b935": True, "32966f0b": False, "632def56": False}
