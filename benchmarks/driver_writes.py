"""The driver's cost per trial result as a study grows: the real recorder and store under Ray Tune.

A sweep of `--trials` trials x `--epochs` epochs of a trivial trainable (no training: it reports
made-up metrics of every column the recorder stores, as fast as Tune takes them) runs with the
project's `StoreRecorder` on a real study folder, so every result writes the trial's row and its
new epoch file, and every 64 settled trials a compaction moves them into a segment (with the
merges of full levels). Prints the mean and the maximum time the recorder spends per result
(its `on_trial_result`, plus `on_trial_complete` for a trial's last result, where compactions
run) over the first and the last tenth of the results, and their ratio (goal: the end's mean
within 2x of the start's), the store's file count at the end, and Tune's own wall time per
trial for information.

    .venv/bin/python benchmarks/driver_writes.py [--trials 2000] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import ray
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray import tune

from gainakt import schema as model_schema
from search.run.recorder import StoreRecorder
from search.spec import SweepSpec
from search.store.segments import Store
from search.store.study import Study


def trivial_trial(config: dict[str, Any]) -> None:
    """Reports `epochs` epochs of random metrics, shaped as `search.run.trainable.run_trial` reports them."""
    rng = np.random.default_rng(config["seed"])
    for epoch in range(1, config["epochs"] + 1):
        metrics = {name: float(rng.uniform(0.0, 1.0)) for name in model_schema.METRICS}
        row = {"epoch": epoch, **metrics, "train_loss": 0.5, "val_loss": 0.5, "seconds": 0.0}
        tune.report({**metrics, "selected_epoch": epoch, "epoch_row": row, "trial_seconds": 0.0})


class TimedRecorder(StoreRecorder):
    """The project's recorder, timing what it spends on each result."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []  # per result, in arrival order

    def on_trial_result(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        super().on_trial_result(*args, **kwargs)
        self.seconds.append(time.perf_counter() - started)

    def on_trial_complete(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        super().on_trial_complete(*args, **kwargs)
        if self.seconds:  # the trial's last result pays for its completion (and any compaction)
            self.seconds[-1] += time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=2000, help="trials of the sweep (default 2000)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (results) per trial (default 5)")
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    storage = Path(tempfile.mkdtemp(prefix="gainakt-bench-driver-"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        spec = SweepSpec(name="driver", storage=str(storage), trials=args.trials)
        study = Study(str(storage), spec.name)
        study.write_spec(spec)
        optuna.create_study(  # the recorder reads the study's Optuna journal at its first step
            study_name=spec.name,
            storage=JournalStorage(JournalFileBackend(study.journal_path)),
            directions=[o.direction + "imize" for o in spec.objectives],
        )
        recorder = TimedRecorder(spec, Store(study), {}, study.journal_path, echo=lambda _: None)
        started = time.perf_counter()
        tuner = tune.Tuner(
            trivial_trial,
            param_space={
                "number": tune.grid_search(list(range(args.trials))),
                "seed": 0,
                "epochs": args.epochs,
                "settings": {},
            },
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=2),
            run_config=tune.RunConfig(
                name="tune", storage_path=str(storage / spec.name), callbacks=[recorder], verbose=0
            ),
        )
        tuner.fit()
        wall = time.perf_counter() - started
        seconds = recorder.seconds
        tenth = max(1, len(seconds) // 10)
        first, last = seconds[:tenth], seconds[-tenth:]
        ms = 1000.0
        print(f"{len(seconds):,} results of {args.trials:,} trials x {args.epochs} epochs")
        print(
            f"recorder per result, first {tenth:,} results: mean {statistics.mean(first) * ms:.2f} ms, "
            f"max {max(first) * ms:.1f} ms"
        )
        print(
            f"recorder per result, last {tenth:,} results: mean {statistics.mean(last) * ms:.2f} ms, "
            f"max {max(last) * ms:.1f} ms"
        )
        ratio = statistics.mean(last) / statistics.mean(first)
        print(f"end / start, mean: x{ratio:.2f} (goal: within x2) {'PASS' if ratio <= 2 else 'FAIL'}")
        files = sum(len(list(Path(f).glob("*.parquet"))) for f in (study.trials_dir, study.epochs_dir))
        trials = Store(study).trials(columns=["status"])
        print(
            f"store at the end: {files} files for {len(trials):,} trials; "
            f"Tune's wall per trial {wall / args.trials * ms:.0f} ms"
        )
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
