"""`confirm`: re-train chosen trials of a study with new seeds (and other folds), score every model
on its validation fold and on the test split, and keep one row per (source trial, seed, fold) in
the study's `confirm` table (`store/confirm/`, one Parquet file per run).

The sweep selected its trials on validation fold 0 with one seed each; a confirmation re-trains
their settings with seeds the sweep never used (`CONFIRM_SEED` onwards, the same for every source
trial, so differences between trials are paired) and reports figures the selection never saw.
The runs are Ray Tune trials of one Tuner, with the sweep's resources per trial. Running the same
command again continues a confirmation: runs whose row is stored are not trained again and a run
stopped midway starts afresh, so the table holds each (source, seed, fold) once. The lookups of
`gainakt.baselines` are scored on the same splits, one row per (baseline, fold), with source
`baseline:NAME` and seed -1 (they are deterministic), and a DKT (`model.kind = dkt`, the study's
fixed settings otherwise) is trained with the same seeds and folds, source `dkt`, so every table
has a lookup and a standard model beside the trials.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from gainakt.baselines import baseline_metrics, best_mastery_corr, fit_baselines
from gainakt.batching import BatchPlan
from gainakt.errors import ConfigError, DataError
from gainakt.sequences import Dataset, Sequences
from search.analysis import pareto
from search.analysis.statistics import FOLD, SEED, SOURCE, STUDENT_HIGH, STUDENT_LOW
from search.run.cluster import DEFAULT_CONNECT_TIMEOUT, ray_session
from search.run.lease import held, refuse_if_held
from search.run.recorder import error_line, open_optuna_study
from search.run.sweep import prepare
from search.run.trainable import TrialSetup, trial_config
from search.schema import (
    BASELINE_PREFIX,
    DKT_SOURCE,
    PARAM,
    TRIAL_KEY,
    TrialStatus,
    param_column,
    split_column,
)
from search.spec import SweepSpec
from search.store.segments import Schemas, Store
from search.store.study import Study
from search.store.tables import confirm_schema, settings_of

CONFIRM_SEED = 1000  # the first confirmation seed: far from the sweep's seed and its trial numbers
BASELINE_SEED = -1
RUN_DIR = "run"


@dataclass(frozen=True)
class ConfirmRun:
    """One re-training: a source trial's settings with a seed, validated on a fold."""

    source: str
    seed: int
    fold: int
    settings: Mapping[str, Any]
    # Trained for exactly this many epochs and scored at the last: the epoch its sweep trial selected
    # (on the sweep's fold), the study's epochs for DKT; the reported fold chooses no epoch.
    epochs: int = 0

    @property
    def key(self) -> str:
        return f"{self.source}-seed{self.seed}-fold{self.fold}"


@dataclass(frozen=True)
class ConfirmPlan:
    """A validated confirmation, ready to run."""

    study: Study
    spec: SweepSpec
    dataset: Dataset
    setup: TrialSetup
    runs: tuple[ConfirmRun, ...]  # every run asked for, stored or not
    splits: tuple[str, ...]  # where every model is scored: "valid", and "test" when asked for
    against: Mapping[str, float]  # "FOLD/SPLIT" -> the best baseline's mastery_corr there (mastery_lift)
    baseline_rows: tuple[Mapping[str, Any], ...]
    bootstrap: int = 0  # student resamples per run and split for `SPLIT.METRIC.student_low/high`; 0: none


# ---------------------------------------------------------------------------- planning


def source_trials(study: Study, which: Sequence[str]) -> list[str]:
    """The trial ids `which` names: `front` (the non-dominated trials), `feasible` (the non-dominated
    trials among those meeting the constraints) or trial ids of completed trials."""
    _, analysis = pareto.load_analysis(study, epochs=False)
    trials = analysis.trials
    completed = set(trials.loc[trials["status"] == TrialStatus.COMPLETED, TRIAL_KEY])
    chosen: list[str] = []
    for item in which:
        if item == "front":
            chosen += [t for t in analysis.front[TRIAL_KEY] if t in completed]  # not the lookups on it
        elif item == "feasible":
            chosen += [t for t in analysis.feasible_front[TRIAL_KEY] if t in completed]
        elif item in completed:
            chosen.append(item)
        else:
            raise ConfigError(f"--trials {item}: not a completed trial of study {study.name!r}")
    if not chosen:
        raise ConfigError(f"--trials {' '.join(which)}: no trial of study {study.name!r} qualifies")
    return list(dict.fromkeys(chosen))


def selected_epochs(study: Study, trial_ids: Sequence[str]) -> dict[str, int]:
    """The epoch each trial selected on the sweep's fold: how long its confirmation runs train."""
    trials = Store(study).trials(columns=[TRIAL_KEY, "selected_epoch"]).set_index(TRIAL_KEY)
    return {tid: int(trials.loc[tid, "selected_epoch"]) for tid in trial_ids}


def trial_settings(study: Study, spec: SweepSpec, trial_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The training settings each trial's space gave it: the space run again on its Optuna parameters."""
    from spaces import get_space, sample_once

    numbers = Store(study).trials().set_index(TRIAL_KEY)["number"]
    refuse_if_held(study)  # a live driver on this machine may be writing the journal's local copy
    try:
        journal = open_optuna_study(study.prepare_journal(), study.optuna_name)
        params = {t.number: t.params for t in journal.get_trials(deepcopy=False)}
    finally:
        study.drop_journal_copy()  # read only: a remote study's journal stays in its storage alone
    space = get_space(spec.space)
    judged = spec.gains_judged
    return {tid: sample_once(space, spec.seed, params[int(numbers[tid])], judged) for tid in trial_ids}


def _windows(dataset: Dataset, fold: int, split: str) -> Sequences:
    return dataset.split(fold)[1] if split == "valid" else dataset.test_windows()


DEFAULT_FOLDS = 2  # validation folds a confirmation reports on unless told: the folds after the sweep's


def plan_confirmation(
    study: Study,
    which: Sequence[str],
    seeds: int,
    folds: Sequence[int] | None,
    split: str,
    dkt: bool = True,
    bootstrap: int = 0,
) -> ConfirmPlan:
    """Validate everything a confirmation needs before Ray starts; a one-line error otherwise."""
    if not study.exists():
        raise ConfigError(f"study {study.name!r} not found in {study.storage} (no {study.spec_path})")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if bootstrap < 0 or bootstrap == 1:
        raise ConfigError(f"--bootstrap {bootstrap}: give 0 (none) or at least 2 resamples")
    prepared = prepare(study.read_spec(), must_exist=True, spec_given=False)
    spec, dataset = prepared.spec, prepared.dataset
    splits = ("valid",) if split == "valid" else ("valid", "test")
    if "test" in splits and dataset.test is None:
        raise DataError(
            f"{dataset.source}: no test split (test.csv or test_sequences.csv); confirm with --split valid"
        )
    count = int(dataset.train_valid.folds.max()) + 1
    if not folds:  # folds nothing selected on: the ones after the sweep's (which picked the trials)
        folds = [(prepared.fold + k) % count for k in range(1, min(DEFAULT_FOLDS, count - 1) + 1)]
    for fold in folds:
        if not 0 <= fold < count:
            raise ConfigError(f"--folds {fold}: the data have folds 0-{int(dataset.train_valid.folds.max())}")
    sources = source_trials(study, which)
    settings = trial_settings(study, spec, sources)
    epochs = selected_epochs(study, sources)
    if dkt:  # the standard model, with the study's fixed settings, beside the trials
        sources, settings = [*sources, DKT_SOURCE], {**settings, DKT_SOURCE: {"model.kind": "dkt"}}
        epochs[DKT_SOURCE] = trial_config(prepared.setup, settings[DKT_SOURCE], seed=spec.seed).epochs
    runs = tuple(
        ConfirmRun(source, CONFIRM_SEED + k, fold, settings[source], epochs[source])
        for source in sources
        for fold in folds
        for k in range(seeds)
    )
    against, baseline_rows = {}, []
    for fold in folds:
        train = dataset.split(fold)[0]
        fitted = fit_baselines(train, dataset.num_concepts)  # once per fold, scored on every split
        scores = {
            s: baseline_metrics(train, _windows(dataset, fold, s), dataset.num_concepts, fitted)
            for s in splits
        }
        for s in splits:
            against[f"{fold}/{s}"] = best_mastery_corr(scores[s])
        for name in scores[splits[0]]:
            row = {SOURCE: f"{BASELINE_PREFIX}{name}", SEED: BASELINE_SEED, FOLD: fold, "kind": "baseline"}
            for s in splits:
                row.update({split_column(s, k): v for k, v in scores[s][name].as_dict().items()})
            baseline_rows.append(row)
    return ConfirmPlan(
        study, spec, dataset, prepared.setup, runs, splits, against, tuple(baseline_rows), bootstrap
    )


# ---------------------------------------------------------------------------- the table


def stored_keys(study: Study) -> set[str]:
    """The keys of the runs the confirm table holds as completed (an errored run is tried again)."""
    table = Store(study).confirm()
    return set(table.loc[table["status"] == TrialStatus.COMPLETED, "key"]) if len(table) else set()


# ---------------------------------------------------------------------------- one run (on a worker)


def run_confirmation_trial(
    config: dict[str, Any],
    setup: TrialSetup,
    dataset: Dataset,
    splits: tuple[str, ...],
    against: Mapping[str, float],
    bootstrap: int = 0,
) -> None:
    """Train one confirmation run to its end, then score its last epoch on every split; with
    `bootstrap` resamples, each metric's student-level interval there too (`gainakt.bootstrap`)."""
    import ray
    from ray import tune

    from gainakt.baselines import baseline_observations
    from gainakt.bootstrap import bootstrap_intervals
    from gainakt.evaluate import eval_metrics, observe
    from gainakt.run_folder import LAST_CHECKPOINT, load_run
    from gainakt.train import Trainer

    began = time.perf_counter()
    run = config["run"]
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    out = Path(os.getcwd()) / RUN_DIR
    # The epochs the sweep selected, no early stopping, and the last epoch scored: the reported fold
    # neither picks an epoch nor stops the run.
    train_config = replace(
        trial_config(setup, run["settings"], int(run["seed"]), str(out), device),
        fold=int(run["fold"]),
        epochs=int(run["epochs"]),
        patience=0,
    )
    shutil.rmtree(out, ignore_errors=True)  # a run stopped midway starts afresh
    trainer = Trainer(train_config, dataset, against[f"{run['fold']}/valid"])
    results = trainer.run()
    model, _, state = load_run(out, device, LAST_CHECKPOINT)
    metrics: dict[str, Any] = {
        "selected_epoch": int(state["epoch"]),
        "epochs_run": int(results["epochs_run"]),
    }
    for split in splits:
        windows = _windows(dataset, int(run["fold"]), split)
        plan = BatchPlan(windows, 256, "bucketed", shuffle=False)
        observed = observe(model, plan, device)
        scores = eval_metrics(observed, against[f"{run['fold']}/{split}"])
        metrics.update({split_column(split, k): v for k, v in scores.as_dict().items()})
        if bootstrap:
            train = dataset.split(int(run["fold"]))[0]
            lookups = baseline_observations(train, windows, dataset.num_concepts)
            intervals = bootstrap_intervals(observed, lookups, bootstrap, seed=int(run["seed"]))
            for name, interval in intervals.items():
                metrics[f"{split_column(split, name)}{STUDENT_LOW}"] = interval.low
                metrics[f"{split_column(split, name)}{STUDENT_HIGH}"] = interval.high
    metrics["train_seconds"] = time.perf_counter() - began
    tune.report(metrics)


# ---------------------------------------------------------------------------- the driver


def _row(run: Mapping[str, Any], status: TrialStatus, **values: Any) -> dict[str, Any]:
    settings = {param_column(k): v for k, v in run["settings"].items()}
    return {
        "key": run["key"],
        SOURCE: run[SOURCE],
        SEED: run[SEED],
        FOLD: run[FOLD],
        "kind": "trial",
        "status": status.value,
        **settings,
        **values,
    }


class ConfirmRecorder(Callback):
    """Writes a run's row to the confirm table when it ends (on the driver)."""

    def __init__(self, store: Store, constants: Mapping[str, Any], echo: Callable[[str], None]) -> None:
        self.store, self.constants, self.echo = store, dict(constants), echo

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        run = trial.config["run"]
        result = {k: v for k, v in trial.last_result.items() if "." in k or k in _RESULT_KEYS}
        self.store.put_confirm(_row(run, TrialStatus.COMPLETED, **result, **self.constants))
        shown = ", ".join(f"{k} {result[k]:.4f}" for k in ("valid.auc", "test.auc") if k in result)
        self.echo(f"confirmed {run['key']}: {shown}")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        run, error = trial.config["run"], error_line(trial)
        self.store.put_confirm(_row(run, TrialStatus.ERROR, error=error, **self.constants))
        self.echo(f"run {run['key']} failed: {error}")


_RESULT_KEYS = ("selected_epoch", "epochs_run", "train_seconds")


def run_confirmation(
    plan: ConfirmPlan,
    *,
    concurrent: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    echo: Callable[[str], None] = print,
) -> int:
    """Train every run of `plan` not stored yet; the number of runs trained."""
    from ray import tune

    params = settings_of(Store(plan.study).schema("trials"), PARAM)  # typed as the trials' settings
    store = Store(plan.study, Schemas(confirm=confirm_schema(params, plan.splits)))
    done = stored_keys(plan.study)
    pending = [run for run in plan.runs if run.key not in done]
    echo(
        f"confirming {len({r.source for r in plan.runs})} trial(s) of study {plan.spec.name!r}: "
        f"{len(plan.runs)} runs ({len(plan.runs) - len(pending)} stored), scored on {', '.join(plan.splits)}"
    )
    if not pending:
        with held(plan.study, f"gainakt-search confirm {plan.spec.name}", echo):
            _put_baselines(store, plan)
        return 0
    constants = {"data": plan.dataset.source, "data_fingerprint": plan.dataset.fingerprint}
    trainable = tune.with_resources(
        tune.with_parameters(
            run_confirmation_trial,
            setup=plan.setup,
            dataset=plan.dataset,
            splits=plan.splits,
            against=plan.against,
            bootstrap=plan.bootstrap,
        ),
        {"cpu": plan.spec.cpus, "gpu": plan.spec.gpus},
    )
    configs = [
        {
            "key": r.key,
            SOURCE: r.source,
            SEED: r.seed,
            FOLD: r.fold,
            "settings": dict(r.settings),
            "epochs": r.epochs,
        }
        for r in pending
    ]
    refuse_if_held(plan.study)
    per_trial = {"CPU": plan.spec.cpus, "GPU": plan.spec.gpus}
    command = f"gainakt-search confirm {plan.spec.name}"
    with ray_session(address, num_cpus, per_trial, connect_timeout), held(plan.study, command, echo):
        _put_baselines(store, plan)  # once Ray has taken the request: a refused one writes nothing
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=concurrent or plan.spec.concurrent,
                trial_dirname_creator=lambda trial: f"{trial.config['run']['key']}-{trial.trial_id}",
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="confirm",
                storage_path=plan.study.ray_storage[0],
                storage_filesystem=plan.study.ray_storage[1],
                callbacks=[ConfirmRecorder(store, constants, echo)],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        tuner.fit()
    return len(pending)


def _put_baselines(store: Store, plan: ConfirmPlan) -> None:
    for row in plan.baseline_rows:
        store.put_confirm(
            {"key": f"{row[SOURCE]}-fold{row[FOLD]}", "status": TrialStatus.COMPLETED.value, **row}
        )
