"""Multi-objective successive halving: its rungs, its ranking and its decisions, beside Ray's ASHA."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from sweep_helpers import tune_trial

from gainakt.errors import ConfigError
from search.run.schedulers import MultiObjectiveASHA, rung_order, rungs
from search.spec import Constraint, Objective, SweepSpec

OBJECTIVES = (Objective("auc", "max"), Objective("mastery_corr", "max"))
CONSTRAINTS = (Constraint.parse("neg_gain_rate < 0.1"),)


def frame(rows: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"auc": a, "mastery_corr": m, "neg_gain_rate": n} for a, m, n in rows.values()], index=list(rows)
    )


def names(rows: dict, order) -> list[str]:
    return [list(rows)[i] for i in order]


def test_rungs_grow_by_the_reduction_factor_below_the_last_epoch():
    assert rungs(1, 2, 8) == [1, 2, 4]
    assert rungs(2, 3, 20) == [2, 6, 18]
    assert rungs(4, 2, 4) == []  # a trial as short as the grace period is never compared


def test_feasible_fronts_first_then_infeasible_by_violation_then_nan():
    rows = {
        "front_auc": (0.75, 0.10, 0.05),
        "front_mastery": (0.70, 0.40, 0.05),
        "dominated": (0.65, 0.05, 0.05),
        "far_infeasible": (0.80, 0.50, 0.30),  # better on both objectives, far from the constraint
        "near_infeasible": (0.80, 0.50, 0.12),
        "nan": (math.nan, 0.30, 0.05),
    }
    order = names(rows, rung_order(frame(rows), OBJECTIVES, CONSTRAINTS))
    assert set(order[:2]) == {"front_auc", "front_mastery"}
    assert order[2:] == ["dominated", "near_infeasible", "far_infeasible", "nan"]


def test_within_a_front_the_point_that_adds_most_hypervolume_comes_first():
    rows = {
        "crowded_a": (0.800, 0.100, 0.0),
        "crowded_b": (0.799, 0.101, 0.0),  # non-dominated, but next to crowded_a
        "alone": (0.600, 0.500, 0.0),
    }
    assert names(rows, rung_order(frame(rows), OBJECTIVES))[0] == "alone"


def stub(trial_id: str) -> Trial:
    return Trial("run_trial", config={}, trial_id=trial_id, stub=True)


def test_a_trial_strong_on_mastery_at_a_small_auc_cost_continues_where_asha_on_auc_stops_it():
    arrivals = [  # trial, (auc, mastery_corr) at epoch 1, in the order they reach it
        ("weak", (0.60, 0.05)),
        ("slightly_better", (0.62, 0.08)),
        ("best_auc", (0.70, 0.10)),
        ("mastery", (0.61, 0.45)),  # below the median AUC, far above every mastery
    ]
    ours = MultiObjectiveASHA(OBJECTIVES, (), max_t=4, grace_period=1, reduction_factor=2)
    asha = ASHAScheduler(metric="auc", mode="max", max_t=4, grace_period=1, reduction_factor=2)
    decisions = {}
    for trial_id, (auc, mastery) in arrivals:
        result = {"training_iteration": 1, "auc": auc, "mastery_corr": mastery}
        trial = stub(trial_id)
        asha.on_trial_add(None, trial)
        decisions[trial_id] = (ours.decide(trial_id, result), asha.on_trial_result(None, trial, result))
    assert decisions["mastery"] == (TrialScheduler.CONTINUE, TrialScheduler.STOP)
    assert decisions["best_auc"] == (TrialScheduler.CONTINUE, TrialScheduler.CONTINUE)
    assert ours.recorded[1].keys() == {t for t, _ in arrivals} and ours.stopped == 0


def test_a_trial_is_judged_once_per_rung_and_a_nan_objective_stops_it():
    ours = MultiObjectiveASHA(OBJECTIVES, CONSTRAINTS, max_t=8, grace_period=1, reduction_factor=2)
    for trial_id, auc in (("a", 0.7), ("b", 0.72), ("c", 0.74)):
        result = {"training_iteration": 1, "auc": auc, "mastery_corr": 0.2, "neg_gain_rate": 0.0}
        assert ours.decide(trial_id, result) == TrialScheduler.CONTINUE  # each better than the last
    nan = {"training_iteration": 1, "auc": math.nan, "mastery_corr": 0.9, "neg_gain_rate": 0.0}
    assert ours.decide("n", nan) == TrialScheduler.STOP and ours.stopped == 1
    # Epoch 1 again (a restored trial re-reports it): already judged there, not again.
    assert (
        ours.decide("a", {"training_iteration": 1, "auc": 0.0, "mastery_corr": 0.0})
        == TrialScheduler.CONTINUE
    )
    # Between rungs nothing is decided; at the next rung the trial is judged anew.
    assert (
        ours.decide("a", {"training_iteration": 3, "auc": 0.7, "mastery_corr": 0.2})
        == TrialScheduler.CONTINUE
    )
    assert set(ours.recorded[2]) == {"a"} and set(ours.recorded[4]) == set()
    assert "1 stopped" in ours.debug_string()


def test_the_spec_takes_mo_asha_with_its_rungs_and_refuses_a_factor_below_two():
    spec = SweepSpec(scheduler="mo-asha", grace_period=2, reduction_factor=3)
    assert SweepSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="reduction_factor must be >= 2, got 1"):
        SweepSpec(scheduler="mo-asha", reduction_factor=1)
    with pytest.raises(ConfigError, match="grace_period must be >= 1"):
        SweepSpec(grace_period=0)


@pytest.mark.parametrize(
    "reported, done, itself, status",
    [
        (3, False, False, "COMPLETED"),
        (2, True, False, "STOPPED"),
        (3, True, False, "COMPLETED"),
        (2, True, True, "COMPLETED"),
    ],
    ids=["continued from its last epoch", "scheduler's stop", "ran all", "patience"],
)
def test_a_trial_the_scheduler_ends_early_is_stopped_whatever_tune_says(
    tmp_path, reported, done, itself, status
):
    """Tune marks a scheduler's stop `done`, and may not mark a trial continued from its last
    epoch's checkpoint: the store's status follows the epochs the trial ran against those asked,
    and a trial its own trainer stopped (patience) is completed."""
    from search.run.recorder import StoreRecorder
    from search.store.segments import Store
    from search.store.study import Study

    study = Study(str(tmp_path), "ending")
    spec = SweepSpec(name="ending", storage=str(tmp_path), trials=1, scheduler="mo-asha")
    recorder = StoreRecorder(spec, Store(study), {"fixed.epochs": 3}, study.journal_path, echo=lambda _: None)
    trial = tune_trial(tmp_path, "t1", 0)
    recorder.on_trial_start(0, [trial], trial)
    recorder.trials["t1"]["epochs"] = reported
    trial.update_last_result({"training_iteration": reported, "done": done, "stopped_early": itself})
    recorder.on_trial_complete(0, [trial], trial)
    assert Store(study).trials()["status"].tolist() == [status]


def test_a_resumed_scheduler_hears_the_stores_rows_again_and_judges_no_trial_twice():
    """A resumed sweep's scheduler replays the store's epoch rows in the order they were reported:
    a trial recorded at a rung before the driver died is not judged there again, one stopped then
    stays stopped, and a newcomer is ranked against them all."""

    def row(trial_id: str, epoch: int, auc: float, mastery: float) -> dict[str, object]:
        return {
            "trial_id": trial_id,
            "epoch": epoch,
            "auc": auc,
            "mastery_corr": mastery,
            "neg_gain_rate": 0.0,
        }

    heard = [
        row("strong", 1, 0.80, 0.2),
        row("weak", 1, 0.70, 0.2),  # below strong on AUC: the lower half of two, stopped
        row("mastery", 1, 0.75, 0.6),  # on the front with strong: kept, weak is the one out
        row("strong", 2, 0.79, 0.2),  # worse than its epoch 1, so it reports epoch 1's figures
    ]
    ours = MultiObjectiveASHA(OBJECTIVES, CONSTRAINTS, max_t=8, grace_period=1, reduction_factor=2)
    ours.replay_rows(heard)
    assert list(ours.recorded[1]) == ["strong", "weak", "mastery"] and list(ours.recorded[2]) == ["strong"]
    assert ours.recorded[2]["strong"]["auc"] == 0.80 and set(ours.stopped_before) == {"weak"}
    # Stopped before the driver died, its end never stored: stopped at its next result.
    assert (
        ours.decide("weak", {"epoch_row": {"epoch": 2}, "auc": 0.9, "mastery_corr": 0.9})
        == TrialScheduler.STOP
    )
    # "strong", continued from its epoch 2 checkpoint, reports epoch 3: nothing to judge there.
    again = {"epoch_row": {"epoch": 3}, "training_iteration": 1, "auc": 0.0, "mastery_corr": 0.0}
    assert ours.decide("strong", again) == TrialScheduler.CONTINUE
    # A newcomer below all at rung 1 is stopped, by the epoch of its row, not Tune's count.
    newcomer = {"epoch_row": {"epoch": 1}, "training_iteration": 5, "auc": 0.5, "mastery_corr": 0.1}
    assert ours.decide("new", {**newcomer, "neg_gain_rate": 0.0}) == TrialScheduler.STOP
    assert set(ours.recorded[1]) == {"strong", "weak", "mastery", "new"} and set(ours.recorded[4]) == set()
