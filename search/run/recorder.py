"""The Tune callback that keeps the Parquet store (and the Optuna study) truthful, on the driver.

It writes a trial's row when it starts, its epoch rows and row on every result, and its
final status at the end. On a resumed sweep, a trial the restored Tuner never heard of
(started after Tune's last saved state) continues from its last checkpoint as a new Tune
trial writing to the same row; with no checkpoint left it is marked LOST and its Optuna trial
failed. Rows of trials that had already completed are never touched again.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.experiment import Trial

from gainakt import schema as model_schema
from gainakt.errors import StorageFull
from search.analysis.progress import Progress, progress_of
from search.run.searcher import StudySearcher
from search.run.signals import ask_tune_to_stop
from search.schema import (
    CHECKPOINT,
    CONTINUES,
    FEASIBLE,
    FIXED,
    GUARANTEED,
    RESUME_FROM,
    STATUS_ATTR,
    STOPPED_ITSELF,
    TRIAL_KEY,
    UNTRAINED,
    WANDB_RUN,
    TrialStatus,
    epoch_row_of,
    fixed_metrics,
    param_column,
    short_label,
    stopped_by_scheduler,
    store_trial_id,
    violation_column,
)
from search.spec import SweepSpec
from search.store.segments import Store
from search.store.study import Study

LOST_MESSAGE = (
    "unknown to the restored Tuner (started after its last saved state) with no checkpoint left to "
    "continue from; its run was abandoned"
)


def now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def open_optuna_study(journal: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(journal)))


def journal_study(study: Study) -> tuple[optuna.Study, JournalStorage] | None:
    """The study's Optuna study, under the name it was created with, and its journal storage (a
    fresh copy of a remote study's journal); None before the journal holds it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(study.prepare_journal()))
    if study.optuna_name not in {s.study_name for s in storage.get_all_studies()}:
        return None
    return optuna.load_study(study_name=study.optuna_name, storage=storage), storage


def error_line(trial: Trial) -> str:
    """The last line of the trial's traceback, e.g. `FloatingPointError: loss is nan at epoch 1, step 2`."""
    local = Path(trial.error_file) if trial.error_file else None
    text = local.read_text() if local is not None and local.is_file() else str(trial.get_error() or "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:1000] if lines else "unknown error (Ray kept no traceback)"


def _stops_when_full(event: Callable[..., None]) -> Callable[..., None]:
    """A Tune event whose write finds the storage full stops the sweep as a stop signal does (Tune
    saves its state; the study resumes once space is freed) instead of ending Tune with a
    traceback; the events after it are not recorded (a resume hears them again)."""

    @functools.wraps(event)
    def recorded(self: StoreRecorder, *args: Any, **kwargs: Any) -> None:
        if self.storage_full is not None:
            return
        try:
            event(self, *args, **kwargs)
        except StorageFull as full:
            self.storage_full = full
            self.echo(f"stopping the sweep: {full}")
            ask_tune_to_stop()

    return recorded


class StoreRecorder(Callback):
    """Bridges Tune's trial events to the study's `Store`."""

    def __init__(
        self,
        spec: SweepSpec,
        store: Store,
        constants: Mapping[str, Any],
        journal: str,
        echo: Callable[[str], None] = print,
        continuations: StudySearcher | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.spec = spec
        # Given `progress`, it hears of every epoch and every end (a live display); without it the
        # progress line is echoed as each trial ends.
        self.progress = progress
        self.continuations = continuations  # where lost trials are handed to be continued
        self.store = store
        self.constants = dict(
            constants
        )  # columns every trial row shares: data, fingerprint, version, fixed.*
        self.journal = journal
        self.echo = echo
        self.trials: dict[str, dict[str, Any]] = {}
        self.epochs: dict[str, dict[int, dict[str, Any]]] = {}
        self.reconciled = False
        self.storage_full: StorageFull | None = None  # the write that stopped the sweep

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self.trials = self.store.trial_rows()
        # Only trials whose rows may still change need their epochs: the settled ones are ignored.
        self.epochs = self.store.epoch_rows(
            trial_ids=[t for t, row in self.trials.items() if not _settled(row)]
        )

    # ------------------------------------------------------------------ events

    @_stops_when_full
    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if not self.reconciled:
            self.reconciled = True
            self._mark_lost(trials)

    @_stops_when_full
    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        # A remote study's journal is a local copy: upload it as soon as a result, a completion or a
        # new trial has changed it (a size check per step), so a driver that dies loses none of it.
        self.store.study.sync_journal()

    @_stops_when_full
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        row = self.trials.get(_row_id(trial))
        if _settled(row):
            return
        if row is None:
            row = self._new_row(trial)
            self.echo(
                f"trial {trial.trial_id} started ({self._count()} of {self.spec.trials}): "
                f"{_brief(trial.config['settings'])}"
            )
        elif CONTINUES in trial.config:
            self.echo(f"trial {row[TRIAL_KEY]} continues as Tune trial {trial.trial_id}")
        row.update(status=TrialStatus.RUNNING.value, error=None, ended_at=pd.NaT, trial_dir=trial.path)
        self._put_trial(row)

    @_stops_when_full
    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        row_id = _row_id(trial)
        row = self.trials.get(row_id)
        if _settled(row):
            return
        if row is None:
            row = self._new_row(trial)
        epoch_row = epoch_row_of(result)
        if not epoch_row:
            return
        epoch = int(epoch_row["epoch"])
        checkpoint = (
            f"{trial.path}/{result['checkpoint_dir_name']}" if result.get("checkpoint_dir_name") else None
        )
        epochs = self.epochs.setdefault(row_id, {})
        epochs[epoch] = {TRIAL_KEY: row_id, **epoch_row, CHECKPOINT: checkpoint, "reported_at": now()}
        # A trial resumed from an earlier checkpoint re-reports its later epochs: drop the stale ones.
        for later in [e for e in epochs if e > epoch]:
            del epochs[later]
        self.store.put_epochs(row_id, epochs.values())
        apply_result(row, self.spec, result, epochs)
        self._put_trial(row)
        objectives = "  ".join(f"{o.metric} {float(epoch_row[o.metric]):.4f}" for o in self.spec.objectives)
        self.echo(f"trial {row_id} epoch {epoch}: {objectives}")
        if self.progress is not None:
            self._progress()

    @_stops_when_full
    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        row = self.trials.get(_row_id(trial))
        if row is None or _settled(row):
            return
        # By the epochs it ran, not Tune's `done`, which may also miss a trial that continued from
        # the checkpoint of its last epoch.
        asked, last = row.get(f"{FIXED}epochs"), trial.last_result
        if asked is not None:
            finished = not stopped_by_scheduler(int(row.get("epochs") or 0), int(asked), last)
        else:  # a space that samples the epochs
            finished = bool(last.get(STOPPED_ITSELF, False) or last.get("done", False))
        status = TrialStatus.COMPLETED if finished else TrialStatus.STOPPED
        row.update(status=status.value, error=None, ended_at=now())
        if self.continuations is not None and trial.trial_id in self.continuations.renumbered:
            # A trial that failed before a resume: the Optuna trial that records its retry is its own.
            row["number"] = self.continuations.renumbered[trial.trial_id]
        self._put_trial_after_journal(row)
        objectives = "  ".join(f"{o.metric} {row.get(o.metric, math.nan):.4f}" for o in self.spec.objectives)
        self.echo(
            f"trial {row[TRIAL_KEY]} {row['status'].lower()} "
            f"(epoch {row.get('selected_epoch')} selected): {objectives}"
        )
        self._progress()

    @_stops_when_full
    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """A failed trial Tune starts again (`retries`): from its last checkpoint, if it has one."""
        row = self.trials.get(_row_id(trial))
        if row is None or _settled(row):
            return
        # A worker killed while Tune saved a checkpoint leaves Tune with none, or an older one,
        # though the study holds it.
        _, epoch = self._start_from_latest(trial, row[TRIAL_KEY])
        restart = f"it continues from its epoch {epoch} checkpoint" if epoch else "it starts again"
        self.echo(
            f"trial {row[TRIAL_KEY]} failed: {error_line(trial)}; retry {trial.num_failures} of "
            f"{trial.max_failures}: {restart}"
        )

    @_stops_when_full
    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        row = self.trials.get(_row_id(trial)) or self._new_row(trial)
        row.update(status=TrialStatus.ERROR.value, error=error_line(trial), ended_at=now())
        self._put_trial_after_journal(row)
        self.echo(f"trial {row[TRIAL_KEY]} failed: {row['error']}")
        self._progress()

    def _progress(self) -> None:
        progress = progress_of(pd.DataFrame(list(self.trials.values())), self.spec)
        if self.progress is None:
            self.echo(progress.line())
        else:
            self.progress(progress)

    def _put_trial_after_journal(self, row: dict[str, Any]) -> None:
        """Record a trial's end only once the journal that Tune's searcher has just told of it is
        uploaded: whoever sees the ending in the store (a reader, a resume on another machine) finds
        it in the journal too, even if the driver dies before the step ends."""
        self.store.study.sync_journal()
        self._put_trial(row)

    # ------------------------------------------------------------------ rows

    def _new_row(self, trial: Trial) -> dict[str, Any]:
        row = new_trial_row(self.spec, self.constants, trial.trial_id, trial.config, trial.path, now())
        self.trials[trial.trial_id] = row
        return row

    def _put_trial(self, row: dict[str, Any]) -> None:
        self.trials[row[TRIAL_KEY]] = row
        self.store.put_trial(row)

    def _count(self) -> int:
        return sum(1 for row in self.trials.values() if row["status"] != TrialStatus.LOST)

    def _mark_lost(self, known: list[Trial]) -> None:
        """Trials running when the driver died that the restored Tuner never heard of (they started
        after its last saved state): each continues from its last checkpoint as a new Tune trial
        (the searcher hands it out next), or, with no checkpoint left, is marked LOST."""
        known_ids = {_row_id(trial) for trial in known}
        continuing = {int(trial.config["number"]) for trial in known if "number" in trial.config}
        if self.continuations is not None:
            self.continuations.forget_unknown({trial.trial_id for trial in known} | set(self.trials))
        for trial in known:
            self._resume_from_latest(trial)
        for row in list(self.trials.values()):
            if row[TRIAL_KEY] in known_ids or row["status"] != TrialStatus.RUNNING:
                continue
            checkpoint, epoch = self._last_checkpoint(row[TRIAL_KEY])
            if checkpoint is not None and self.continuations is not None:
                self.continuations.continue_trial(row[TRIAL_KEY], int(row["number"]), checkpoint)
                continuing.add(int(row["number"]))
                self.echo(
                    f"trial {row[TRIAL_KEY]} was unknown to the restored Tuner: it continues from its "
                    f"epoch {epoch} checkpoint"
                )
                continue
            row.update(status=TrialStatus.LOST.value, error=LOST_MESSAGE, ended_at=now())
            self._put_trial(row)
            self.echo(f"trial {row[TRIAL_KEY]} lost: {LOST_MESSAGE}")
        # Optuna trials asked for but never finished by a known or continuing trial will never be
        # told: fail them.
        storage = JournalStorage(JournalFileBackend(self.journal))
        name = self.store.study.optuna_name
        study = optuna.load_study(study_name=name, storage=storage)
        study_id = storage.get_study_id_from_name(name)
        for ot_trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if ot_trial.number not in continuing:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, ot_trial.number)
                storage.set_trial_user_attr(trial_id, STATUS_ATTR, TrialStatus.LOST.value)
                study.tell(ot_trial.number, state=TrialState.FAIL, skip_if_finished=True)

    def _resume_from_latest(self, trial: Trial) -> None:
        """Have a restored trial that Tune will start again begin from its latest checkpoint in the
        study: Tune's saved state, which names the checkpoint it would start from, may be older."""
        row = self.trials.get(_row_id(trial))
        if trial.status != Trial.PENDING or row is None or _settled(row):
            return
        changed, epoch = self._start_from_latest(trial, row[TRIAL_KEY])
        if changed:
            self.echo(f"trial {row[TRIAL_KEY]} continues from its epoch {epoch} checkpoint")

    def _start_from_latest(self, trial: Trial, row_id: str) -> tuple[bool, int | None]:
        """Hand the trial the study's latest checkpoint of it (`RESUME_FROM`, read when Tune starts
        its actor: `run_trial` takes the later of it and Tune's own); whether that changed its
        config, and the checkpoint's epoch (None without one)."""
        checkpoint, epoch = self._last_checkpoint(row_id)
        if checkpoint is None or trial.config.get(RESUME_FROM) == checkpoint:
            return False, epoch
        trial.config[RESUME_FROM] = checkpoint
        return True, epoch

    def _last_checkpoint(self, row_id: str) -> tuple[str | None, int | None]:
        """The latest epoch checkpoint of a trial that is still there (a path in the study's
        filesystem), and its epoch."""
        study = self.store.study
        for epoch, row in sorted(self.epochs.get(row_id, {}).items(), reverse=True):
            path = row.get(CHECKPOINT)
            if isinstance(path, str) and study.exists_path(path):
                return study.fs_path(path), epoch
        return None, None


def new_trial_row(
    spec: SweepSpec,
    constants: Mapping[str, Any],
    trial_id: str,
    config: Mapping[str, Any],
    trial_dir: str | None,
    started_at: pd.Timestamp,
) -> dict[str, Any]:
    """The row of a trial that has started and reported nothing yet; `config` is its Tune config."""
    return {
        TRIAL_KEY: trial_id,
        "study": spec.name,
        "number": int(config["number"]),
        "status": TrialStatus.RUNNING.value,
        "error": None,
        "seed": int(config["seed"]),
        "selected_epoch": None,
        "epochs": 0,
        **{name: math.nan for name in model_schema.METRICS},
        **{violation_column(c): math.nan for c in spec.constraints},
        FEASIBLE: False,
        GUARANTEED: "",
        UNTRAINED: "",
        **{param_column(key): value for key, value in config["settings"].items()},
        **constants,
        "node_id": None,
        "hostname": None,
        "device": None,
        "gpu_ids": None,
        "gpu_memory_mib": math.nan,
        WANDB_RUN: None,
        CHECKPOINT: None,
        "trial_dir": trial_dir,
        "started_at": started_at,
        "ended_at": pd.NaT,
        "train_seconds": 0.0,
    }


def apply_result(
    row: dict[str, Any], spec: SweepSpec, result: Mapping[str, Any], epochs: Mapping[int, Mapping[str, Any]]
) -> None:
    """Update a running trial's row with a result the trainable reported (`search/run/trainable.py`):
    the figures of its selected epoch, its constraints, where it ran; `epochs` are its epoch rows."""
    selected_epoch = int(result["selected_epoch"])
    row.update({name: float(result[name]) for name in model_schema.METRICS if name in result})
    fixed = fixed_metrics(result.get(GUARANTEED, ""))
    for constraint in spec.constraints:
        value = float(result[constraint.metric])
        row[violation_column(constraint)] = constraint.violation(value, constraint.metric in fixed)
    row[FEASIBLE] = all(c.met(float(result[c.metric]), c.metric in fixed) for c in spec.constraints)
    row[GUARANTEED] = result.get(GUARANTEED, "")
    row[UNTRAINED] = result.get(UNTRAINED, "")
    row.update(
        status=TrialStatus.RUNNING.value,
        selected_epoch=selected_epoch,
        epochs=len(epochs),
        checkpoint=epochs.get(selected_epoch, {}).get(CHECKPOINT),
        node_id=result.get("node_id"),
        hostname=result.get("hostname"),
        device=result.get("device"),
        gpu_ids=result.get("gpu_ids"),
        gpu_memory_mib=float(result.get("gpu_memory_mib", math.nan)),
        **{WANDB_RUN: result.get(WANDB_RUN)},
        train_seconds=float(result.get("trial_seconds", math.nan)),
    )


def _row_id(trial: Trial) -> str:
    return store_trial_id(trial.config, trial.trial_id)


def _settled(row: Mapping[str, Any] | None) -> bool:
    """A row that exists and is final (see `TrialStatus.settled`): no event may change it."""
    return row is not None and TrialStatus(row["status"]).settled


def _brief(settings: Mapping[str, Any]) -> str:
    """The settings a trial starts with, weights switched off left out."""
    parts = []
    for key, value in settings.items():
        if isinstance(value, float) and value == 0.0 and key.startswith("weights."):
            continue
        parts.append(
            f"{short_label(key)}={value:.3g}" if isinstance(value, float) else f"{short_label(key)}={value}"
        )
    return ", ".join(parts)
