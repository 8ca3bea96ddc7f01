"""The study-side names every module of `search` shares, each defined once: trial statuses,
the trial table's key and time columns, column prefixes and their short labels.

The model-side names (losses, metrics and their directions, the best-epoch rule) live in
`gainakt.schema`; this module imports nothing heavier than it, so the commands that only read
a study (status, pareto, report) stay free of torch and Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class TrialStatus(StrEnum):
    """Where a trial stands in the store's `status` column."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"  # failed; retried once when the study is resumed
    STOPPED = "STOPPED"  # stopped early by the scheduler
    LOST = "LOST"  # unknown to a restored Tuner with no checkpoint to continue from: abandoned, not counted

    @property
    def ended(self) -> bool:
        """Ended for good: counts against the study's number of trials."""
        return self in (TrialStatus.COMPLETED, TrialStatus.ERROR, TrialStatus.STOPPED)

    @property
    def settled(self) -> bool:
        """Its row is final: never written again, not even by a resumed sweep (ERROR is retried)."""
        return self in (TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.LOST)


ENDED_STATUSES = tuple(s.value for s in TrialStatus if s.ended)

TRIAL_KEY = "trial_id"
TIME_COLUMNS = ("started_at", "ended_at", "reported_at")  # UTC timestamps; NaT while a trial runs
CHECKPOINT = "checkpoint"
WANDB_RUN = "wandb_run"  # the trial's W&B run: its URL online, its folder offline
# Paths in the store are relative to the study folder, so that a copied or moved study reads right;
# `Store` turns them into full paths on reading (URLs stay as they are).
PATH_COLUMNS = (CHECKPOINT, "trial_dir", WANDB_RUN)


def epoch_row_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The epoch row inside a trial's Tune result (nested, or flattened by Tune as `epoch_row/...`)."""
    if isinstance(result.get("epoch_row"), Mapping):
        return dict(result["epoch_row"])
    prefix = "epoch_row/"
    return {key[len(prefix) :]: value for key, value in result.items() if key.startswith(prefix)}


# In a trial's Tune results: its trainer's patience ended it (so it completed; a scheduler's stop is STOPPED).
STOPPED_ITSELF = "stopped_early"


def stopped_by_scheduler(epochs_run: int, epochs_asked: int, last_result: Mapping[str, Any]) -> bool:
    """Whether a trial that ended after `epochs_run` epochs was stopped by the scheduler: it ran
    fewer than asked, and not because its trainer's patience ended it. (Tune's `done` cannot tell:
    it marks a scheduler's stop done too.)"""
    return not last_result.get(STOPPED_ITSELF, False) and epochs_run < epochs_asked


# What a study's Optuna trials carry beside their values (optuna-dashboard shows them).
TUNE_TRIAL_ATTR = "tune_trial_id"  # the store's trial id
STATUS_ATTR = "status"  # the store's status
SELECTED_EPOCH_ATTR = "selected_epoch"
EPOCHS_ATTR = "epoch_values"  # {epoch: {objective: value}}: the learning curve of each objective

# Keys of a trial's config when it continues a trial the restored Tuner lost (search/run/recorder.py).
CONTINUES = "continues"  # the store's trial id it continues
RESUME_FROM = "resume_from"  # the checkpoint it starts from


def store_trial_id(config: Mapping[str, Any], tune_trial_id: str) -> str:
    """The store's id of a Tune trial: its own, or that of the lost trial it continues."""
    return str(config.get(CONTINUES, tune_trial_id))


PARAM = "param."  # a setting the search space chose, e.g. param.weights.sparsity
FIXED = "fixed."  # a training setting every trial of the study shares, e.g. fixed.epochs
VIOLATION = "violation."  # how far the selected epoch misses a constraint, e.g. violation.auc>=0.7
FEASIBLE = "feasible"  # meets every constraint
GUARANTEED = "guaranteed"  # the metrics the trial's model fixes by construction, comma-separated
DEGENERATE = "degenerate"  # the degeneracy guards the trial fails, comma-separated
BELOW_BASELINE = "below_baseline"  # the metrics on which the trial does worse than the best baseline
UNTRAINED = "untrained"  # the metrics of a part no loss of the trial's setting trains, comma-separated
DOMINATED_BY = "dominated_by"  # the baselines that beat the trial on every objective, comma-separated
_SECTIONS = ("weights.", "model.")  # sections of the training settings a short label drops


def short_label(column: str) -> str:
    """A column or setting as tables and plots show it: `param.weights.sparsity` -> `sparsity`,
    `param.model.gains` -> `gains`, `fixed.epochs` -> `epochs`."""
    for prefix in (PARAM, FIXED):
        column = column.removeprefix(prefix)
    for section in _SECTIONS:
        column = column.removeprefix(section)
    return column


def param_column(setting: str) -> str:
    return f"{PARAM}{setting}"


def exact_number(value: float) -> str:
    """A threshold as written: short where that is exact, every digit where it is not."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def fixed_metrics(listed: Any) -> frozenset[str]:
    """The metrics a `guaranteed` or `untrained` cell names (empty for an empty or missing cell)."""
    return frozenset(m for m in listed.split(",") if m) if isinstance(listed, str) else frozenset()


def violation_column(constraint: Any) -> str:
    """The trial table's column of a `search.spec.Constraint`."""
    return f"{VIOLATION}{constraint.metric}{constraint.op}{constraint.bound}"


# The confirm table (search/run/confirm.py): where a row comes from, and a metric on a split.
BASELINE_PREFIX = "baseline:"  # the source of a baseline's rows, e.g. baseline:pfa
DKT_SOURCE = "dkt"  # the source of the DKT runs a confirmation trains beside the trials


def split_column(split: str, metric: str) -> str:
    """The confirm table's column of a metric on a split, e.g. `test.auc`."""
    return f"{split}.{metric}"
