"""How far a sweep is: trials ended and running, the best feasible figure so far, and the time left
estimated from the seconds its epochs took (the `status` command, and the progress a sweep shows as
it goes)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from search.analysis.pareto import best_trial, feasible, ranking_of
from search.schema import FIXED, TRIAL_KEY, TrialStatus
from search.spec import SweepSpec

EPOCH_COLUMNS = ("epochs", "train_seconds", f"{FIXED}epochs")  # what the estimate from epochs reads


@dataclass(frozen=True)
class TimeLeft:
    seconds: float
    trials: int  # not ended yet
    per_trial: float  # seconds a whole trial takes


def time_left(trials: pd.DataFrame, spec: SweepSpec) -> TimeLeft | None:
    """The time the trials not ended yet should take, `spec.concurrent` at a time: from the seconds
    the epochs trained so far took (once one has, where every trial runs the same epochs), else
    from the ended trials' durations; None with neither, or once all trials have ended."""
    if not len(trials):
        return None
    ended = trials["status"].map(lambda s: TrialStatus(s).ended)
    left = spec.trials - int(ended.sum())
    if left <= 0:
        return None
    by_epochs = _from_epochs(trials, ended, left, spec.concurrent)
    if by_epochs is not None:
        return by_epochs
    done = trials[ended]
    per_trial = (
        float((done["ended_at"] - done["started_at"]).dt.total_seconds().mean()) if len(done) else math.nan
    )
    if not math.isfinite(per_trial):
        return None
    return TimeLeft(math.ceil(left / spec.concurrent) * per_trial, left, per_trial)


def _from_epochs(trials: pd.DataFrame, ended: pd.Series, left: int, concurrent: int) -> TimeLeft | None:
    """The epochs not trained yet (the running trials' rest and every trial not started) times the
    mean seconds of an epoch trained so far, `concurrent` at a time."""
    if not set(EPOCH_COLUMNS) <= set(trials.columns):
        return None
    asked = pd.to_numeric(trials[f"{FIXED}epochs"], errors="coerce").dropna().unique()
    done = pd.to_numeric(trials["epochs"], errors="coerce").fillna(0)
    seconds = pd.to_numeric(trials["train_seconds"], errors="coerce")
    timed = (done > 0) & seconds.notna()
    if len(asked) != 1 or not timed.any():
        return None
    per_epoch = float(seconds[timed].sum() / done[timed].sum())
    running = (trials["status"] == TrialStatus.RUNNING) & ~ended
    started = int(running.sum())
    epochs = float(asked[0])
    rest = float((epochs - done[running]).clip(lower=0).sum()) + max(left - started, 0) * epochs
    return TimeLeft(rest * per_epoch / concurrent, left, epochs * per_epoch)


def duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@dataclass(frozen=True)
class Progress:
    """Where a sweep stands, as its progress line and bar show it."""

    ended: int
    asked: int
    failed: int
    running: int
    best: str | None  # "best feasible auc 0.7098 (t00003)", "no feasible trial yet", None before any
    left: TimeLeft | None

    @property
    def counts(self) -> str:
        return f"{self.ended} of {self.asked} trials ended ({self.failed} failed), {self.running} running"

    @property
    def details(self) -> list[str]:
        """What follows the counts: the best feasible figure and the time left, where known."""
        left = [f"about {duration(self.left.seconds)} left"] if self.left is not None else []
        return ([self.best] if self.best is not None else []) + left

    def line(self) -> str:
        """`progress: 5 of 8 trials ended (1 failed), 2 running; best feasible auc 0.7098 (t00003);
        about 1m20s left`."""
        return "; ".join([f"progress: {self.counts}", *self.details])


def progress_of(trials: pd.DataFrame, spec: SweepSpec) -> Progress:
    """The progress of a sweep whose trial rows are `trials`."""
    statuses = trials["status"].value_counts().to_dict() if len(trials) else {}
    ended = sum(n for status, n in statuses.items() if TrialStatus(status).ended)
    failed, running = statuses.get(TrialStatus.ERROR.value, 0), statuses.get(TrialStatus.RUNNING.value, 0)
    completed = trials[trials["status"] == TrialStatus.COMPLETED.value] if len(trials) else trials
    best = None
    if len(completed):
        metric, _ = ranking_of(spec.objectives)
        top = best_trial(completed[feasible(completed, spec.constraints)], spec.objectives)
        best = (
            "no feasible trial yet"
            if top is None
            else f"best feasible {metric} {top[metric]:.4f} ({top[TRIAL_KEY]})"
        )
    return Progress(ended, spec.trials, failed, running, best, time_left(trials, spec))
