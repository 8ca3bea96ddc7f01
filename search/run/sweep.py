"""A sweep end to end: validate, start or restore the Tuner, run the trials, stop Ray.

Everything that can be checked before Ray starts is checked first (spec, space, training
settings, data), so bad input fails in a second and leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gainakt import __version__
from gainakt.baselines import baseline_metrics, best_mastery_corr
from gainakt.config import flatten
from gainakt.data import load_dataset
from gainakt.errors import ConfigError, StorageFull, is_no_space
from gainakt.guarantees import guaranteed_metrics, guarantees_of
from gainakt.schema import METRICS, RECOVERY_METRICS, EvalMetrics
from gainakt.sequences import Dataset
from search.analysis.progress import Progress
from search.run.cluster import DEFAULT_CONNECT_TIMEOUT, ray_session
from search.run.lease import held, refuse_if_held
from search.run.signals import graceful_stop
from search.run.trainable import TrialSetup, trial_config
from search.schema import FIXED, TrialStatus, param_column, violation_column
from search.spec import NOT_FIXED, SweepSpec
from search.store import layout
from search.store.journal import check_journal, drop_stale_lock, drop_torn_tail
from search.store.segments import Schemas, Store, unreadable_files
from search.store.study import TUNE_DIR, Study
from search.store.tables import STRING, arrow_type, setting_hints, trial_schema
from search.store.tune_state import drop_torn_sessions, has_saved_state

log = logging.getLogger("search.run.sweep")


@dataclass(frozen=True)
class Prepared:
    """A validated sweep, ready to run."""

    spec: SweepSpec
    study: Study
    dataset: Dataset
    setup: TrialSetup
    constants: Mapping[str, Any]  # the columns every trial row shares
    resumed: bool
    fold: int = 0  # the validation fold every trial is scored on
    baselines: Mapping[str, EvalMetrics] = field(default_factory=dict)  # on that fold, fitted on the others
    schemas: Schemas = field(default_factory=Schemas)  # of the store's tables (search/store/tables.py)
    grown_from: int | None = None  # the total the study asked for before `resume --trials`


@dataclass(frozen=True)
class SweepOutcome:
    study: Study
    spec: SweepSpec
    wall_seconds: float  # from the first trial asked for to the last one finished (Ray's start-up excluded)
    interrupted: bool
    ray_start_seconds: float = 0.0
    stopped_by: int | None = None  # the signal (SIGINT, SIGTERM) that stopped it


SPACE_PROBES = 64  # points of the space sampled to see whether an objective can vary there


def _refuse_simulated_only(spec: SweepSpec, dataset: Dataset) -> None:
    """Refuse an objective or constraint on a metric that needs the simulator's ground truth
    (`RECOVERY_METRICS`) where the data has none: every trial would score NaN."""
    if dataset.is_synthetic:
        return
    for where, metric in [
        *((f"objective {str(o)!r}", o.metric) for o in spec.objectives),
        *((f"constraint {str(c)!r}", c.metric) for c in spec.constraints),
    ]:
        if metric in RECOVERY_METRICS:
            held = ", ".join(m for m in METRICS if m not in RECOVERY_METRICS)
            raise ConfigError(
                f"{where}: {metric} needs the simulator's ground truth, which data {dataset.source} "
                f"lacks (the metrics of this data: {held})"
            )


def _refuse_guaranteed(spec: SweepSpec, setup: TrialSetup, points: list[dict[str, Any]]) -> None:
    """An objective or a constraint on a metric fixed by construction at every sampled point of the
    space cannot tell trials apart (a constraint there would hold, or fail, for every trial alike)."""
    models = [trial_config(setup, settings, seed=spec.seed).model for settings in points]

    def reasons(metric: str) -> str | None:
        if not all(metric in guaranteed_metrics(m) for m in models):
            return None
        return "; ".join(sorted({g.reason for m in models for g in guarantees_of(m) if g.metric == metric}))

    for objective in spec.objectives:
        if (why := reasons(objective.metric)) is not None:
            raise ConfigError(
                f"objective {objective}: holds by construction at every point of space {spec.space!r} "
                f"({why}), so it cannot tell trials apart; drop it or search a space where it can vary "
                "(docs/metrics.md)"
            )
    for constraint in spec.constraints:
        if (why := reasons(constraint.metric)) is not None:
            raise ConfigError(
                f"constraint '{constraint}': {constraint.metric} is fixed by construction at every point "
                f"of space {spec.space!r} ({why}), so it judges every trial alike; drop it (--constraint "
                "replaces the default constraints) or search a space where it can vary (docs/metrics.md)"
            )


def prepare(
    spec: SweepSpec,
    *,
    wandb: str = "off",
    must_exist: bool = False,
    spec_given: bool = True,
    trials: int | None = None,
) -> Prepared:
    """Validate everything; an existing study of the same name is continued with its saved spec,
    grown to `trials` in all when that is given (`resume --trials`)."""
    study = Study(spec.storage, spec.name)
    resumed = study.exists()
    grown_from = None
    if resumed:
        saved = study.read_spec()
        differ = [k for k, v in spec.to_dict().items() if saved.to_dict()[k] != v and k != "storage"]
        if spec_given and differ:
            grow = (
                f"; to grow it to {spec.trials} trials: 'gainakt-search resume {spec.name} --trials "
                f"{spec.trials}'"
                if "trials" in differ and spec.trials > saved.trials
                else ""
            )
            raise ConfigError(
                f"study {spec.name!r} already exists in {study.storage} with other settings (differs in: "
                f"{', '.join(differ)}); continue it with 'gainakt-search resume {spec.name}' "
                f"or choose another --name{grow}"
            )
        spec = replace(saved, storage=spec.storage)  # where the study is now, wherever it started
        if trials is not None and trials != saved.trials:
            if trials < saved.trials:
                raise ConfigError(
                    f"--trials {trials}: study {spec.name!r} asks for {saved.trials} trials; a study "
                    "grows, it never shrinks (its trials are kept)"
                )
            spec, grown_from = replace(spec, trials=trials), saved.trials
    elif must_exist:
        raise ConfigError(f"study {spec.name!r} not found in {study.storage} (no {study.spec_path})")
    setup = trial_setup(spec, study, wandb)
    points = space_points(spec)
    for settings in (points.sampled, *points.starts):  # the space's settings must be valid training settings
        trial_config(setup, settings, seed=spec.seed)
    _refuse_guaranteed(spec, setup, points.probes)
    if resumed:
        _check_intact(study)
    base = trial_config(setup, {}, seed=spec.seed)
    dataset = load_dataset(spec.data, base.num_concepts)
    _refuse_simulated_only(spec, dataset)
    if resumed:
        _check_same_data(study, dataset)
    baselines = fold_baselines(dataset, base.fold)  # once, for every trial
    setup = replace(setup, baseline_mastery_corr=best_mastery_corr(baselines))
    # Thresholds relative to the lookups become numbers (the spec's text, saved, keeps `best_lookup`).
    spec = spec.resolved({name: metrics.as_dict() for name, metrics in baselines.items()})
    constants, schemas = row_layout(spec, setup, points, dataset.source, dataset.fingerprint)
    return Prepared(
        spec, study, dataset, setup, constants, resumed, base.fold, baselines, schemas, grown_from
    )


def fold_baselines(dataset: Dataset, fold: int) -> dict[str, EvalMetrics]:
    """The lookups every trial is judged against: fitted on the folds but `fold`, scored on it."""
    train, valid = dataset.split(fold)
    return baseline_metrics(train, valid, dataset.num_concepts)


def refit_baselines(spec: SweepSpec, setup: TrialSetup) -> dict[str, dict[str, float]]:
    """The study's lookups fitted again from its data (what baselines.json holds), for a study that
    lost that file."""
    base = trial_config(setup, {}, seed=spec.seed)
    dataset = load_dataset(spec.data, base.num_concepts)
    return {name: m.as_dict() for name, m in fold_baselines(dataset, base.fold).items()}


def trial_setup(spec: SweepSpec, study: Study, wandb: str = "off") -> TrialSetup:
    """What every trial of the study shares."""
    return TrialSetup(
        study=spec.name,
        data=spec.data,
        preset=spec.preset,
        fixed=spec.train_settings,
        cpus=spec.cpus,
        wandb=wandb,
        wandb_dir=f"{study.root}/{layout.WANDB}" if study.local else None,
        wandb_tags=(f"space:{spec.space}", f"sampler:{spec.sampler}"),
        study_dir=study.display(),
        storage=study.storage,
    )


@dataclass(frozen=True)
class SpacePoints:
    """Settings drawn from the study's space: its first sample, its start points, and probes."""

    sampled: dict[str, Any]
    starts: list[dict[str, Any]]
    probes: list[dict[str, Any]]  # SPACE_PROBES samples: what the space can return


def space_points(spec: SweepSpec) -> SpacePoints:
    from spaces import SpaceError, get_space, sample_once

    try:
        space = get_space(spec.space)
        judged = spec.gains_judged
        sampled = sample_once(space, seed=spec.seed, gains_judged=judged)
        starts = [sample_once(space, spec.seed, dict(point), judged) for point in spec.start]
    except SpaceError as err:
        raise ConfigError(str(err)) from None
    probes = [sample_once(space, seed, gains_judged=judged) for seed in range(SPACE_PROBES)]
    return SpacePoints(sampled, starts, probes)


def row_layout(
    spec: SweepSpec, setup: TrialSetup, points: SpacePoints, source: str, fingerprint: str
) -> tuple[dict[str, Any], Schemas]:
    """The columns every trial row of the study shares (data, version, fixed settings), and the
    store's schemas."""
    base = trial_config(setup, {}, seed=spec.seed)
    fixed = {
        f"{FIXED}{k}": v
        for k, v in flatten(base.to_dict()).items()
        if k.split(".")[0] not in NOT_FIXED and k not in points.sampled
    }
    constants = {"space": spec.space, "data": source, "data_fingerprint": fingerprint, "version": __version__}
    constants.update(fixed)
    return constants, _schemas(spec, [points.sampled, *points.starts, *points.probes], constants)


def _schemas(spec: SweepSpec, points: list[dict[str, Any]], constants: Mapping[str, Any]) -> Schemas:
    """The trial table's schema: its settings typed by the trainer's configuration, every setting
    any probe of the space returned (a conditional one is a typed null where a trial lacks it)."""
    from gainakt.train import TrainConfig

    hints = setting_hints(TrainConfig)
    settings = {param_column(key): arrow_type(hints[key]) for point in points for key in point}
    fixed = {
        column: arrow_type(hints[column.removeprefix(FIXED)]) if column.startswith(FIXED) else STRING
        for column in constants
    }
    violations = [violation_column(c) for c in spec.constraints]
    return Schemas(trials=trial_schema(violations, settings, fixed))


def _check_intact(study: Study) -> None:
    """A resume reads the whole store and journal: refuse one it would misread, before any change."""
    bad = unreadable_files(study)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ConfigError(
            f"{bad[0].path}: cannot be read ({bad[0].reason}){more}; resuming would lose or rerun its "
            f"trial: run 'gainakt-search doctor {study.name} --repair' first"
        )
    if study.local:
        check_journal(study.journal_path, study.optuna_name)


def _finished(store: Store, spec: SweepSpec) -> bool:
    """Every trial asked for has ended, and none errored: errored trials are retried on each resume."""
    trials = store.trials()
    errored = len(trials) > 0 and bool((trials["status"] == TrialStatus.ERROR).any())
    return not errored and len(store.ended_trial_ids()) >= spec.trials


def _check_same_data(study: Study, dataset: Dataset) -> None:
    """A study goes on with the data it started on, or not at all: its rows would mix two datasets."""
    pin = study.read_data_pin()
    if pin is None:  # a study from before the pin: its trial rows say what they trained on
        trials = Store(study).trials()
        known = list(trials["data_fingerprint"].dropna()) if "data_fingerprint" in trials else []
        pin = {"fingerprint": str(known[0])} if known else None
    if pin is not None and pin["fingerprint"] != dataset.fingerprint:
        raise ConfigError(
            f"data {dataset.source}: changed since study {study.name!r} started (fingerprint "
            f"{pin['fingerprint']}, now {dataset.fingerprint}); restore the original data or start a "
            "new study"
        )


def _write_baselines(prepared: Prepared, echo: Callable[[str], None]) -> None:
    """The lookups every trial is judged against, on the study's validation fold (baselines.json)."""
    scores = prepared.baselines
    prepared.study.write_baselines({name: metrics.as_dict() for name, metrics in scores.items()})
    echo(f"baselines on validation fold {prepared.fold}: best mastery_corr {best_mastery_corr(scores):.4f}")


def run_sweep(
    prepared: Prepared,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    echo: Callable[[str], None] = print,
    progress: Callable[[Progress], None] | None = None,
) -> SweepOutcome:
    """Run (or continue) the sweep until every trial asked for has finished; `progress` hears of
    every epoch and trial end (search/run/recorder.py), else a progress line is echoed per end."""
    spec, study = prepared.spec, prepared.study
    if prepared.resumed and _finished(Store(study), spec):
        echo(
            f"study {spec.name!r} already has all its {spec.trials} trials (to add some: "
            f"'gainakt-search resume {spec.name} --trials N')"
        )
        return SweepOutcome(study, spec, 0.0, interrupted=False)
    refuse_if_held(study)
    ray_started = time.time()
    per_trial = {"CPU": spec.cpus, "GPU": spec.gpus}
    command = f"gainakt-search {'resume' if prepared.resumed else 'run'} {spec.name}"
    # Nothing is written before Ray has taken the request: a refused one leaves no study behind.
    with ray_session(address, num_cpus, per_trial, connect_timeout), held(study, command, echo):
        if study.exists() != prepared.resumed:  # another driver started it between prepare and now
            raise ConfigError(f"study {spec.name!r} was started meanwhile by another driver; run it again")
        if not prepared.resumed:
            study.write_spec(spec)
            study.write_data_pin(prepared.dataset.source, prepared.dataset.fingerprint)
        elif prepared.grown_from is not None:
            _record_growth(study, spec, prepared.grown_from, command, echo)
        if not study.read_baselines():
            _write_baselines(prepared, echo)
        journal = study.prepare_journal()
        if drop_stale_lock(journal):  # the lease proves no other driver is writing it
            echo(f"{journal}.lock: removed the journal lock a killed driver left")
        if drop_torn_tail(journal, check_journal(journal, study.optuna_name)):
            echo(f"{journal}: dropped a torn last line (an entry a crash cut short; it never took effect)")
        try:
            started = time.time()
            ray_start_seconds = started - ray_started
            tuner, recorder = _tuner(prepared, journal, echo, progress)
            try:
                with graceful_stop() as received:
                    tuner.fit()
            except Exception as err:
                if recorder.storage_full is None and not is_no_space(err):
                    raise
                raise (recorder.storage_full or StorageFull(study.display())) from err
            if recorder.storage_full is not None:
                raise recorder.storage_full
            wall = time.time() - started
            Store(study, prepared.schemas).compact(min_trials=1)  # the last settled trials, in a segment
        finally:
            study.sync_journal()
            study.drop_journal_copy()
    trials = Store(study).trials()
    running = len(trials) > 0 and bool((trials["status"] == TrialStatus.RUNNING).any())
    interrupted = bool(received) or running
    stopped_by = received[0] if received else None
    return SweepOutcome(study, spec, wall, interrupted, ray_start_seconds, stopped_by)


def _record_growth(
    study: Study, spec: SweepSpec, before: int, command: str, echo: Callable[[str], None]
) -> None:
    """spec.json says the new total and keeps each earlier one, with when and how it was asked."""
    history = study.read_history() or [{"trials": before, "at": None, "command": "run"}]
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    study.write_spec(spec, [*history, {"trials": spec.trials, "at": at, "command": f"{command} --trials"}])
    echo(f"study {spec.name!r} grows from {before} to {spec.trials} trials")


def _journal_written(journal: str) -> bool:
    return os.path.exists(journal) and os.path.getsize(journal) > 0


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)


def _tuner(
    prepared: Prepared,
    journal: str,
    echo: Callable[[str], None],
    progress: Callable[[Progress], None] | None = None,
) -> tuple[Any, Any]:
    """The Tuner that runs (or continues) the study, and the recorder that keeps its store."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray import tune

    from search.run.recorder import StoreRecorder
    from search.run.schedulers import MultiObjectiveASHA, make_scheduler
    from search.run.searcher import StudySearcher, StudySearchGenerator, TrialBudget, TrialSpace, make_sampler
    from search.run.trainable import run_trial

    spec, study = prepared.spec, prepared.study
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, setup=prepared.setup, dataset=prepared.dataset),
        {"cpu": spec.cpus, "gpu": spec.gpus},
    )
    store = Store(study, prepared.schemas)
    for table in ("trials", "epochs"):  # a store written before the schemas, or before a new column
        if rewritten := store.conform_files(table):
            echo(f"store/{table}: {rewritten} file(s) rewritten in the table's schema (values unchanged)")
    if moved := store.compact(min_trials=1):  # what a killed driver left, or a store from before segments
        echo(f"store: {moved} settled trial(s) moved into segments")
    finished = len(store.ended_trial_ids())  # a study killed before Tune first saved its state starts afresh
    # A study restarted before Tune first saved its state already holds its start points.
    fresh = finished == 0 and not _journal_written(journal)
    epochs = trial_config(prepared.setup, {}, seed=0).epochs
    searcher = StudySearcher(  # the project's own Searcher over the Optuna study (see search/run/searcher.py)
        space=TrialSpace(spec.space, spec.seed, spec.seed_mode, spec.gains_judged),
        metric=spec.metric_names,
        mode=spec.modes,
        sampler=make_sampler(spec),
        study_name=study.optuna_name,
        storage=JournalStorage(JournalFileBackend(journal)),
        constraints=spec.constraints,
        budget=TrialBudget(study.storage, study.name, spec.trials),
        points_to_evaluate=[dict(p) for p in spec.start] if fresh else None,
        epochs=epochs if f"{FIXED}epochs" in prepared.constants else None,  # unless the space samples them
    )
    scheduler = make_scheduler(spec, epochs)
    if isinstance(scheduler, MultiObjectiveASHA):
        # Tune saves no scheduler: what it had heard at each rung is in the store's epoch rows.
        heard = store.epochs()
        if len(heard):
            scheduler.replay_rows(
                heard.sort_values(["reported_at", "epoch"], kind="stable").to_dict("records")
            )
            echo(
                f"mo-asha: the rungs' records rebuilt from {heard['trial_id'].nunique()} trial(s)' "
                f"epoch rows ({len(scheduler.stopped_before)} stopped)"
            )
    checkpoints = tune.CheckpointConfig(
        num_to_keep=spec.keep_checkpoints or None,
        checkpoint_score_attribute="epoch_row/auc" if spec.keep_checkpoints else None,
        checkpoint_score_order="max",
    )
    recorder = StoreRecorder(
        spec, store, prepared.constants, journal, echo, continuations=searcher, progress=progress
    )
    search = StudySearchGenerator(searcher, spec.concurrent, study.fs, study.root, TUNE_DIR, spec.trials)
    storage_path, storage_fs = study.ray_storage
    tune_path = f"{storage_path}/{TUNE_DIR}"
    if dropped := drop_torn_sessions(study):
        echo(
            f"{study.display()}/{TUNE_DIR}: removed Tune's state of a session cut short "
            f"({', '.join(dropped)}); trials it knew continue from their checkpoints"
        )
    if tune.Tuner.can_restore(tune_path, storage_filesystem=storage_fs) and has_saved_state(study):
        echo(f"continuing study {spec.name!r} in {study.display()}")
        tuner = tune.Tuner.restore(
            tune_path,
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=storage_fs,
        )
        _bind_to_this_folder(tuner, search, recorder, scheduler)
        return tuner, recorder
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search,  # at most spec.concurrent at a time: its ConcurrencyLimiter
            scheduler=scheduler,
            num_samples=spec.trials - finished,
            trial_dirname_creator=_trial_dirname,
            # A new trial takes over a finished one's worker instead of starting a
            # process and importing torch again (seconds per trial on two cores).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            callbacks=[recorder],
            verbose=0,
            checkpoint_config=checkpoints,
            failure_config=tune.FailureConfig(max_failures=spec.retries),
        ),
    ), recorder


def _bind_to_this_folder(tuner: Any, search: Any, recorder: Any, scheduler: Any) -> None:
    """A restored Tuner unpickles the search algorithm and the callback the study started with, and
    with them the folder it started in: a copied or moved study would go on writing there. Give it
    the ones made for where the study is now (Tune restores the searcher's state into them from the
    experiment folder, which it finds at its new path by itself), and the scheduler made with the
    store's records (the unpickled one is as it was before the first trial)."""
    internal = getattr(tuner, "_local_tuner", None)
    if internal is None or not hasattr(internal, "_tune_config") or not hasattr(internal, "_run_config"):
        raise RuntimeError(
            "this Ray version's Tuner keeps its configuration elsewhere; update _bind_to_this_folder"
        )
    internal._tune_config.search_alg = search
    internal._tune_config.max_concurrent_trials = None  # the search's ConcurrencyLimiter holds it
    internal._run_config.callbacks = [recorder]
    internal._tune_config.scheduler = scheduler
