"""Degenerate mastery is flagged and never wins: copying the last response, constant or saturated mastery,
and trials that do worse than a lookup."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from gainakt.batching import BatchPlan
from gainakt.data import load_dataset
from gainakt.evaluate import Observations, eval_metrics
from gainakt.schema import DEGENERACY_LIMITS
from gainakt.tracer import States
from search.analysis import pareto
from search.report.terminal import pareto_output
from search.schema import BELOW_BASELINE, DEGENERATE
from search.spec import Objective

OBJECTIVES = (Objective("auc", "max"), Objective("mastery_corr", "max"))


def observations(mastery_of) -> Observations:
    """The observations of a model whose mastery tensor is `mastery_of(batch)` and whose prediction is 0.6."""
    dataset = load_dataset("synthetic:students=200,concepts=6,seed=2")
    _, valid = dataset.split(0)
    parts = []
    for batch in BatchPlan(valid, 64, shuffle=False).batches(0):
        b, t = batch.mask.shape
        logits = torch.linspace(-1, 1, b * t).view(b, t)
        states = States(
            logits,
            mastery_of(batch, dataset.num_concepts),
            torch.zeros(b, t, 6),
            torch.zeros(b, t, 2),
            torch.zeros(b, t, 2),
        )
        parts.append(Observations.of(states, batch))
    return Observations.concat(parts)


def copying(batch, concepts: int) -> torch.Tensor:
    mastery = torch.full((*batch.mask.shape, concepts), 0.5)
    return mastery.scatter(-1, batch.concepts.unsqueeze(-1), batch.responses.unsqueeze(-1).float())


def trial(trial_id: str, metrics: dict[str, float]) -> dict:
    return {
        "trial_id": trial_id,
        "status": "COMPLETED",
        "ended_at": pd.Timestamp("2026-01-01", tz="UTC"),
        **metrics,
    }


def test_a_mastery_that_copies_r_t_has_copy_corr_1_and_is_flagged_degenerate() -> None:
    copied = eval_metrics(observations(copying))
    assert copied.copy_corr == 1.0 and copied.copy_corr >= DEGENERACY_LIMITS["copy_corr"]
    honest = {"auc": 0.70, "mastery_corr": 0.20, "copy_corr": 0.3, "mastery_saturation": 0.0}
    trials = pd.DataFrame([trial("copy", copied.as_dict()), trial("honest", honest)])
    analysis = pareto.analyse(trials, pd.DataFrame(), OBJECTIVES, ())
    flags = dict(zip(analysis.candidates["trial_id"], analysis.candidates[DEGENERATE]))
    assert "copy_corr" in flags["copy"].split(",") and flags["honest"] == ""
    notes = pareto_output(analysis)
    assert f"degenerate (copying the last response or saturated mastery): copy ({flags['copy']})" in notes


def test_a_constant_mastery_has_no_correlation_and_is_never_on_the_front() -> None:
    constant = eval_metrics(
        observations(lambda batch, concepts: torch.full((*batch.mask.shape, concepts), 0.7))
    )
    assert math.isnan(constant.mastery_corr) and math.isnan(constant.copy_corr)
    assert math.isnan(constant.mastery_pred_corr) and math.isnan(constant.prospective_corr)
    # the best AUC of all, yet no mastery to speak of: left out of the front, listed as excluded
    trials = pd.DataFrame(
        [
            trial("constant", {**constant.as_dict(), "auc": 0.99}),
            trial("real", {"auc": 0.6, "mastery_corr": 0.1}),
        ]
    )
    analysis = pareto.analyse(trials, pd.DataFrame(), OBJECTIVES, ())
    assert list(analysis.front["trial_id"]) == ["real"]
    assert list(analysis.excluded["trial_id"]) == ["constant"]


def test_saturated_mastery_is_flagged_and_trials_below_the_best_baseline_are_named() -> None:
    saturated = eval_metrics(observations(lambda batch, concepts: torch.ones((*batch.mask.shape, concepts))))
    assert saturated.mastery_saturation == 1.0
    baselines = {"base_rate": {"mastery_corr": 0.22}, "running_accuracy": {"mastery_corr": 0.28}}
    trials = pd.DataFrame(
        [
            trial("low", {"auc": 0.72, "mastery_corr": 0.25, "mastery_saturation": 0.6}),
            trial("high", {"auc": 0.71, "mastery_corr": 0.31, "mastery_saturation": 0.1}),
        ]
    )
    analysis = pareto.analyse(trials, pd.DataFrame(), OBJECTIVES, (), baselines=baselines)
    assert analysis.baseline == {"mastery_corr": (0.28, "running_accuracy")}
    rows = analysis.candidates.set_index("trial_id")
    assert rows.loc["low", BELOW_BASELINE] == "mastery_corr" and rows.loc["high", BELOW_BASELINE] == ""
    assert rows.loc["low", DEGENERATE] == "mastery_saturation" and rows.loc["high", DEGENERATE] == ""
    assert "best baselines (docs/metrics.md): mastery_corr 0.2800 (running_accuracy)" in pareto_output(
        analysis
    )
    assert np.isfinite(saturated.auc)
