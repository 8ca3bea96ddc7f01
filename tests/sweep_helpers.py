"""Shared pieces of the sweep tests: a tiny, fast sweep and readers of what it leaves behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd

from search.recorder import open_optuna_study
from search.store import Store
from search.study import Study

# Small enough that a trial is a few seconds on one core, large enough to learn something.
TINY_DATA = "synthetic:students=300,concepts=10,seed=3"
TINY_TRAIN = ["model.d_model=16", "model.heads=2", "model.d_ff=32", "model.blocks=1", "batch_size=32"]


def sweep_argv(storage: Path, name: str, trials: int, epochs: int = 2, *extra: str) -> list[str]:
    argv = [
        "run",
        "--name",
        name,
        "--storage",
        str(storage),
        "--data",
        TINY_DATA,
        "--trials",
        str(trials),
        "--concurrent",
        "2",
        "--cpus",
        "1",
        "--set",
        f"epochs={epochs}",
    ]
    for assignment in TINY_TRAIN:
        argv += ["--set", assignment]
    return argv + list(extra)


def tables(storage: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    store = Store(Study(str(storage), name))
    return store.trials(), store.epochs()


def optuna_trials(storage: Path, name: str) -> list:
    return open_optuna_study(os.path.join(storage, name, "optuna.journal"), name).get_trials()


def relu_only_space(trial) -> dict:
    """A space whose every point has relu gains and cumulative mastery: neg_gain_rate is always 0."""
    return {"weights.sparsity": trial.suggest_float("weights.sparsity", 1e-3, 1.0, log=True)}


def kill_group(pid: int) -> None:
    """SIGKILL a driver and every process it started (its own process group: Ray's included)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
