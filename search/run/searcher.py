"""The sweep's Tune searcher: the project's own `ray.tune.search.Searcher` over its Optuna study.

Why our own searcher and not a subclass of Ray's `OptunaSearch`: the constraints, the NaN and
error handling, the resume bookkeeping and the trial budget all need the Optuna study and
trials that `OptunaSearch` keeps in private attributes (`_ot_study`, `_ot_trials`, ...), so any
Ray release could break a resume without a visible error. Here Tune sees only its Searcher
interface (`suggest`, `on_trial_complete`, `save`/`restore`, `get_state`/`set_state`,
`set_search_properties`, `metric`/`mode`, `Searcher.FINISHED`), and the study is used through
public Optuna API only (`create_study`/`load_study`, `ask`, `enqueue_trial`, `tell`, `add_trial`,
`Trial.set_constraint`; a trial asked before a resume is reopened by its number through the
`BaseStorage` lookups and the documented `optuna.Trial(study, trial_id)`).

So pyproject.toml bounds `ray[tune]` by its major version only. Ray marks `Searcher` a
DeveloperAPI, so `tests/search_tests/run_tests/test_searcher.py` checks that the methods Tune
calls keep the signatures used here (failing with the method's name), and
`tests/search_tests/run_tests/test_sweep.py` runs the searcher under real Tune, kill and resume
included.

The saved state (Tune's experiment checkpoint) is the map from Tune trial id to Optuna trial
number, plus the sampler so a resumed sweep does not draw its first samples again.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import pyarrow.fs as pafs
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator

from search.schema import (
    CONTINUES,
    EPOCHS_ATTR,
    FEASIBLE,
    GUARANTEED,
    RESUME_FROM,
    SELECTED_EPOCH_ATTR,
    STATUS_ATTR,
    TUNE_TRIAL_ATTR,
    TrialStatus,
    epoch_row_of,
    fixed_metrics,
    stopped_by_scheduler,
)
from search.spec import Constraint, SeedMode, SweepSpec
from search.store.segments import Store
from search.store.study import Study
from spaces import GAINS_JUDGED, get_space

# What Optuna is told of a trial the scheduler stopped: its values at the epoch it selected among
# those it ran, as a completed trial, or nothing but that it was pruned (the README says which is
# the default, and the replay benchmark's measurement behind it).
StoppedAs = Literal["complete", "pruned"]
STOPPED_AS: tuple[StoppedAs, ...] = ("complete", "pruned")
NAN_VIOLATION = 1e9  # what a NaN constraint metric counts as: far from feasible
_DIRECTIONS = {"max": StudyDirection.MAXIMIZE, "min": StudyDirection.MINIMIZE}


@dataclass(frozen=True)
class TrialSpace:
    """Define-by-run wrapper: the space's settings under `settings`, plus a seed and number per trial.

    With `seed_mode` common every trial trains with the sweep's seed, so trials that differ only in
    their settings differ in nothing else (common random numbers); `per-trial` gives trial n the
    seed `seed + n`.
    """

    space: str
    seed: int
    seed_mode: SeedMode = "common"
    gains_judged: bool = False  # the study's objectives or constraints read the gains (the space's hint)

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        trial.set_user_attr(GAINS_JUDGED, self.gains_judged)
        settings = get_space(self.space)(trial)
        seed = self.seed + trial.number if self.seed_mode == "per-trial" else self.seed
        return {"settings": settings, "seed": seed, "number": trial.number}


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


def violations(constraints: Sequence[Constraint], result: Mapping[str, Any]) -> dict[str, float]:
    """Each constraint's violation, keyed by its text (0 when met or fixed by the trial's model;
    Optuna allows no NaN)."""
    out = {}
    fixed = fixed_metrics(result.get(GUARANTEED, ""))
    for constraint in constraints:
        value = float(result.get(constraint.metric, math.nan))
        gap = constraint.violation(value, constraint.metric in fixed)
        out[str(constraint)] = gap if math.isfinite(gap) else NAN_VIOLATION
    return out


def tell_ending(
    trial: optuna.Trial,
    status: TrialStatus,
    values: Sequence[float] = (),
    gaps: Mapping[str, float] | None = None,
    selected: int | None = None,
    pruned: bool = False,
) -> None:
    """Tell a running Optuna trial how its store row ended: completed or stopped with its objective
    values and constraint violations (`violations`), or failed (ERROR)."""
    trial.set_user_attr(STATUS_ATTR, status.value)
    if status == TrialStatus.ERROR:
        trial.study.tell(trial, state=TrialState.FAIL)
        return
    for key, value in (gaps or {}).items():
        trial.set_constraint(key, value)
    # optuna-dashboard 0.21 reads only the pre-Optuna-5 constraint list: say it as an attribute too
    trial.set_user_attr(FEASIBLE, _feasible(gaps or {}))
    trial.set_user_attr(SELECTED_EPOCH_ATTR, selected)
    if pruned:
        trial.study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.study.tell(trial, list(values))


def _as_float(value: Any) -> float:
    """`value` as a float, NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _feasible(gaps: Mapping[str, float]) -> bool:
    """Whether every constraint is met, from `violations` (a NaN metric counts as far from it)."""
    return all(gap <= 0 for gap in gaps.values())


def _selected(result: Mapping[str, Any]) -> int | None:
    value = result.get("selected_epoch")
    return int(value) if value is not None else None


@dataclass(frozen=True)
class TrialBudget:
    """The number of trials a study runs in all, lost trials not counted, and where its store is."""

    storage: str
    name: str
    trials: int

    def ended_trial_ids(self) -> set[str]:
        return Store(Study(self.storage, self.name)).ended_trial_ids()


class StudySearcher(Searcher):
    """Suggests trials from an Optuna study (ask, then the define-by-run space) and tells it their end.

    Constraint violations are set before `tell`; a NaN or missing objective, or an error, is told
    as FAIL. After a resume a finished Optuna trial is never told twice, and an errored trial that
    Tune retried and now completes is recorded anew (`user_attrs={"retry_of": number}`; the store
    takes its number, `renumbered`). With a
    `budget`, suggestions stop once the ended trials in the store plus the suggested ones fill it.
    Given the `epochs` a trial is asked for, a trial that ended before its last epoch, not by its
    trainer's patience, is one the scheduler stopped: told as `stopped_as` says.
    """

    def __init__(
        self,
        *,
        space: TrialSpace,
        metric: Sequence[str],
        mode: Sequence[str],
        storage: BaseStorage,
        study_name: str,
        sampler: optuna.samplers.BaseSampler | None = None,
        constraints: Sequence[Constraint] = (),
        budget: TrialBudget | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        epochs: int | None = None,
        stopped_as: StoppedAs = "complete",
    ) -> None:
        if stopped_as not in STOPPED_AS:
            raise ValueError(f"stopped_as {stopped_as!r}: one of {', '.join(STOPPED_AS)}")
        if len(metric) != len(mode) or any(m not in _DIRECTIONS for m in mode):
            raise ValueError(f"modes {list(mode)} must be 'max' or 'min', one per metric {list(metric)}")
        # Ray types metric and mode as str; lists are its multi-objective form.
        super().__init__(metric=list(metric), mode=list(mode))  # type: ignore[arg-type]  # see above
        self._space = space
        self._storage = storage
        self._study_name = study_name
        self._sampler = sampler or optuna.samplers.TPESampler()
        self._constraints = tuple(constraints)
        self._budget = budget
        self._epochs, self._stopped_as = epochs, stopped_as
        self._numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number: the saved state
        self._continuations: list[tuple[str, int, str]] = []  # (row id, number, checkpoint), for this driver
        # Tune trial id -> the number of the Optuna trial that records its retry (a FAIL cannot reopen)
        self.renumbered: dict[str, int] = {}
        self._ended_before: set[str] | None = None  # read from the store once per driver process
        self._study: optuna.Study | None = optuna.create_study(
            storage=storage,
            sampler=self._sampler,
            pruner=optuna.pruners.NopPruner(),
            study_name=study_name,
            directions=[_DIRECTIONS[m] for m in mode],
            load_if_exists=True,
        )
        if self.study.metric_names is None:  # optuna-dashboard and Optuna's plots name the objectives
            with warnings.catch_warnings():  # "experimental since 3.2": stable in use, still so marked
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(list(metric))
        if points_to_evaluate and not self.study.get_trials(deepcopy=False):  # a new study only
            for point in points_to_evaluate:
                self.study.enqueue_trial(dict(point))  # asked (so run) before any sampled trial

    # ------------------------------------------------------------------ Tune's Searcher interface

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """The space is the define-by-run `TrialSpace` given at construction: accept no other."""
        return not config and metric in (None, self.metric) and mode in (None, self.mode)

    # Ray's annotation leaves out the FINISHED string this may return.
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # see above
        """The next trial's config (`settings`, `seed`, `number`, the raw Optuna parameters) or FINISHED."""
        # A restored Tuner counts trials from its last saved state, which may predate trials that
        # ended (and were stored) just before the driver died: without this check it would run
        # more trials than asked for.
        if self._budget is not None:
            if self._ended_before is None:
                self._ended_before = self._budget.ended_trial_ids()
            if len(self._ended_before | self._numbers.keys() | {trial_id}) > self._budget.trials:
                return Searcher.FINISHED
        continuation: dict[str, Any] = {}
        if trial_id in self._numbers:
            trial = self._live_trial(self._numbers[trial_id])  # suggesting again returns the same values
        elif self._continuations:  # a trial the restored Tuner lost, continued from its checkpoint
            row_id, number, checkpoint = self._continuations.pop(0)
            trial = self._live_trial(number)
            self._numbers[trial_id] = number
            continuation = {CONTINUES: row_id, RESUME_FROM: checkpoint}
        else:
            trial = self.study.ask()  # a start point first, while any is waiting
            self._numbers[trial_id] = trial.number
            trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
            trial.set_user_attr(STATUS_ATTR, TrialStatus.RUNNING.value)
        config = self._space(trial)
        return {**trial.params, **config, **continuation}

    def forget_unknown(self, known: set[str]) -> None:
        """Drop the Tune trials suggested before a crash that neither the restored Tuner nor the store
        knows (asked, then lost before they started): they will never run, and would hold places of
        the budget forever."""
        self._numbers = {tid: n for tid, n in self._numbers.items() if tid in known}

    def continue_trial(self, row_id: str, number: int, checkpoint: str) -> None:
        """Have the next trial Tune asks for be Optuna trial `number` again, continuing the store's
        row `row_id` from `checkpoint` (a trial started after Tune's last saved state)."""
        self._continuations.append((row_id, number, checkpoint))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Keep each epoch's objective values on the Optuna trial (`epoch_values`): a multi-objective
        study has no intermediate values."""
        number = self._numbers.get(trial_id)
        row = epoch_row_of(result)
        if number is None or "epoch" not in row:
            return
        frozen = self._frozen_trial(number)
        if frozen.state != TrialState.RUNNING:
            return
        curve = dict(frozen.user_attrs.get(EPOCHS_ATTR, {}))
        curve[str(int(row["epoch"]))] = {m: _as_float(row.get(m)) for m in self.metric}
        trial = self._live_trial(number)
        trial.set_user_attr(EPOCHS_ATTR, curve)
        if "selected_epoch" in result:
            trial.set_user_attr(SELECTED_EPOCH_ATTR, _selected(result))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell the study how the trial ended (once), with its constraint violations."""
        number = self._numbers.get(trial_id)
        if number is None:
            return
        values = [_as_float(result.get(metric)) for metric in self.metric] if result and not error else None
        complete = values is not None and all(math.isfinite(v) for v in values)
        frozen = self._frozen_trial(number)
        if frozen.state == TrialState.COMPLETE:  # told before the driver stopped; Tune only re-announced it
            return
        if frozen.state == TrialState.FAIL:
            if complete and not self._retried(number):  # an errored trial retried after a resume
                assert result is not None and values is not None
                gaps = violations(self._constraints, result)
                self.study.add_trial(
                    optuna.trial.create_trial(  # Optuna cannot reopen it: record it anew
                        params=frozen.params,
                        distributions=frozen.distributions,
                        values=values,
                        constraints=gaps,
                        user_attrs={
                            **frozen.user_attrs,
                            "retry_of": number,
                            STATUS_ATTR: TrialStatus.COMPLETED.value,
                            SELECTED_EPOCH_ATTR: _selected(result),
                            FEASIBLE: _feasible(gaps),
                        },
                    )
                )
                self.renumbered[trial_id] = max(t.number for t in self.study.get_trials(deepcopy=False))
            return
        if frozen.state != TrialState.RUNNING:
            return
        trial = self._live_trial(number)
        if not complete:
            tell_ending(trial, TrialStatus.ERROR)
            return
        assert result is not None and values is not None
        stopped = self._stopped_by_scheduler(result)
        tell_ending(
            trial,
            TrialStatus.STOPPED if stopped else TrialStatus.COMPLETED,
            values,
            violations(self._constraints, result),
            _selected(result),
            pruned=stopped and self._stopped_as == "pruned",
        )

    def _stopped_by_scheduler(self, result: Mapping[str, Any]) -> bool:
        epoch = epoch_row_of(result).get("epoch")
        if self._epochs is None or epoch is None:
            return False  # a space that samples the epochs: told as completed
        return stopped_by_scheduler(int(epoch), self._epochs, result)

    def get_state(self) -> dict[str, Any]:
        return {"numbers": dict(self._numbers), "sampler": self._sampler}

    def set_state(self, state: dict[str, Any]) -> None:
        self._numbers = dict(state["numbers"])
        self._continuations = []
        self._sampler = state["sampler"]
        self._study = None  # reopened with this sampler when next needed
        self._ended_before = None  # the saved set is stale: trials may have ended after it was saved

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))

    # ------------------------------------------------------------------ pickling (Tune keeps the Tuner's)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_study=None, _ended_before=None)  # the study is reopened from its storage
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # The study is opened when first needed, not here: a restored Tuner unpickles the searcher
        # the study started with, whose journal may be in a folder the study has since left.
        self.__dict__.update(state)
        self.__dict__.setdefault("_continuations", [])  # pickled before trials could be continued
        self.__dict__.setdefault("_epochs", None)  # pickled before stopped trials were told apart
        self.__dict__.setdefault("_stopped_as", "complete")
        self.__dict__.setdefault("renumbered", {})

    # ------------------------------------------------------------------ the study

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = self._load_study()
        return self._study

    def _load_study(self) -> optuna.Study:
        return optuna.load_study(
            study_name=self._study_name,
            storage=self._storage,
            sampler=self._sampler,
            pruner=optuna.pruners.NopPruner(),
        )

    def _storage_trial_id(self, number: int) -> int:
        study_id = self._storage.get_study_id_from_name(self._study_name)
        return self._storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def _frozen_trial(self, number: int) -> FrozenTrial:
        return self._storage.get_trial(self._storage_trial_id(number))

    def _live_trial(self, number: int) -> optuna.Trial:
        """The running trial `number`, as `ask` returned it (asked perhaps before a resume)."""
        return optuna.Trial(self.study, self._storage_trial_id(number))

    def _retried(self, number: int) -> bool:
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return any(trial.user_attrs.get("retry_of") == number for trial in done)


class StudySearchGenerator(SearchGenerator):
    """What Tune makes of a Searcher (a ConcurrencyLimiter inside a SearchGenerator), except that
    on restoring, the experiment it saved, in whose folder new trials are created, is pointed at
    the folder the study is in now: Tune does that for the trials it restores, not for those still
    to come, so a copied or moved study would go on creating trials in its old place."""

    def __init__(
        self,
        searcher: Searcher,
        concurrent: int,
        fs: pafs.FileSystem,
        study_root: str,
        experiment: str,
        trials: int,
    ) -> None:
        super().__init__(ConcurrencyLimiter(searcher, max_concurrent=concurrent))
        self._here = (fs, study_root, experiment)
        self._trials = trials  # the study's total now: more than a grown study's saved Tuner was asked

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # The ConcurrencyLimiter drops the end of a trial it did not see start in this driver, as
        # is an errored trial that a resume retries: the study must still hear of it.
        limiter = self.searcher
        if isinstance(limiter, ConcurrencyLimiter) and trial_id not in limiter.live_trials:
            limiter.searcher.on_trial_complete(trial_id, result=result, error=error)
        else:
            super().on_trial_complete(trial_id, result=result, error=error)

    def restore_from_dir(self, dirpath: str) -> None:
        """Restore from the study's own saved state. Tune stages it in a folder of Ray's session
        named by the time the study's run first started, which it reuses on every restore; so a
        copy of the study resumed earlier in the same Ray session has left its newer state files
        there, which Tune would restore instead (and upload into this study with its next save).
        Every file there that the study's experiment folder lacks goes first."""
        fs, root, experiment = self._here
        own = {info.base_name for info in fs.get_file_info(pafs.FileSelector(f"{root}/{experiment}"))}
        for entry in Path(dirpath).iterdir():
            if entry.is_file() and entry.name not in own:
                entry.unlink()
        if self.has_checkpoint(dirpath):
            super().restore_from_dir(dirpath)

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        # Room for every trial the study still asks for; the searcher's budget stops at the exact total.
        self._total_samples = max(self._total_samples, self._counter + self._trials)
        fs, root, experiment = self._here
        saved = self._experiment
        assert saved is not None  # restored state always holds the experiment
        contexts = (saved.storage, saved.spec["storage"])
        for storage in {id(s): s for s in contexts}.values():  # one object, unless Tune changes
            storage.storage_filesystem, storage.storage_fs_path, storage.experiment_dir_name = (
                fs,
                root,
                experiment,
            )
