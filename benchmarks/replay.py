"""Schedulers replayed on a recorded study's learning curves, on a simulated clock.

A finished study whose every trial ran all its epochs (scheduler fifo) is a table: each trial's
figures and seconds at every epoch. `replay` runs simulated workers over it: a worker takes the
next trial and runs it epoch by epoch (each epoch takes its recorded seconds); the scheduler is
fed each epoch's result as the trainable reports it (`trial_result`: the figures of the epoch
the trial would deploy so far) and says whether the trial goes on. The next trial comes from a
fixed order (`ordered`), or from the study's own searcher and sampler told of every result
(`sampled`), which runs the recorded trial nearest to each proposal. The scheduler objects are
those the sweep uses (`Feed`), so what is measured here is what a sweep would do, and
`tests/search_tests/run_tests/test_sweep.py` checks that a real sweep's decisions replay the same.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, get_args

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from gainakt.schema import select_epoch
from search.analysis import pareto
from search.run.recorder import open_optuna_study
from search.run.schedulers import make_scheduler, trial_result
from search.run.searcher import StoppedAs, StudySearcher, TrialSpace, make_sampler
from search.schema import TrialStatus
from search.spec import Scheduler, SweepSpec
from search.store.segments import Store
from search.store.study import Study

SCHEDULERS: tuple[str, ...] = get_args(Scheduler)


@dataclass(frozen=True)
class Curves:
    """A recorded study: per trial, its epoch rows in order and its Optuna parameters."""

    spec: SweepSpec
    rows: Mapping[str, list[dict[str, Any]]]
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    distributions: Mapping[str, BaseDistribution] = field(default_factory=dict)

    @classmethod
    def read(cls, storage: str, name: str) -> Curves:
        study = Study(storage, name)
        spec = study.read_spec()
        if spec.scheduler != "fifo":
            raise ValueError(
                f"{study.location}: scheduler {spec.scheduler}; replay a study recorded with fifo"
            )
        store = Store(study)
        epochs, trials = store.epochs(), store.trials()
        rows = {t: frame.sort_values("epoch").to_dict("records") for t, frame in epochs.groupby("trial_id")}
        numbers = dict(zip(trials["number"], trials["trial_id"], strict=True))
        params: dict[str, Mapping[str, Any]] = {}
        distributions: dict[str, BaseDistribution] = {}
        try:
            for trial in open_optuna_study(study.prepare_journal(), name).get_trials(deepcopy=False):
                if numbers.get(trial.number) in rows:
                    params[numbers[trial.number]] = trial.params
                    distributions.update(trial.distributions)
        finally:
            study.drop_journal_copy()
        return cls(spec, rows, params, distributions)

    @property
    def epochs(self) -> int:
        """The epochs a trial is asked for: a trial shorter than that ended by its trainer's patience."""
        return max(len(r) for r in self.rows.values())

    def final(self, trials: Iterable[str]) -> pd.DataFrame:
        """The trials' figures run to their full length, at the epoch each would deploy."""
        return deployed(self.rows[t] for t in trials)


def deployed(curves: Iterable[Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """One completed trial per curve (its epoch rows so far), at the epoch it would deploy."""
    return pd.DataFrame([select_epoch(rows) for rows in curves]).assign(status=TrialStatus.COMPLETED.value)


class Feed:
    """One scheduler of the sweep (`search/run/sweep.py` makes the same), fed as Tune feeds it."""

    def __init__(self, kind: str, spec: SweepSpec, epochs: int) -> None:
        if kind not in SCHEDULERS:
            raise ValueError(f"scheduler {kind!r}: one of {', '.join(SCHEDULERS)}")
        self.scheduler = make_scheduler(spec, epochs, kind)
        self._stubs: dict[str, Trial] = {}

    def add(self, trial_id: str) -> None:
        self._stubs[trial_id] = Trial("replay", config={}, trial_id=trial_id, stub=True)
        if isinstance(self.scheduler, ASHAScheduler):
            self.scheduler.on_trial_add(None, self._stubs[trial_id])  # type: ignore[arg-type]  # ASHA never reads it

    def decide(self, trial_id: str, result: Mapping[str, Any]) -> str:
        """CONTINUE or STOP, as the scheduler answers Tune's `on_trial_result`."""
        stub = self._stubs[trial_id]
        return str(self.scheduler.on_trial_result(None, stub, dict(result)))  # type: ignore[arg-type]  # no Tune


@dataclass
class Run:
    """One replay: what it observed and when."""

    trial_epochs: int = 0
    seconds: float = 0.0
    reached_at: tuple[float, float] | None = None  # (trial-epochs, seconds) when it first reached the goal
    hypervolume: float = 0.0  # of what it observed, each trial at the epoch it would deploy
    observed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)  # trials the scheduler ended before their curve did


# What feeds the workers: the next recorded trial to run (None: no more), and the hooks told of
# each result and of each trial's end.
Propose = Callable[[], str | None]
Hook = Callable[[str, dict[str, Any]], None]


def _nothing(trial: str, result: dict[str, Any]) -> None:
    return None


def replay(
    curves: Curves,
    feed: Feed,
    workers: int,
    propose: Propose,
    reference: np.ndarray,
    goal: float = math.inf,
    on_result: Hook = _nothing,
    on_end: Hook = _nothing,
) -> Run:
    """Simulate `workers` workers running the proposed trials under `feed`'s scheduler."""
    run, epochs = Run(), curves.epochs
    events: list[tuple[float, int, str]] = []  # (when a trial's next epoch ends, tie-break, trial)
    tie = 0

    def start(at: float) -> None:
        nonlocal tie
        trial = propose()
        if trial is None:
            return
        feed.add(trial)
        run.observed[trial] = []
        heapq.heappush(events, (at + float(curves.rows[trial][0]["seconds"]), tie, trial))
        tie += 1

    for _ in range(workers):
        start(0.0)
    while events:
        now, _, trial = heapq.heappop(events)
        seen = run.observed[trial]
        seen.append(curves.rows[trial][len(seen)])
        run.trial_epochs += 1
        run.seconds = now
        watching = run.reached_at is None and goal < math.inf  # no goal: no hypervolume per epoch
        if watching and hypervolume(run.observed, curves, reference) >= goal:
            run.reached_at = (run.trial_epochs, now)
        curve = curves.rows[trial]
        result = trial_result(seen, stopped_itself=len(seen) == len(curve) < epochs)
        on_result(trial, result)
        goes_on = feed.decide(trial, result) == TrialScheduler.CONTINUE
        if len(seen) < len(curve) and goes_on:
            heapq.heappush(events, (now + float(curve[len(seen)]["seconds"]), tie, trial))
            tie += 1
            continue
        if len(seen) < len(curve):
            run.stopped.add(trial)
        on_end(trial, result)
        start(now)
    run.hypervolume = hypervolume(run.observed, curves, reference)
    return run


def hypervolume(observed: Mapping[str, list[dict[str, Any]]], curves: Curves, reference: np.ndarray) -> float:
    """Of the observed trials' front, each at the epoch it would deploy among those it ran."""
    seen = [rows for rows in observed.values() if rows]
    if not seen:
        return 0.0
    return pareto.hypervolume(deployed(seen), curves.spec.objectives, reference)


def ordered(order: Sequence[str]) -> Propose:
    """The trials of `order`, first to last."""
    queue = list(reversed(order))
    return lambda: queue.pop() if queue else None


@dataclass
class Sampled:
    """The study's searcher in the loop: it proposes (its sampler seeded anew), the recorded trial
    nearest to each proposal runs, and the searcher is told its results and end as in a sweep."""

    curves: Curves
    budget: int
    seed: int
    stopped_as: StoppedAs = "complete"
    searcher: StudySearcher = field(init=False)
    running: dict[str, str] = field(default_factory=dict)  # recorded trial -> Tune's trial id, once run
    proposed: int = 0

    def __post_init__(self) -> None:
        spec = replace(self.curves.spec, seed=self.seed, trials=self.budget)
        self.searcher = StudySearcher(
            space=TrialSpace(spec.space, spec.seed, spec.seed_mode, spec.gains_judged),
            metric=spec.metric_names,
            mode=spec.modes,
            sampler=make_sampler(spec),
            study_name="replay",
            storage=optuna.storages.InMemoryStorage(),
            constraints=spec.constraints,
            epochs=self.curves.epochs,
            stopped_as=self.stopped_as,
        )

    def propose(self) -> str | None:
        if self.proposed >= self.budget:
            return None
        tune_id = f"proposal_{self.proposed}"
        self.proposed += 1
        config = self.searcher.suggest(tune_id)
        assert isinstance(config, dict)
        params = {k: v for k, v in config.items() if k in self.curves.distributions}
        trial = nearest(params, self.curves, exclude=set(self.running))  # each recorded trial runs once
        self.running[trial] = tune_id
        return trial

    def on_result(self, trial: str, result: dict[str, Any]) -> None:
        self.searcher.on_trial_result(self.running[trial], result)

    def on_end(self, trial: str, result: dict[str, Any]) -> None:
        self.searcher.on_trial_complete(self.running[trial], result)


def nearest(params: Mapping[str, Any], curves: Curves, exclude: set[str]) -> str:
    """The recorded trial closest to `params`: over every parameter either side has, a missing or a
    different categorical counts 1, a number its difference over the distribution's range (of the
    logarithms, for a log distribution)."""

    def gap(name: str, a: Any, b: Any) -> float:
        if a is None or b is None:
            return 1.0
        dist = curves.distributions[name]
        if isinstance(dist, CategoricalDistribution) or not isinstance(
            dist, (FloatDistribution, IntDistribution)
        ):
            return float(a != b)
        low, high, x, y = float(dist.low), float(dist.high), float(a), float(b)
        if dist.log:
            low, high, x, y = (math.log(v) for v in (low, high, x, y))
        return abs(x - y) / (high - low) if high > low else 0.0

    def distance(trial: str) -> float:
        other = curves.params[trial]
        return sum(gap(n, params.get(n), other.get(n)) for n in params.keys() | other.keys())

    candidates = sorted(t for t in curves.params if t not in exclude)
    return min(candidates, key=distance)
