"""How a study stands, from its Parquet store alone."""

from __future__ import annotations

import math

import pandas as pd

from .spec import SweepSpec
from .store import ENDED_STATUSES, STATUSES, Store
from .study import Study


def status_lines(study: Study, spec: SweepSpec) -> list[str]:
    trials = Store(study).trials()
    header = (f"study {spec.name} in {study.display()}: {spec.trials} trials asked, {spec.concurrent} at a time, "
              f"space {spec.space}, data {spec.data}")
    lines = [header]
    if not len(trials):
        return lines + ["no trial has started yet"]
    counts = trials["status"].value_counts()
    lines.append("trials: " + ", ".join(f"{counts.get(s, 0)} {s.lower()}" for s in STATUSES))
    completed = trials[trials["status"] == "COMPLETED"]
    for objective in spec.objectives:
        values = completed[objective.metric].astype(float).dropna()
        if len(values):
            best = completed.loc[values.idxmax() if objective.direction == "max" else values.idxmin()]
            lines.append(f"best {objective.metric} ({objective.direction}): {best[objective.metric]:.4f} (trial {best['trial_id']})")
        else:
            lines.append(f"best {objective.metric} ({objective.direction}): none yet")
    feasible = int(completed["feasible"].astype(bool).sum()) if len(completed) else 0
    targets = " and ".join(str(c) for c in spec.constraints) or "no constraints"
    lines.append(f"feasible ({targets}): {feasible} of {len(completed)} completed")
    lines.extend(_timing(trials, spec))
    return lines


def _timing(trials: pd.DataFrame, spec: SweepSpec) -> list[str]:
    start = trials["started_at"].min()
    ended = trials["ended_at"].dropna()
    running = (trials["status"] == "RUNNING").any()
    finished = trials[trials["status"].isin(ENDED_STATUSES)]
    end = pd.Timestamp.now(tz="UTC") if running or not len(ended) else ended.max()
    elapsed = (end - start).total_seconds()
    lines = [f"elapsed: {_duration(elapsed)} (first start to {'now' if running else 'last end'})"]
    left = spec.trials - len(finished)
    if left > 0 and len(finished):
        per_trial = (finished["ended_at"] - finished["started_at"]).dt.total_seconds().mean()
        lines.append(f"time left: about {_duration(math.ceil(left / spec.concurrent) * per_trial)} "
                     f"({left} trials of about {_duration(per_trial)}, {spec.concurrent} at a time)")
    elif left <= 0:
        lines.append("time left: none, every trial has finished")
    return lines


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
