"""Parameter importance (PED-ANOVA through Optuna) from the store's rows, and its place in the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from study_helpers import fake_study

from search.analysis.importance import param_importances, target_quantile
from search.analysis.pareto import load_analysis
from search.report.page import write_report
from search.spec import Objective


def _trials(count: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 1, count), rng.uniform(0, 1, count)
    return pd.DataFrame(
        {
            "param.weights.sparsity": a,
            "param.lr": b,
            "param.model.gains": rng.choice(["relu", "linear"], count),
            "auc": 0.6 + 0.1 * a + 0.001 * rng.normal(size=count),  # decided by sparsity alone
            "neg_gain_rate": 0.3 * b,  # decided by lr alone, lower is better
        }
    )


def test_each_objective_ranks_the_parameter_that_decides_it_first():
    scores = param_importances(_trials(), [Objective("auc", "max"), Objective("neg_gain_rate", "min")])
    assert set(scores.index) == {"sparsity", "lr", "gains"}
    assert scores["auc"].idxmax() == "sparsity" and scores["neg_gain_rate"].idxmax() == "lr"
    assert scores["auc"]["sparsity"] > 0.5 and scores["neg_gain_rate"]["lr"] > 0.5
    assert scores.sum().to_numpy() == pytest.approx([1.0, 1.0])


def test_too_few_trials_or_no_varying_parameter_give_no_importances():
    objectives = [Objective("auc", "max")]
    assert param_importances(_trials(1), objectives).empty
    constant = _trials().assign(
        **{"param.weights.sparsity": 0.1, "param.lr": 0.2, "param.model.gains": "relu"}
    )
    assert param_importances(constant, objectives).empty


def test_small_studies_keep_at_least_five_trials_in_the_top_quantile():
    assert target_quantile(12) == pytest.approx(5 / 12) and target_quantile(1000) == 0.1
    assert target_quantile(4) == 0.5


def test_the_report_draws_the_importance_of_every_parameter_for_each_objective(tmp_path):
    study = fake_study(tmp_path, "imp", 30)
    page = Path(write_report(study).html).read_text()
    section = page.split("<h2>Parameter importance</h2>", 1)[1].split("</section>", 1)[0]
    candidates = len(load_analysis(study)[1].candidates)  # completed, every objective a number
    assert "PED-ANOVA" in section and f"of the {candidates} completed trials" in section
    for name in ("auc \\u2191 (max)", "mastery_corr \\u2191 (max)", "neg_gain_rate \\u2193 (min)"):  # JSON
        assert f'"name":"{name}"' in section
    assert '"type":"bar"' in section and "sparsity" in section
