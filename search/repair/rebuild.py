"""Rows a study's store lost, rebuilt from what its trials left on disk (`doctor --repair`, once
the unreadable store files are in quarantine/).

A trial's Tune folder (`tune/TRIAL/`) holds `params.json`, its Tune config (number, seed,
settings; each checkpoint has a copy, for a trial whose driver was killed before Tune wrote it),
and a checkpoint per kept epoch, each with the run's `metrics_epoch.csv` up to that
epoch. The epoch rows are those of the trial's latest checkpoint, each pointing at its own
checkpoint where that was kept; the trial row is made from them as the driver makes it from the
trial's results (`search/run/recorder.py`). How a trial ended is what the Optuna journal says (the
`status` the searcher set); a trial the journal does not know as ended stays RUNNING, for
`resume` to continue from its checkpoint. What no file keeps stays empty: an errored trial's
error text, the node, device and timings; the rows carry this version of the package.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
from optuna.trial import TrialState

from gainakt.run_folder import read_epoch_csv
from gainakt.schema import select_epoch
from search.run.recorder import apply_result, journal_study, new_trial_row
from search.run.sweep import refit_baselines, row_layout, space_points, trial_setup
from search.run.trainable import TRIAL_CONFIG, TrialSetup, construction_columns, trial_config
from search.schema import (
    CHECKPOINT,
    CONTINUES,
    STATUS_ATTR,
    TRIAL_KEY,
    TUNE_TRIAL_ATTR,
    TrialStatus,
)
from search.spec import SweepSpec
from search.store.segments import Store
from search.store.study import Study

REBUILT_ERROR = "rebuilt by doctor --repair: the error text was in a quarantined store file"


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild wrote."""

    trials: list[str]  # trials whose row was made again
    epochs: int  # epoch rows made again


@dataclass(frozen=True)
class _Checkpoint:
    path: str  # as the store's rows give it (the study's filesystem path)
    rows: list[dict[str, float]]  # metrics_epoch.csv: every epoch up to this checkpoint
    written_at: pd.Timestamp


def missing(study: Study) -> list[str]:
    """The trials with a checkpoint on disk whose trial row or some epoch row the store lacks."""
    store = Store(study)
    trials = set(store.trials(columns=[TRIAL_KEY]).get(TRIAL_KEY, []))
    stored = store.epochs(columns=[TRIAL_KEY, "epoch"])
    epochs = stored.groupby(TRIAL_KEY)["epoch"].agg(set).to_dict() if len(stored) else {}
    return sorted(
        row_id
        for row_id, (_, checkpoints) in _trial_folders(study).items()
        if row_id not in trials or {int(r["epoch"]) for r in checkpoints[-1].rows} - epochs.get(row_id, set())
    )


def rebuild(study: Study, journal_readable: bool = True) -> Rebuilt:
    """Write the trial and epoch rows the store lacks for every trial with a checkpoint on disk:
    a settled trial's straight into a segment, an unsettled one's as a driver writes them. With
    no readable journal, every trial row made is RUNNING."""
    spec = study.read_spec()
    setup = trial_setup(spec, study)
    baselines = study.read_baselines()
    if not baselines and any(c.relative_to for c in spec.constraints):
        baselines = refit_baselines(spec, setup)  # what a `best_lookup` threshold is measured against
        study.write_baselines(baselines)
    spec = spec.resolved(baselines)
    pin = study.read_data_pin() or {}
    source, fingerprint = str(pin.get("source")), str(pin.get("fingerprint"))
    constants, schemas = row_layout(spec, setup, space_points(spec), source, fingerprint)
    store = Store(study, schemas)
    trials = store.trial_rows()
    epochs = store.epoch_rows()
    endings = _endings(study) if journal_readable else {}
    settled_trials: list[dict[str, Any]] = []
    settled_epochs: list[dict[str, Any]] = []
    made: list[str] = []
    epoch_rows = 0
    for row_id, (config, checkpoints) in _trial_folders(study).items():
        latest = checkpoints[-1]
        have = epochs.get(row_id, {})
        rows = {
            int(flat["epoch"]): have.get(int(flat["epoch"])) or _epoch_row(row_id, flat, checkpoints)
            for flat in latest.rows
        }
        lacking = [e for e in rows if e not in have]
        row = trials.get(row_id)
        if row is None:
            row = _trial_row(spec, setup, constants, row_id, config, checkpoints, rows)
            row.update(_ending(endings.get(row_id), latest.written_at))
            made.append(row_id)
        elif not lacking:
            continue
        epoch_rows += len(lacking)
        if TrialStatus(row["status"]).settled:
            settled_trials += [row] if row_id in made else []
            settled_epochs += [rows[e] for e in lacking]
            continue
        if row_id in made:
            store.put_trial(row)
        store.put_epochs(row_id, rows.values())
    if settled_trials or settled_epochs:
        store.put_settled(settled_trials, settled_epochs)
    return Rebuilt(made, epoch_rows)


def _trial_row(
    spec: SweepSpec,
    setup: TrialSetup,
    constants: Mapping[str, Any],
    row_id: str,
    config: Mapping[str, Any],
    checkpoints: list[_Checkpoint],
    epochs: Mapping[int, Mapping[str, Any]],
) -> dict[str, Any]:
    """A trial's row as the driver made it from the trial's last result."""
    latest = checkpoints[-1]
    row = new_trial_row(
        spec, constants, row_id, config, latest.path.rsplit("/", 1)[0], checkpoints[0].written_at
    )
    best = select_epoch(latest.rows)
    train = trial_config(setup, config["settings"], seed=int(config["seed"]))
    result = {
        **{name: value for name, value in best.items() if name != "epoch"},
        "selected_epoch": int(best["epoch"]),
        **construction_columns(train),
    }
    apply_result(row, spec, result, epochs)
    row["train_seconds"] = math.nan
    return row


def _epoch_row(row_id: str, flat: Mapping[str, float], checkpoints: list[_Checkpoint]) -> dict[str, Any]:
    """An epoch's row as the driver writes it, pointing at the epoch's own checkpoint if it was kept."""
    epoch = int(flat["epoch"])
    own = next((c for c in checkpoints if int(c.rows[-1]["epoch"]) == epoch), None)
    return {
        TRIAL_KEY: row_id,
        **flat,
        CHECKPOINT: own.path if own is not None else None,
        "reported_at": (own or checkpoints[-1]).written_at,  # when its checkpoint was written
    }


def _ending(told: tuple[TrialState, str | None] | None, last_written: pd.Timestamp) -> dict[str, Any]:
    """Status, error and end of a rebuilt trial row, from its Optuna trial (state, status attribute)."""
    state, status = told if told is not None else (TrialState.RUNNING, None)
    if state == TrialState.COMPLETE and status in (TrialStatus.COMPLETED, TrialStatus.STOPPED):
        return {"status": status, "ended_at": last_written}
    if state == TrialState.FAIL and status == TrialStatus.ERROR:
        return {"status": TrialStatus.ERROR.value, "error": REBUILT_ERROR, "ended_at": last_written}
    return {"status": TrialStatus.RUNNING.value}


def _endings(study: Study) -> dict[str, tuple[TrialState, str | None]]:
    """Each store trial's Optuna trial: its state and the status the searcher gave it."""
    journal = journal_study(study)
    if journal is None:
        return {}
    told: dict[str, tuple[TrialState, str | None]] = {}
    # In number order: an errored trial's retry (a later trial with the same attributes) wins.
    for trial in journal[0].get_trials(deepcopy=False):
        if TUNE_TRIAL_ATTR in trial.user_attrs:
            told[str(trial.user_attrs[TUNE_TRIAL_ATTR])] = (trial.state, trial.user_attrs.get(STATUS_ATTR))
    return told


def _trial_folders(study: Study) -> dict[str, tuple[Mapping[str, Any], list[_Checkpoint]]]:
    """Per store trial id: its Tune config and its checkpoints in epoch order (a trial that
    continued a lost one adds its own to the lost one's), for every trial with a checkpoint."""
    found: dict[str, tuple[Mapping[str, Any], list[_Checkpoint]]] = {}
    selector = pafs.FileSelector(study.tune_path, allow_not_found=True)
    for folder in study.fs.get_file_info(selector):
        if folder.type != pafs.FileType.Directory:
            continue
        own = _checkpoints(study, folder.path)
        config = _tune_config(study, folder.path, own)
        if config is None or "number" not in config or "settings" not in config:
            continue
        row_id = str(config.get(CONTINUES, folder.base_name))
        checkpoints = found.get(row_id, (config, []))[1] + own
        if checkpoints:
            # Epoch order; an epoch trained twice (a continued trial redid it) last as written last.
            ordered = sorted(checkpoints, key=lambda c: (int(c.rows[-1]["epoch"]), c.written_at))
            found[row_id] = (config, ordered)
    return found


def _tune_config(study: Study, trial_dir: str, checkpoints: list[_Checkpoint]) -> dict[str, Any] | None:
    """The trial's Tune config: Tune's params.json, else the copy in its newest checkpoint."""
    newest_first = sorted(checkpoints, key=lambda c: int(c.rows[-1]["epoch"]), reverse=True)
    for path in [f"{trial_dir}/params.json", *(f"{c.path}/{TRIAL_CONFIG}" for c in newest_first)]:
        if study.exists_path(path):
            config: dict[str, Any] = json.loads(study.read_bytes(path))
            return config
    return None


def _checkpoints(study: Study, trial_dir: str) -> list[_Checkpoint]:
    selector = pafs.FileSelector(trial_dir, allow_not_found=True)
    kept = []
    for info in study.fs.get_file_info(selector):
        csv_path = f"{info.path}/metrics_epoch.csv"
        if not info.base_name.startswith("checkpoint_") or not study.exists_path(csv_path):
            continue
        rows = read_epoch_csv(study.read_bytes(csv_path).decode())
        if rows:
            mtime = study.fs.get_file_info(csv_path).mtime
            kept.append(_Checkpoint(info.path, rows, pd.Timestamp(mtime).tz_convert("UTC")))
    return kept
