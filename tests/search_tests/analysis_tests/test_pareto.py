"""search/analysis/pareto.py: dominance, feasibility, hypervolume and its history, epoch fronts."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gainakt.errors import ConfigError
from search.analysis import pareto
from search.spec import Constraint, Objective, SweepSpec

METRICS = ("auc", "mastery_corr", "neg_gain_rate")


def table(values: list[list[float]], metrics=METRICS, status: str = "COMPLETED") -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=list(metrics[: len(values[0])]) if values else list(metrics))
    frame.insert(0, "trial_id", [f"t{i}" for i in range(len(frame))])
    frame["status"] = status
    frame["ended_at"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(len(frame)), unit="s"
    )
    return frame


def brute_force_front(points: np.ndarray, maximise: list[bool]) -> set[int]:
    """Indices no other point dominates: at least as good everywhere and better somewhere."""
    signs = np.where(maximise, -1.0, 1.0)  # to minimisation
    p = points * signs
    keep = set()
    for i in range(len(p)):
        if not any(np.all(p[j] <= p[i]) and np.any(p[j] < p[i]) for j in range(len(p)) if j != i):
            keep.add(i)
    return keep


# Few distinct values, so ties and duplicate rows are common.
small_values = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
tables = st.integers(min_value=1, max_value=3).flatmap(
    lambda m: st.tuples(
        st.lists(st.lists(small_values, min_size=m, max_size=m), min_size=0, max_size=25),
        st.lists(st.booleans(), min_size=m, max_size=m),
    )
)


@settings(max_examples=150, deadline=None)
@given(tables)
def test_front_equals_a_brute_force_dominance_check(case):
    values, maximise = case
    m = len(maximise)
    objectives = [Objective(METRICS[j], "max" if maximise[j] else "min") for j in range(m)]
    trials = table(values, METRICS[:m]) if values else table([[0.0] * m], METRICS[:m]).iloc[0:0]
    got = set(pareto.front(trials, objectives)["trial_id"])
    expected = {f"t{i}" for i in brute_force_front(np.array(values, dtype=float).reshape(-1, m), maximise)}
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(small_values, small_values, small_values), min_size=1, max_size=25),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_constrained_front_holds_only_feasible_trials(values, low_mastery, high_neg):
    objectives = [
        Objective("auc", "max"),
        Objective("mastery_corr", "max"),
        Objective("neg_gain_rate", "min"),
    ]
    constraints = [Constraint("mastery_corr", ">=", low_mastery), Constraint("neg_gain_rate", "<", high_neg)]
    trials = table([list(v) for v in values])
    chosen = pareto.constrained_front(trials, objectives, constraints)
    assert all(c.met(v) for c in constraints for v in chosen[c.metric])
    feasible = trials[pareto.feasible(trials, constraints)]
    # It is exactly the front of the feasible trials, and it is empty only when none is feasible.
    assert set(chosen["trial_id"]) == set(pareto.front(feasible, objectives)["trial_id"])
    assert (len(chosen) == 0) == (len(feasible) == 0)
    if not len(feasible):
        closest = pareto.closest_to_feasible(trials, objectives, constraints, count=len(trials))
        assert list(closest["total_violation"]) == sorted(closest["total_violation"])
        assert (closest["total_violation"] >= 0).all()  # 0 only on the boundary of a strict '<' or '>'
        assert set(closest["trial_id"]) == set(pareto.usable(trials, objectives)["trial_id"])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=30),
    st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_hypervolume_history_never_decreases_and_ends_at_the_hypervolume(values, maximise):
    objectives = [Objective(m, "max" if up else "min") for m, up in zip(METRICS, maximise)]
    trials = table([list(v) for v in values]).sample(
        frac=1.0, random_state=0
    )  # store order is not completion order
    reference = pareto.reference_point(trials, objectives)
    history = pareto.hypervolume_history(trials, objectives, reference)
    assert len(history) == len(trials)
    assert list(history["ended_at"]) == sorted(history["ended_at"])
    assert (np.diff(history["hypervolume"].to_numpy()) >= -1e-12).all()
    assert history["hypervolume"].iloc[-1] == pytest.approx(pareto.hypervolume(trials, objectives, reference))
    # The derived reference lies beyond every point, so each trial is counted.
    assert pareto.hypervolume(trials, objectives, reference) > 0


def test_hypervolume_equals_hand_computed_values_in_2d():
    # Minimise both; reference (4, 4). Points (1, 3), (2, 2), (3, 1) give a staircase:
    # [1,4]x[3,4] + [2,4]x[2,3] + [3,4]x[1,2] = 3 + 2 + 1 = 6. A dominated point adds nothing.
    objectives = [Objective("auc", "min"), Objective("mastery_corr", "min")]
    trials = table([[1, 3], [2, 2], [3, 1], [3, 3]])
    assert pareto.hypervolume(trials, objectives, np.array([4.0, 4.0])) == pytest.approx(6.0)
    history = pareto.hypervolume_history(trials, objectives, np.array([4.0, 4.0]))
    assert list(history["hypervolume"]) == pytest.approx([3.0, 5.0, 6.0, 6.0])
    # Mixed directions: maximise auc (reference 0), minimise mastery_corr (reference 4): (1,3),(2,2),(3,1) as
    # auc 3,2,1 -> boxes [0,3]x[3,4] u [0,2]x[2,4] u [0,1]x[1,4] = 3 + 2 + 1 = 6 again.
    mixed = [Objective("auc", "max"), Objective("mastery_corr", "min")]
    trials = table([[3, 3], [2, 2], [1, 1]])
    assert pareto.hypervolume(trials, mixed, np.array([0.0, 4.0])) == pytest.approx(6.0)
    # A point beyond the reference on one objective adds nothing.
    assert pareto.hypervolume(table([[5, 1]]), objectives, np.array([4.0, 4.0])) == 0.0


def test_hypervolume_equals_hand_computed_values_in_3d():
    objectives = [Objective(m, "min") for m in METRICS]
    reference = np.array([2.0, 2.0, 2.0])
    # One point (1,1,1): a unit cube. Adding (0,2,..) on the boundary adds nothing; (0,0,1.5) adds
    # [0,2]x[0,2]x[1.5,2] = 2 minus its overlap with the cube [1,2]^2 x [1.5,2] = 0.5, so 1.5.
    assert pareto.hypervolume(table([[1, 1, 1]]), objectives, reference) == pytest.approx(1.0)
    assert pareto.hypervolume(table([[1, 1, 1], [0, 2, 0]]), objectives, reference) == pytest.approx(1.0)
    assert pareto.hypervolume(table([[1, 1, 1], [0, 0, 1.5]]), objectives, reference) == pytest.approx(2.5)
    # Three axis-aligned slabs: (0,1,1), (1,0,1), (1,1,0) against (2,2,2): union of three boxes of 2 each,
    # pairwise overlaps of 1 each, triple overlap 1 (the cube [1,2]^3): 6 - 3 + 1 = 4.
    assert pareto.hypervolume(
        table([[0, 1, 1], [1, 0, 1], [1, 1, 0]]), objectives, reference
    ) == pytest.approx(4.0)


def test_reference_point_comes_from_the_spec_or_the_worst_values():
    objectives = [Objective("auc", "max"), Objective("neg_gain_rate", "min")]
    trials = table([[0.6, 0.1], [0.8, 0.3]], ("auc", "neg_gain_rate"))
    derived = pareto.reference_point(trials, objectives)
    assert derived == pytest.approx([0.6 - 0.02, 0.3 + 0.02])  # worst, 10% of the range beyond
    assert pareto.reference_point(trials, objectives, {"auc": 0.5}) == pytest.approx([0.5, 0.32])
    same = table([[0.7, 0.2], [0.7, 0.2]], ("auc", "neg_gain_rate"))
    assert pareto.reference_point(same, objectives) == pytest.approx(
        [0.7 - 0.1, 0.2 + 0.1]
    )  # 10% of max(|worst|, 1)
    # A range of one denormal: 10% of it is 0 in floating point, so it counts as no range at all.
    tiny = table([[5e-324, 0.2], [0.0, 0.2]], ("auc", "neg_gain_rate"))
    assert pareto.reference_point(tiny, objectives) == pytest.approx([-0.1, 0.3])
    assert pareto.hypervolume(tiny, objectives, pareto.reference_point(tiny, objectives)) > 0


def test_spec_reference_is_validated_and_survives_json():
    spec = SweepSpec.from_dict({"reference": {"auc": 0.5, "neg_gain_rate": 1}})
    assert SweepSpec.from_dict(spec.to_dict()).reference == {"auc": 0.5, "neg_gain_rate": 1.0}
    assert SweepSpec().reference == {}
    for bad in (
        {"reference": {"nope": 1.0}},
        {"reference": {"auc": "x"}},
        {"reference": {"auc": math.inf}},
        {"reference": [0.5]},
        {"reference": {"auc": True}},
    ):
        with pytest.raises(ConfigError):
            SweepSpec.from_dict(bad)


def test_trials_with_missing_or_nan_objectives_are_excluded_and_listed():
    objectives = [Objective("auc", "max"), Objective("mastery_corr", "max")]
    trials = table([[0.9, float("nan")], [0.5, 0.5], [0.4, 0.4], [0.95, 0.9]], ("auc", "mastery_corr"))
    trials.loc[3, "status"] = "ERROR"  # not completed: not a candidate, not "excluded" either
    assert list(pareto.front(trials, objectives)["trial_id"]) == ["t1"]
    out = pareto.excluded(trials, objectives)
    assert list(out["trial_id"]) == ["t0"] and out["reason"].item() == "no value for mastery_corr"
    # A metric the store lacks altogether reads as missing for every trial.
    missing = pareto.excluded(trials, [Objective("auc", "max"), Objective("gain_corr", "max")])
    assert set(missing["trial_id"]) == {"t0", "t1", "t2"} and set(missing["reason"]) == {
        "no value for gain_corr"
    }


def test_closest_to_feasible_normalises_each_violation_by_its_metric_spread():
    objectives = [Objective("auc", "max")]
    constraints = [Constraint("mastery_corr", ">=", 0.5), Constraint("neg_gain_rate", "<", 0.1)]
    # mastery_corr spreads over 0.4 and neg_gain_rate over 0.07: each miss is divided by its metric's spread.
    trials = table([[0.7, 0.3, 0.05], [0.7, 0.5, 0.12], [0.7, 0.1, 0.09], [0.7, 0.45, 0.11]])
    closest = pareto.closest_to_feasible(trials, objectives, constraints, count=4)
    expected = {"t0": 0.5, "t1": 0.02 / 0.07, "t2": 1.0, "t3": 0.125 + 0.01 / 0.07}
    assert dict(zip(closest["trial_id"], closest["total_violation"])) == pytest.approx(expected)
    assert list(closest["trial_id"]) == ["t3", "t1", "t0", "t2"]
    assert list(pareto.closest_to_feasible(trials, objectives, constraints, count=2)["trial_id"]) == [
        "t3",
        "t1",
    ]


def test_epoch_front_takes_every_checkpointed_epoch_of_trials_not_lost():
    objectives = [Objective("auc", "max"), Objective("mastery_corr", "max")]
    trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "status": ["COMPLETED", "ERROR", "LOST"]})
    rows = [
        ("a", 1, 0.6, 0.5, "ck/a1"),
        ("a", 2, 0.7, 0.2, "ck/a2"),
        ("b", 1, 0.65, 0.45, "ck/b1"),
        ("b", 2, 0.9, 0.9, None),
        ("c", 1, 0.99, 0.99, "ck/c1"),
        ("a", 3, 0.5, 0.1, "ck/a3"),
    ]
    epochs = pd.DataFrame(rows, columns=["trial_id", "epoch", "auc", "mastery_corr", "checkpoint"])
    chosen = pareto.epoch_front(epochs, trials, objectives)
    # b's epoch 2 has no checkpoint and c is LOST; a's last epoch and a3 are dominated.
    assert list(zip(chosen["trial_id"], chosen["epoch"])) == [("a", 2), ("b", 1), ("a", 1)]
    feasible_only = pareto.epoch_front(epochs, trials, objectives, [Constraint("mastery_corr", ">=", 0.48)])
    assert list(zip(feasible_only["trial_id"], feasible_only["epoch"])) == [("a", 1)]


def test_front_of_four_objectives_matches_brute_force():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 4, size=(60, 4)).astype(float)
    metrics = ("auc", "mastery_corr", "neg_gain_rate", "gain_corr")
    maximise = [True, True, False, True]
    objectives = [Objective(m, "max" if up else "min") for m, up in zip(metrics, maximise)]
    got = set(pareto.front(table(values.tolist(), metrics), objectives)["trial_id"])
    assert got == {f"t{i}" for i in brute_force_front(values, maximise)}


def test_every_pair_of_front_trials_is_mutually_non_dominated():
    rng = np.random.default_rng(2)
    trials = table(rng.random((200, 3)).round(1).tolist())
    objectives = [
        Objective("auc", "max"),
        Objective("mastery_corr", "min"),
        Objective("neg_gain_rate", "max"),
    ]
    chosen = pareto.front(trials, objectives)
    signs = np.array([-1.0, 1.0, -1.0])
    points = chosen[list(METRICS)].to_numpy() * signs
    for a, b in itertools.permutations(range(len(points)), 2):
        assert not (np.all(points[a] <= points[b]) and np.any(points[a] < points[b]))


def test_every_front_table_shows_faithfulness_beside_the_objectives(tmp_path, capsys):
    """Whether a front trial's prediction reads its mastery is shown whatever the objectives."""
    from study_helpers import fake_study

    from search.cli import main

    fake_study(tmp_path, "faith", 12)
    assert main(["pareto", "faith", "--storage", str(tmp_path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all("faithfulness" in row for row in rows)
    assert main(["pareto", "faith", "--storage", str(tmp_path)]) == 0
    assert "faithfulness" in capsys.readouterr().out


def test_the_recommendation_is_the_best_auc_of_the_qualified_trials_and_says_so_when_none_qualifies(
    tmp_path, capsys
):
    from dataclasses import replace

    from study_helpers import fake_study

    from search.cli import main
    from search.report.sections import recommendation_lines
    from search.spec import Constraint

    study = fake_study(tmp_path, "pick", 16)
    study.write_spec(replace(study.read_spec(), constraints=(Constraint.parse("mastery_saturation < 0.5"),)))
    spec, analysis = pareto.load_analysis(study, epochs=False, every_setting=False)
    objectives = {o.metric for o in analysis.objectives}
    candidates = analysis.candidates
    worse = candidates["below_baseline"].map(lambda names: set(filter(None, names.split(","))))
    no_worse = worse.map(lambda names: not objectives & names)
    qualified = candidates[candidates["feasible"] & (candidates["degenerate"] == "") & no_worse]
    pick = pareto.recommended(analysis)
    assert 0 < len(qualified) < len(candidates)  # the rule leaves some out, and some in
    assert pick is not None and pick["auc"] == qualified["auc"].max()
    lines = recommendation_lines(spec, analysis)
    assert lines[0].startswith(f"recommended: trial {pick['trial_id']} (auc {pick['auc']:.4f}")
    assert lines[0].endswith("the one with the highest auc")
    assert lines[1] == f"its checkpoint: {pick['checkpoint']}"
    assert f"gainakt-search eval {pick['checkpoint']}" in lines[2]
    # A target no trial meets: nothing to recommend, and the sentence says so.
    strict = replace(spec, constraints=(Constraint.parse("auc >= 0.99"),))
    study.write_spec(strict)
    _, nothing = pareto.load_analysis(study, epochs=False, every_setting=False)
    assert pareto.recommended(nothing) is None
    none, why = recommendation_lines(strict, nothing)
    assert none == f"no trial to recommend: none is {pareto.QUALIFIED}"
    best = nothing.candidates.loc[nothing.candidates["auc"].idxmax()]
    assert why.startswith(f"(the trial with the best auc, {best['trial_id']}: misses a target")
    assert main(["pareto", "pick", "--storage", str(tmp_path)]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-2:] == [none, why]
