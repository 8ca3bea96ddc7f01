"""Multi-objective asynchronous successive halving (`scheduler = "mo-asha"`).

Ray Tune's ASHA ranks trials on one metric, so on this study's objectives it stops first the
trials that build a good mastery estimate at a small AUC cost: the ones the front needs. Here a
trial that reaches a rung (epochs r, r*eta, r*eta^2, ... below its last) continues only if it
ranks in the top 1/eta (rounded up) of the trials recorded at that rung, ranked on all the
study's objectives at that epoch:

1. constraint domination, as in `search/analysis/pareto.py`: trials meeting every constraint first;
   among the others, the smaller total normalised violation first;
2. among the feasible, non-dominated sorting (moocore's `pareto_rank`): front 0, then 1, ...;
3. within a front, the larger hypervolume contribution first (moocore's `hv_contributions`,
   against the rung's worst values pushed out by 10%, as `pareto.reference_point` does).
   Hypervolume rather than crowding distance because hypervolume is what the study is measured
   by (`pareto.hypervolume`), and a point's contribution is exactly what the front loses
   without it;
4. a trial with a NaN objective ranks last.

Like ASHA, the decision is made once per trial and rung, against whoever has been recorded
there so far, so no trial waits for others. `rung_order` holds the ranking alone, and
`benchmarks/replay.py` feeds this same class, so the replay benchmark measures what a sweep does.

Trials are known by the store's trial id (a trial continued after a resume keeps its own) and
reach a rung at the epoch of their epoch row, not Tune's iteration count, which a continued
trial starts again from 1. Tune does not save a scheduler with its experiment, so a resumed
sweep has it hear the store's epoch rows again in the order they were reported (`replay_rows`):
every trial is recorded at the rungs it had reached, none is judged at one of them again, and
one stopped before the driver died (its stop decided and its epoch stored, the stop itself not yet
carried out) ends where it was stopped, before it trains again: Tune hears it end with the result
it was stopped on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import moocore
import numpy as np
import pandas as pd
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from gainakt.schema import reported_figures
from search.analysis.pareto import reference_of, total_violation
from search.schema import GUARANTEED, STOPPED_ITSELF, TRIAL_KEY, epoch_row_of, store_trial_id
from search.spec import Constraint, Objective, SweepSpec


def rungs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The epochs at which trials are compared: grace, grace*eta, ... while below `max_t`."""
    out, rung = [], grace_period
    while rung < max_t:
        out.append(rung)
        rung *= reduction_factor
    return out


def rung_order(
    results: pd.DataFrame, objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()
) -> np.ndarray:
    """The positions of `results` (one row per trial recorded at a rung: objective and constraint
    metrics) from best to worst, by constraint domination, non-dominated rank and hypervolume
    contribution; NaN objectives last."""
    values = np.column_stack([pd.to_numeric(results[o.metric], errors="coerce") for o in objectives]).astype(
        float
    )
    finite = np.isfinite(values).all(axis=1)
    violation = total_violation(results, constraints).to_numpy() if constraints else np.zeros(len(results))
    feasible = finite & (violation == 0)
    order: list[int] = []
    chosen = np.flatnonzero(feasible)
    if len(chosen):
        maximise = [o.direction == "max" for o in objectives]
        points = values[chosen]
        ranks = moocore.pareto_rank(points, maximise=maximise)
        reference = reference_of(points, objectives)  # the rung's worst values, pushed out
        contribution = np.empty(len(chosen))
        for rank in np.unique(ranks):
            same = np.flatnonzero(ranks == rank)
            contribution[same] = moocore.hv_contributions(points[same], ref=reference, maximise=maximise)
        best_first = sorted(range(len(chosen)), key=lambda i: (int(ranks[i]), -float(contribution[i]), i))
        order += [int(chosen[i]) for i in best_first]
    infeasible = np.flatnonzero(finite & ~feasible)
    order += [int(i) for i in infeasible[np.argsort(violation[infeasible], kind="stable")]]
    order += [int(i) for i in np.flatnonzero(~finite)]
    return np.array(order, dtype=int)


def trial_result(rows: Sequence[Mapping[str, Any]], stopped_itself: bool = False) -> dict[str, Any]:
    """The result Tune hears from the trainable (`search/run/trainable.py`) after the last of `rows`
    (the trial's epoch rows so far); `stopped_itself`: its trainer's patience ended it there."""
    numbers = {k: v for k, v in reported_figures(rows).items() if isinstance(v, (int, float))}
    return {
        "training_iteration": len(rows),
        **numbers,
        STOPPED_ITSELF: stopped_itself,
        "epoch_row": dict(rows[-1]),
    }


def make_scheduler(spec: SweepSpec, max_t: int, kind: str | None = None) -> TrialScheduler:
    """The study's scheduler (`kind` in its place, when given) for trials of `max_t` epochs."""
    kind = kind or spec.scheduler
    if kind == "asha":  # Ray's own: ranks on AUC alone
        return SweepASHA(
            metric="auc",
            mode="max",
            time_attr="training_iteration",
            max_t=max_t,
            grace_period=spec.grace_period,
            reduction_factor=spec.reduction_factor,
        )
    if kind == "mo-asha":
        return MultiObjectiveASHA(
            spec.objectives, spec.constraints, max_t, spec.grace_period, spec.reduction_factor
        )
    return SweepFIFO()


class ForgetsRestoredDecisions(TrialScheduler):
    """Mixed into every scheduler of a sweep: a trial Tune restores from its saved state starts
    with no decision pending.

    Tune saves, with the experiment's state, the decision a trial's result left waiting on the
    save of its checkpoint, and a resumed run carries it out: a trial whose worker died during
    that save (it errored, a STOP kept) came back with the STOP and ended after its first epoch.
    """

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        controller = getattr(tune_controller, "_tune_controller", tune_controller)  # Tune's wrapper
        for pending in ("_cached_trial_decisions", "_queued_trial_decisions"):
            getattr(controller, pending, {}).pop(trial.trial_id, None)
        super().on_trial_add(tune_controller, trial)


class SweepFIFO(ForgetsRestoredDecisions, FIFOScheduler):
    """Tune's first-in, first-out scheduler (`scheduler = "fifo"`): no trial stopped early."""


class SweepASHA(ForgetsRestoredDecisions, ASHAScheduler):
    """Ray Tune's ASHA (`scheduler = "asha"`): ranks trials on AUC alone."""


class MultiObjectiveASHA(ForgetsRestoredDecisions, FIFOScheduler):
    """Ray Tune's scheduler for `scheduler = "mo-asha"`: see the module's docstring."""

    def __init__(
        self,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint],
        max_t: int,
        grace_period: int = 1,
        reduction_factor: int = 2,
        time_attr: str = "training_iteration",
    ) -> None:
        super().__init__()
        if grace_period < 1 or reduction_factor < 2:
            raise ValueError("grace_period must be >= 1 and reduction_factor >= 2")
        self.objectives, self.constraints = tuple(objectives), tuple(constraints)
        self.reduction_factor, self.time_attr = reduction_factor, time_attr
        self.milestones = rungs(grace_period, reduction_factor, max_t)
        # rung -> trial id -> its objective and constraint metrics when it reached the rung
        self.recorded: dict[int, dict[str, dict[str, float]]] = {r: {} for r in self.milestones}
        self.stopped = 0
        # trial id -> the result it was stopped on, by the driver before a resume (`replay_rows`)
        self.stopped_before: dict[str, dict[str, Any]] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the objectives are its own; Tune's single metric does not apply

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self.decide(store_trial_id(trial.config, trial.trial_id), result)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The next trial to run, once every waiting trial that was stopped before a resume has
        ended: it would otherwise train an epoch more before its next result is stopped."""
        for trial in tune_controller.get_trials():
            if trial.status in (Trial.PENDING, Trial.PAUSED):
                stopped_on = self.stopped_before.get(store_trial_id(trial.config, trial.trial_id))
                if stopped_on is not None:
                    # The searcher hears the result first, as for a trial stopped while running
                    # (Tune tells it of a waiting trial's end with no result, which it then ignores).
                    trial.init_local_path()  # Tune's result grid lists every trial's folder
                    trial.update_last_result(dict(stopped_on))
                    tune_controller.search_alg.on_trial_complete(trial.trial_id, result=dict(stopped_on))
                    tune_controller.stop_trial(trial)
        return super().choose_trial_to_run(tune_controller)

    def replay_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Hear again, in the order given (the store's `reported_at`), the epoch rows a driver that
        died had heard, each as the trainable reported it: the rungs are recorded as they were, and
        a trial stopped then (its end perhaps never stored) is stopped at its next result."""
        seen: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            trial_id = str(row[TRIAL_KEY])
            epochs = seen.setdefault(trial_id, [])
            epochs.append(row)
            result = trial_result(epochs)
            if self.decide(trial_id, result) == TrialScheduler.STOP:
                self.stopped_before[trial_id] = result

    def decide(self, trial_id: str, result: Mapping[str, Any]) -> str:
        """CONTINUE or STOP for a trial's result."""
        if trial_id in self.stopped_before:
            return TrialScheduler.STOP
        reached = epoch_row_of(result).get("epoch", result.get(self.time_attr))
        if reached is None:
            return TrialScheduler.CONTINUE
        passed = [rung for rung in self.milestones if rung <= reached]
        if not passed or trial_id in self.recorded[passed[-1]]:
            return TrialScheduler.CONTINUE  # judged once, at the highest rung it reached
        rung = passed[-1]
        self.recorded[rung][trial_id] = self._metrics(result)
        if not self._kept(rung, trial_id):
            self.stopped += 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _metrics(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The objective and constraint figures of `result`, and what its model fixes by construction."""
        names = [o.metric for o in self.objectives] + [c.metric for c in self.constraints]
        return {**{m: _number(result.get(m)) for m in names}, GUARANTEED: result.get(GUARANTEED, "")}

    def _kept(self, rung: int, trial_id: str) -> bool:
        recorded = self.recorded[rung]
        ids = list(recorded)
        order = rung_order(pd.DataFrame([recorded[t] for t in ids]), self.objectives, self.constraints)
        kept = math.ceil(len(ids) / self.reduction_factor)
        return ids.index(trial_id) in set(order[:kept].tolist())

    def debug_string(self) -> str:
        counts = ", ".join(f"{rung}: {len(seen)}" for rung, seen in self.recorded.items())
        return f"MultiObjectiveASHA: {self.stopped} stopped; trials recorded per rung {{{counts}}}"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
