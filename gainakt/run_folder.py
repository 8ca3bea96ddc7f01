"""A run folder as the trainer leaves it: its best model, its epoch rows, and its evaluation
beside the baselines.

The folder holds `metrics_epoch.csv` (one row per epoch), `best.pt` (weights of the best
validation AUC), `last.pt` (everything needed to resume exactly) and `results.json`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .baselines import baseline_observations, best_mastery_corr
from .batching import BatchPlan
from .bootstrap import Interval, bootstrap_intervals
from .config import build
from .data import load_dataset
from .errors import ConfigError, DataError
from .evaluate import eval_metrics, observe
from .model import build_model
from .schema import EvalMetrics
from .tracer import Tracer
from .train import TrainConfig

BEST_CHECKPOINT = "best.pt"  # the epoch of the best validation AUC
LAST_CHECKPOINT = "last.pt"  # the last epoch trained (with what resuming needs)


def load_run(
    run_dir: str | Path, device: str = "cpu", checkpoint: str = BEST_CHECKPOINT
) -> tuple[Tracer, TrainConfig, dict[str, Any]]:
    """The best model of a run folder (or the one `checkpoint` names), its configuration and the
    stored checkpoint."""
    path = Path(run_dir) / checkpoint
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {checkpoint} (not a finished or started run folder)")
    state = torch.load(path, map_location=device, weights_only=False)
    config = build(TrainConfig, state["config"])
    model = build_model(config.model, state["num_concepts"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, state


def read_epoch_csv(text: str) -> list[dict[str, float]]:
    """The rows of a run folder's `metrics_epoch.csv` (its text), one per epoch, as they were written."""
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


@dataclass(frozen=True)
class RunEvaluation:
    """A run's best.pt on one split, beside the baselines fitted on its training folds, with
    student-level bootstrap intervals of its metrics when asked for."""

    epoch: int
    source: str
    metrics: EvalMetrics
    baselines: dict[str, EvalMetrics]
    intervals: dict[str, Interval] | None = None
    fold: int | None = None  # the validation fold evaluated; None for the test split

    @property
    def split_label(self) -> str:
        """What was evaluated, in words: `validation fold 0` or `the test split`."""
        return "the test split" if self.fold is None else f"validation fold {self.fold}"


def evaluate_run(
    run_dir: str,
    split: str = "valid",
    data: str | None = None,
    bootstrap: int = 0,
    progress: Callable[[int], None] | None = None,
) -> RunEvaluation:
    """Every metric of a run folder's best.pt on its validation fold or the test split, and of each
    baseline on the same windows (`mastery_lift` against the best of them); with `bootstrap` N, the
    model's intervals over N student resamples (`gainakt.bootstrap`)."""
    model, config, state = load_run(run_dir)
    dataset = load_dataset(data or config.data, state["num_concepts"])
    if dataset.num_concepts != state["num_concepts"]:
        raise DataError(
            f"{dataset.source}: {dataset.num_concepts} concepts, but the run was trained on "
            f"{state['num_concepts']}"
        )
    train, valid = dataset.split(config.fold)
    windows = valid if split == "valid" else dataset.test_windows()
    lookups = baseline_observations(train, windows, dataset.num_concepts)
    baselines = {name: eval_metrics(obs) for name, obs in lookups.items()}
    observed = observe(model, BatchPlan(windows, 256, "bucketed", shuffle=False))
    metrics = eval_metrics(observed, best_mastery_corr(baselines))
    intervals = bootstrap_intervals(observed, lookups, bootstrap, progress=progress) if bootstrap else None
    fold = config.fold if split == "valid" else None
    return RunEvaluation(int(state["epoch"]), dataset.source, metrics, baselines, intervals, fold)
