"""The Ray Tune trainable: one GainAKT2Exp training per trial, reported to Tune every epoch.

The trial's config comes from the searcher (see `search.run.searcher.TrialSpace`):
`settings` (the training settings the space chose), `seed` and `number` (the Optuna
trial number), beside the raw Optuna parameters. Each epoch is reported with its
checkpoint (the whole run folder); the figures reported at the top level are those of the
epoch the trial would deploy (`gainakt.schema.reported_figures`), and every figure of the
epoch itself travels under `epoch_row`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from gainakt.baselines import fold_baseline
from gainakt.config import merge, nest
from gainakt.errors import ConfigError
from gainakt.guarantees import guaranteed_metrics, untrained_of
from gainakt.run_folder import read_epoch_csv
from gainakt.schema import reported_figures
from gainakt.sequences import Dataset
from gainakt.train import EpochRow, TrainConfig, Trainer, make_config
from search.schema import CONTINUES, GUARANTEED, RESUME_FROM, STOPPED_ITSELF, UNTRAINED, WANDB_RUN
from search.store.study import TUNE_DIR, Study

RUN_DIR = "run"
# The trial's Tune config, in every checkpoint: Tune writes its own params.json into the study
# only when it syncs the trial folder, which a killed driver may never have done.
TRIAL_CONFIG = "tune_config.json"


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares."""

    study: str
    data: str
    preset: str
    fixed: Mapping[str, Any] = field(default_factory=dict)  # training settings on top of the preset
    cpus: float = 1.0
    wandb: str = "off"
    wandb_dir: str | None = None  # one folder for every trial's wandb files (not the checkpointed run folder)
    wandb_tags: tuple[str, ...] = ()  # e.g. the study's space and sampler
    study_dir: str = ""  # where the study is (a folder or URI): the wandb config's trial folder is in it
    storage: str = ""  # the study's storage as given (a URI keeps its options): checkpoints are read there
    baseline_mastery_corr: float | None = None  # the best baseline's, fitted once for the study


def trial_config(
    setup: TrialSetup,
    settings: Mapping[str, Any],
    seed: int,
    out: str | None = None,
    device: str = "cpu",
    name: str | None = None,
) -> TrainConfig:
    """The trainer's configuration for one trial: preset, fixed settings, then the space's settings;
    its wandb run (if any) named `name` and grouped by study."""
    threads = max(1, int(setup.cpus))
    values = merge(
        merge(dict(setup.fixed), nest(settings)), {"seed": seed, "threads": threads, "device": device}
    )
    values.update(data=setup.data, wandb=setup.wandb, out=out)
    if setup.wandb != "off":  # nothing of wandb, not even its folder, when it is off
        values.update(
            wandb_group=setup.study,
            wandb_name=name,
            wandb_tags=setup.wandb_tags,
            wandb_dir=setup.wandb_dir or os.getcwd(),
        )
    return make_config(setup.preset, **values)


def construction_columns(train_config: TrainConfig) -> dict[str, str]:
    """A trial's `guaranteed` (what its model fixes by construction) and `untrained` (the gain figures
    of a gain head no loss of its setting trains) cells, as the trial table holds them."""
    model = train_config.model
    return {
        GUARANTEED: ",".join(guaranteed_metrics(model)),
        UNTRAINED: ",".join(untrained_of(model, asdict(train_config.weights))),
    }


def trial_device(setting: str, gpu_ids: Sequence[object], cuda_available: bool, node: str) -> str:
    """Where a trial trains, from its `device` setting and the GPUs Ray assigned it (Ray makes them
    the only ones CUDA sees, so "cuda" is the first of them)."""
    if setting == "cpu":
        return "cpu"
    if gpu_ids and not cuda_available:
        ids = ",".join(map(str, gpu_ids))
        raise ConfigError(
            f"Ray gave this trial GPU {ids} on node {node}, but torch finds no CUDA device there; "
            'set device = "cpu" in [train] (or --set device=cpu) to train such trials on the CPU'
        )
    if gpu_ids:
        return "cuda"
    if setting == "cuda":
        raise ConfigError(f"device = cuda, but Ray gave this trial no GPU on node {node}: ask for --gpus")
    return "cpu"


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(0)})"
    return "cpu"


def _checkpoint_place(path: str) -> tuple[str, int]:
    """The trial folder a checkpoint is in and its index (`.../TRIAL/checkpoint_000003`)."""
    folder, _, name = path.rstrip("/").rpartition("/")
    return folder.rpartition("/")[2], int(name.rpartition("_")[2])


def latest_checkpoint(tune_checkpoint: str | None, resume_from: str | None) -> str | None:
    """Of Tune's checkpoint for the trial and the study's latest one for it (`resume_from`: Tune's
    saved state may be older, or the trial a continuation of a lost one), the one to start from:
    the later of the two in the same trial folder; Tune's where they are in different folders (a
    continuation's own checkpoints come after the one it started from)."""
    if tune_checkpoint is None or resume_from is None:
        return tune_checkpoint or resume_from
    (tune_folder, tune_index), (study_folder, study_index) = map(
        _checkpoint_place, (tune_checkpoint, resume_from)
    )
    if tune_folder == study_folder and study_index > tune_index:
        return resume_from
    return tune_checkpoint


def _restore_run_dir(run_dir: Path, resume_from: str | None, setup: TrialSetup) -> list[dict[str, float]]:
    """Fill the run folder from the latest checkpoint of Tune's and `resume_from` (the study's
    latest for this trial, or for the lost trial it continues: a path in the study's filesystem),
    if any; return its epoch rows."""
    shutil.rmtree(run_dir, ignore_errors=True)
    restored = tune.get_checkpoint()
    latest = latest_checkpoint(restored.path if restored is not None else None, resume_from)
    if latest is None:
        return []
    if restored is not None and latest == restored.path:
        checkpoint = restored
    else:
        filesystem = Study(setup.storage, setup.study).fs if setup.storage else None
        checkpoint = tune.Checkpoint(latest, filesystem=filesystem)
    with checkpoint.as_directory() as folder:
        shutil.copytree(folder, run_dir)
    return read_epoch_csv((run_dir / "metrics_epoch.csv").read_text())


def run_trial(config: dict[str, Any], setup: TrialSetup, dataset: Dataset) -> None:
    """Train one trial to its end, reporting each epoch; resumes from Tune's checkpoint when restored."""
    began = time.perf_counter()
    node = ray.get_runtime_context().get_node_id()
    gpu_ids = list(ray.get_gpu_ids())
    setting = str(setup.fixed.get("device", "auto"))
    device = trial_device(setting, gpu_ids, torch.cuda.is_available(), f"{node} ({socket.gethostname()})")
    run_dir = Path(os.getcwd()) / RUN_DIR
    rows = _restore_run_dir(run_dir, config.get(RESUME_FROM), setup)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / TRIAL_CONFIG).write_text(json.dumps(config, default=str))
    tune_trial_id = tune.get_context().get_trial_id()
    row_id = str(config.get(CONTINUES, tune_trial_id))  # the store's id (a continued trial keeps its own)
    seed = int(config["seed"])
    train_config = trial_config(setup, config["settings"], seed, str(run_dir), device, name=row_id)
    run_info = {
        "trial_id": row_id,
        "number": config.get("number"),
        "seed": seed,
        "study": setup.study,
        "out": f"{setup.study_dir}/{TUNE_DIR}/{tune_trial_id}",  # the trial's folder, not Ray's working one
    }
    if train_config.wandb_dir:
        Path(train_config.wandb_dir).mkdir(parents=True, exist_ok=True)
    where = {
        "node_id": node,
        "hostname": socket.gethostname(),
        "device": _device_name(device),
        "gpu_ids": ",".join(map(str, gpu_ids)),  # Ray's assignment, used or not (device = "cpu")
    }

    reported: list[int] = []  # the epochs this process reported

    def report_flat(flat: dict[str, float], folder: Path) -> None:
        reported.append(int(flat["epoch"]))
        metrics = {
            **reported_figures(rows),  # the driver, the searcher and the scheduler read these
            STOPPED_ITSELF: bool(trainer.stopped_early),  # patience, not the scheduler (run/recorder.py)
            **construction_columns(train_config),
            "epoch_row": flat,
            "trial_seconds": time.perf_counter() - began,  # training and validation in this process
            WANDB_RUN: trainer.wandb.link,
            # The trial's peak GPU memory so far (NaN on the CPU): what decides how many fit on one GPU.
            "gpu_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else math.nan,
            **where,
        }
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))

    def report(row: EpochRow, folder: Path) -> None:
        rows.append(row.flat())
        report_flat(rows[-1], folder)

    baseline = setup.baseline_mastery_corr
    if baseline is None:  # a setup made without the study's lookups fitted
        baseline = fold_baseline(dataset, train_config.fold)
    trainer = Trainer(train_config, dataset, baseline, on_epoch=report, run_info=run_info)
    trainer.run(resume=bool(rows))
    if not reported and rows:
        # Its checkpoint was its last epoch (the driver died before it heard the trial end): report
        # that epoch again, so Tune and the searcher see the trial's figures and not a bare return.
        report_flat(rows[-1], run_dir)
