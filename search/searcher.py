"""Optuna as Tune's searcher: the space wrapper, the samplers, and constraint-aware completion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from spaces import get_space

from .spec import Constraint, SweepSpec
from .store import Store
from .study import Study

NAN_VIOLATION = 1e9  # what a NaN constraint metric counts as: far from feasible


@dataclass(frozen=True)
class TrialSpace:
    """Define-by-run wrapper: the space's settings under `settings`, plus a seed and number per trial."""

    space: str
    seed: int

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        settings = get_space(self.space)(trial)
        return {"settings": settings, "seed": self.seed + trial.number, "number": trial.number}


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """Samplers that know constraints read them from each trial (`Trial.set_constraint`, Optuna 5)."""
    startup = min(10, max(2, spec.trials // 3))
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=startup)
    if spec.sampler == "nsga2":
        population = min(50, max(4, spec.trials // 4))
        return optuna.samplers.NSGAIISampler(seed=spec.seed, population_size=population)
    if spec.sampler == "gp":
        return optuna.samplers.GPSampler(seed=spec.seed, n_startup_trials=startup)
    return optuna.samplers.RandomSampler(seed=spec.seed)


def violations(constraints: Sequence[Constraint], result: dict[str, Any]) -> dict[str, float]:
    """Each constraint's violation, keyed by its text (0 when met; Optuna allows no NaN)."""
    out = {}
    for constraint in constraints:
        gap = constraint.violation(float(result.get(constraint.metric, math.nan)))
        out[str(constraint)] = gap if math.isfinite(gap) else NAN_VIOLATION
    return out


@dataclass(frozen=True)
class TrialBudget:
    """The number of trials a study runs in all, lost trials not counted, and where its store is."""

    storage: str
    name: str
    trials: int

    def ended_trial_ids(self) -> set[str]:
        return Store(Study(self.storage, self.name)).ended_trial_ids()


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch that sets the constraint violations before `tell`, fails trials with NaN
    objectives or errors, after a resume never tells a finished Optuna trial twice, and
    stops suggesting once the study's budget of trials is taken."""

    def __init__(self, *, constraints: Sequence[Constraint] = (), budget: TrialBudget | None = None,
                 **kwargs: Any) -> None:
        self._constraints = tuple(constraints)
        self._budget = budget
        self._ended_before: set[str] | None = None  # read from the store once per driver process
        super().__init__(**kwargs)

    def suggest(self, trial_id: str) -> dict | str | None:
        # A restored Tuner counts trials from its last saved state, which may predate trials that
        # ended (and were stored) just before the driver died: without this check it would run
        # more trials than asked for.
        if self._budget is not None:
            if self._ended_before is None:
                self._ended_before = self._budget.ended_trial_ids()
            if len(self._ended_before | self._ot_trials.keys() | {trial_id}) > self._budget.trials:
                return Searcher.FINISHED
        return super().suggest(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._ended_before = None  # the saved set is stale: trials may have ended after it was saved

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return
        self._completed_trials.add(trial_id)
        values = [result.get(metric) for metric in self._metric] if result and not error else None
        complete = values is not None and all(v is not None and math.isfinite(v) for v in values)
        state = self._ot_study.get_trials(deepcopy=False)[ot_trial.number].state
        if state == TrialState.COMPLETE:  # told before the driver stopped; Tune only re-announced it
            return
        if state == TrialState.FAIL:
            if complete:  # an errored trial retried after a resume: Optuna cannot reopen it, so record it anew
                self._ot_study.add_trial(optuna.trial.create_trial(
                    params=ot_trial.params, distributions=ot_trial.distributions, values=values,
                    constraints=violations(self._constraints, result), user_attrs={"retry_of": ot_trial.number},
                ))
            return
        if complete:
            for key, value in violations(self._constraints, result).items():
                ot_trial.set_constraint(key, value)
            self._ot_study.tell(ot_trial, values)
        else:
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
