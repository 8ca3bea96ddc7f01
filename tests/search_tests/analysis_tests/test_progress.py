"""The line a sweep prints after each trial: trials ended and running, the best feasible figure so
far, the time left from the ended trials' durations."""

from __future__ import annotations

import pandas as pd

from search.analysis.progress import progress_of, time_left
from search.spec import Constraint, SweepSpec

T0 = pd.Timestamp("2026-12-05 10:00", tz="UTC")


def rows(*trials: tuple[str, str, float, float, int | None]) -> pd.DataFrame:
    """(trial_id, status, auc, mastery_corr, seconds it took or None while running)"""
    return pd.DataFrame(
        [
            {
                "trial_id": trial_id,
                "status": status,
                "auc": auc,
                "mastery_corr": corr,
                "started_at": T0,
                "ended_at": pd.NaT if seconds is None else T0 + pd.Timedelta(seconds=seconds),
            }
            for trial_id, status, auc, corr, seconds in trials
        ]
    )


def test_the_progress_line_counts_names_the_best_feasible_trial_and_estimates_the_time_left():
    spec = SweepSpec(trials=8, concurrent=2, constraints=(Constraint.parse("mastery_corr >= 0.3"),))
    trials = rows(
        ("a", "COMPLETED", 0.75, 0.10, 60),  # the best AUC, but infeasible
        ("b", "COMPLETED", 0.72, 0.40, 100),
        ("c", "ERROR", float("nan"), float("nan"), 20),
        ("d", "RUNNING", float("nan"), float("nan"), None),
    )
    # 5 trials not ended, 2 at a time: 3 waves of the mean 60 s
    assert time_left(trials, spec).seconds == 180
    assert progress_of(trials, spec).line() == (
        "progress: 3 of 8 trials ended (1 failed), 1 running; best feasible auc 0.7200 (b); about 3m00s left"
    )


def test_before_any_trial_ends_there_is_no_estimate_and_no_feasible_trial_is_said_so():
    spec = SweepSpec(trials=4, constraints=(Constraint.parse("mastery_corr >= 0.9"),))
    assert progress_of(rows(("a", "RUNNING", float("nan"), float("nan"), None)), spec).line() == (
        "progress: 0 of 4 trials ended (0 failed), 1 running"
    )
    done = rows(("a", "COMPLETED", 0.7, 0.2, 30))
    assert progress_of(done, spec).line().endswith("; no feasible trial yet; about 1m00s left")


def test_the_time_left_comes_from_the_epochs_trained_so_far_once_one_has():
    spec = SweepSpec(trials=4, concurrent=2)
    trials = rows(("a", "COMPLETED", 0.7, 0.2, 40), ("b", "RUNNING", float("nan"), float("nan"), None))
    trials["fixed.epochs"] = 3
    trials["epochs"] = [3, 1]
    trials["train_seconds"] = [30.0, 10.0]
    # 10 s an epoch (40 s over 4 epochs); left: b's 2 epochs and 2 trials of 3, two at a time
    left = time_left(trials, spec)
    assert (left.seconds, left.trials, left.per_trial) == (40.0, 3, 30.0)
    # Before any trial has ended, the first epoch already gives an estimate.
    first = rows(("b", "RUNNING", float("nan"), float("nan"), None)).assign(
        **{"fixed.epochs": 3, "epochs": 1, "train_seconds": 12.0}
    )
    assert time_left(first, spec).seconds == (2 + 3 * 3) * 12.0 / 2
