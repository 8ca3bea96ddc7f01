"""How far a sweep is: trials ended and running, the best feasible figure so far, and the time left
estimated from the ended trials' durations (the `status` command and the line a sweep prints after
each trial)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from search.analysis.pareto import best_trial, feasible, ranking_of
from search.schema import TRIAL_KEY, TrialStatus
from search.spec import SweepSpec


@dataclass(frozen=True)
class TimeLeft:
    seconds: float
    trials: int  # not ended yet
    per_trial: float  # mean seconds of an ended trial


def time_left(trials: pd.DataFrame, spec: SweepSpec) -> TimeLeft | None:
    """The time the trials not ended yet should take, `spec.concurrent` at a time, each as long as
    the ended ones took on average; None before any trial has ended or once all have."""
    if not len(trials):
        return None
    ended = trials[trials["status"].map(lambda s: TrialStatus(s).ended)]
    left = spec.trials - len(ended)
    if left <= 0 or not len(ended):
        return None
    per_trial = float((ended["ended_at"] - ended["started_at"]).dt.total_seconds().mean())
    if not math.isfinite(per_trial):
        return None
    return TimeLeft(math.ceil(left / spec.concurrent) * per_trial, left, per_trial)


def duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def progress_line(trials: pd.DataFrame, spec: SweepSpec) -> str:
    """`progress: 5 of 8 trials ended (1 failed), 2 running; best feasible auc 0.7098 (t00003);
    about 1m20s left`."""
    statuses = trials["status"].value_counts().to_dict() if len(trials) else {}
    ended = sum(n for status, n in statuses.items() if TrialStatus(status).ended)
    failed, running = statuses.get(TrialStatus.ERROR.value, 0), statuses.get(TrialStatus.RUNNING.value, 0)
    parts = [f"progress: {ended} of {spec.trials} trials ended ({failed} failed), {running} running"]
    completed = trials[trials["status"] == TrialStatus.COMPLETED.value] if len(trials) else trials
    if len(completed):
        metric, _ = ranking_of(spec.objectives)
        best = best_trial(completed[feasible(completed, spec.constraints)], spec.objectives)
        parts.append(
            "no feasible trial yet"
            if best is None
            else f"best feasible {metric} {best[metric]:.4f} ({best[TRIAL_KEY]})"
        )
    left = time_left(trials, spec)
    if left is not None:
        parts.append(f"about {duration(left.seconds)} left")
    return "; ".join(parts)
