"""Speed of the Pareto analysis and of the study report on synthetic data.

Prints:
- the time for the front and the hypervolume (moocore) of 100,000 random trials with 3
  objectives of mixed directions (target < 1 s), and, for information, the hypervolume history;
- the time to write the report (HTML and Markdown) of a study of 1,000 synthetic trials read
  from its Parquet store (target < 10 s), and the size of the HTML file (target < 10 MB).

    .venv/bin/python benchmarks/pareto_report.py [--trials 100000] [--report-trials 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from search import pareto
from search.demo import fake_study
from search.report import write_report
from search.schema import TrialStatus
from search.spec import Objective
from search.store import Store

OBJECTIVES = (Objective("auc", "max"), Objective("mastery_corr", "max"), Objective("neg_gain_rate", "min"))


def random_trials(count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "trial_id": [f"t{i:06d}" for i in range(count)],
            "status": TrialStatus.COMPLETED.value,
            "auc": rng.uniform(0.5, 0.8, count),
            "mastery_corr": rng.uniform(-0.2, 0.8, count),
            "neg_gain_rate": rng.uniform(0.0, 0.4, count),
            "ended_at": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.permutation(count), unit="s"),
        }
    )


def time_front(count: int) -> None:
    trials = random_trials(count)
    started = time.perf_counter()
    chosen = pareto.front(trials, OBJECTIVES)
    reference = pareto.reference_point(trials, OBJECTIVES)
    volume = pareto.hypervolume(trials, OBJECTIVES, reference)
    seconds = time.perf_counter() - started
    print(
        f"front + hypervolume, {count:,} trials x 3 objectives: {seconds:.3f} s (target < 1 s); "
        f"front {len(chosen)} trials, hypervolume {volume:.5f}"
    )
    started = time.perf_counter()
    history = pareto.hypervolume_history(trials, OBJECTIVES, reference)
    print(
        f"hypervolume history, {count:,} trials: {time.perf_counter() - started:.3f} s "
        f"(last value {history['hypervolume'].iloc[-1]:.5f})"
    )


def time_report(count: int) -> None:
    storage = Path(tempfile.mkdtemp(prefix="gainakt-bench-report-"))
    try:
        started = time.perf_counter()
        study = fake_study(storage, "bench", count, epochs=5)
        print(
            f"(writing the synthetic store of {count:,} trials x 5 epochs: "
            f"{time.perf_counter() - started:.1f} s, not counted)"
        )
        started = time.perf_counter()
        written = write_report(study)
        seconds = time.perf_counter() - started
        size = os.path.getsize(written.html)
        print(
            f"report of {count:,} trials (store read, analysis, HTML and Markdown): "
            f"{seconds:.2f} s (target < 10 s); "
            f"HTML {size / 1e6:.2f} MB (target < 10 MB)"
        )
        started = time.perf_counter()
        store = Store(study)
        store.trials(), store.epochs()
        print(
            f"  of which reading the store ({2 * count:,} Parquet files, search/store.py): "
            f"about {time.perf_counter() - started:.2f} s"
        )
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=100_000, help="trials for front and hypervolume")
    parser.add_argument("--report-trials", type=int, default=1_000, help="trials of the report's study")
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    time_front(args.trials)
    time_report(args.report_trials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
