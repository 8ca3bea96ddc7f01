"""Statistics of repeated runs (search/analysis/statistics.py) against hand computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from search.analysis.statistics import INDISTINGUISHABLE, Estimate, paired_difference, robust_front, summarize
from search.spec import Objective

T_975_4 = 2.7764451052  # Student's t, 97.5% quantile, 4 degrees of freedom (a table's value)


def test_the_interval_is_the_t_interval_of_the_mean() -> None:
    x = [0.71, 0.72, 0.705, 0.73, 0.715]
    mean = sum(x) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / 4)
    estimate = Estimate.of(x)
    assert estimate.mean == pytest.approx(mean) and estimate.std == pytest.approx(sd) and estimate.n == 5
    half = T_975_4 * sd / math.sqrt(5)
    assert (estimate.low, estimate.high) == pytest.approx((mean - half, mean + half), rel=1e-9)
    other = stats.ttest_1samp(x, 0.0).confidence_interval(0.95)  # scipy's own route to the same interval
    assert (estimate.low, estimate.high) == pytest.approx((other.low, other.high), rel=1e-12)


def test_one_run_has_no_interval_and_nan_runs_are_left_out() -> None:
    single = Estimate.of([0.7, math.nan])
    assert single.mean == 0.7 and single.n == 1 and math.isnan(single.low) and single.includes(5.0)
    assert Estimate.of([]).n == 0 and math.isnan(Estimate.of([]).mean)
    constant = Estimate.of([0.5, 0.5, 0.5])
    assert (constant.low, constant.high) == (0.5, 0.5) and not constant.includes(0.0)


def runs(table: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """source -> [(auc, lift) per seed], seeds 0.. and fold 0."""
    rows = [
        {"source": source, "seed": seed, "fold": 0, "auc": auc, "mastery_lift": lift}
        for source, values in table.items()
        for seed, (auc, lift) in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_a_paired_difference_pairs_on_seed_and_fold() -> None:
    frame = runs(
        {
            "a": [(0.70, 0), (0.72, 0), (0.71, 0), (0.73, 0), (0.69, 0)],
            "b": [(0.69, 0), (0.70, 0), (0.70, 0), (0.71, 0), (0.69, 0)],
        }
    )
    frame = pd.concat([frame, frame.iloc[[0]].assign(seed=9, source="a", auc=0.1)])  # a seed b never ran
    d = [0.01, 0.02, 0.01, 0.02, 0.00]  # by hand, seeds 0-4
    mean = sum(d) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / 4)
    got = paired_difference(frame, "a", "b", "auc")
    assert got.n == 5 and got.mean == pytest.approx(mean)
    assert (got.low, got.high) == pytest.approx((mean - T_975_4 * sd / 5**0.5, mean + T_975_4 * sd / 5**0.5))
    # unpaired, the shared seed noise stays in: the interval of a's mean alone is wider than the difference's
    alone = summarize(frame[frame.seed < 5], ["auc"]).set_index("source")
    assert alone.loc["a", "auc.high"] - alone.loc["a", "auc.low"] > got.high - got.low


def test_the_robust_front_marks_a_constructed_indistinguishable_pair() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, 5)  # what the seeds share
    a = [(0.70 + n, 0.05 + n) for n in noise]
    jitter = [0.002, -0.001, 0.003, -0.002, 0.0015]  # b: slightly higher AUC, slightly lower lift, noisily
    b = [(x + j, y - j) for (x, y), j in zip(a, jitter)]
    c = [(x - 0.05, y - 0.05) for x, y in a]  # dominated, and clearly so on every seed
    d = [(x + 0.04, y - 0.03) for x, y in a]  # a real trade-off: better AUC, worse lift, on every seed
    frame = runs({"a": a, "b": b, "c": c, "d": d})
    objectives = [Objective("auc", "max"), Objective("mastery_lift", "max")]
    front = robust_front(frame, objectives).set_index("source")
    assert sorted(front.index) == ["a", "b", "d"]  # c is dominated on the means
    assert front.loc["a", INDISTINGUISHABLE] == ["b"] and front.loc["b", INDISTINGUISHABLE] == ["a"]
    assert front.loc["d", INDISTINGUISHABLE] == []
    assert list(front.index) == ["d", "b", "a"]  # best AUC first
    assert front.loc["a", "auc.low"] < front.loc["a", "auc"] < front.loc["a", "auc.high"]


def test_holm_adjusts_p_values_as_a_hand_computation_does() -> None:
    from search.analysis.statistics import holm

    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone
    assert holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(holm(p)[4])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_paired_comparisons_widen_each_interval_to_the_level_holm_tests_it_at() -> None:
    from scipy import stats

    from search.analysis.statistics import paired_comparisons

    rng = np.random.default_rng(3)
    base = rng.normal(0.7, 0.01, 5)
    shifts = {"b": 0.004, "c": 0.0015, "d": 0.0}  # a minus each: large, small, nothing
    noisy = {k: base - v + rng.normal(0, 0.001, 5) for k, v in shifts.items()}
    frame = runs({k: [(auc, 0.0) for auc in v] for k, v in {"a": base, **noisy}.items()})
    table = paired_comparisons(frame, [("a", "b"), ("a", "c"), ("a", "d")], ["auc"])
    table = table.set_index("b")
    m, alpha = 3, 0.05
    order = table["p"].sort_values().index
    assert table.loc[order[0], "p_holm"] == pytest.approx(min(1, 3 * table.loc[order[0], "p"]))
    for rank, name in enumerate(order):  # up to the first comparison Holm does not reject
        d = frame[frame.source == "a"]["auc"].to_numpy() - frame[frame.source == name]["auc"].to_numpy()
        level = 1 - alpha / (m - rank) if table.loc[order[:rank], "p_holm"].le(alpha).all() else None
        if level is None:
            break
        low, high = stats.t.interval(level, 4, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(5))
        assert (table.loc[name, "low_holm"], table.loc[name, "high_holm"]) == pytest.approx((low, high))
        assert (low > 0 or high < 0) == (table.loc[name, "p_holm"] <= alpha)
        corrected = table.loc[name, "high_holm"] - table.loc[name, "low_holm"]
        assert corrected >= table.loc[name, "high"] - table.loc[name, "low"]  # never narrower


def test_a_lookups_lift_is_measured_even_when_mastery_corr_is_not_asked_for() -> None:
    """The ASSIST2015 study ranks on auc, mastery_lift and monotonicity only: its lookups' lift (0 for
    PFA, the best) was NaN, which left PFA off the robust front."""
    from search.analysis.statistics import confirmed_runs

    rows = [
        {
            "source": "baseline:pfa",
            "seed": -1,
            "fold": 1,
            "status": "COMPLETED",
            "valid.auc": 0.70,
            "valid.mastery_corr": 0.30,
        },
        {
            "source": "baseline:base_rate",
            "seed": -1,
            "fold": 1,
            "status": "COMPLETED",
            "valid.auc": 0.64,
            "valid.mastery_corr": 0.22,
        },
        {
            "source": "t1",
            "seed": 1000,
            "fold": 1,
            "status": "COMPLETED",
            "valid.auc": 0.72,
            "valid.mastery_corr": 0.35,
            "valid.mastery_lift": 0.05,
        },
    ]
    runs = confirmed_runs(pd.DataFrame(rows), ["auc", "mastery_lift"], "valid").set_index("source")
    assert runs.loc["baseline:pfa", "mastery_lift"] == 0.0
    assert runs.loc["baseline:base_rate", "mastery_lift"] == pytest.approx(-0.08)
    assert runs.loc["t1", "mastery_lift"] == 0.05
