"""Speed of the Pareto analysis, of the store's readers and of the study report, on synthetic data.

Prints:
- the time for the front and the hypervolume (moocore) of 100,000 random trials with 3
  objectives of mixed directions (target < 1 s), and, for information, the hypervolume history;
- for each study size in `--sizes` (trials x 5 epochs, settled trials in segments as a driver's
  compaction leaves them): the number of files in the store, the time to read both tables whole,
  `status` and `pareto` as a user runs them (fresh processes, imports included), `report` (HTML
  and Markdown, in this process) and the HTML's size; then the growth of each time from the
  second-largest size to the largest, as a ratio (the study grew by the ratio of the sizes).
  Targets at 10,000 trials: status and pareto < 2 s, report < 10 s, HTML < 10 MB; at 100,000
  trials: status < 5 s.

    .venv/bin/python benchmarks/pareto_report.py [--trials 100000] [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fake_study import fake_study

from search.analysis import pareto
from search.report.page import write_report
from search.schema import TrialStatus
from search.spec import Objective
from search.store.segments import Store

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


def timed_command(argv: list[str]) -> float:
    """Seconds of `gainakt-search ARGV` from process start to exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "search.cli", *argv], check=True, capture_output=True)
    return time.perf_counter() - started


def time_study(count: int) -> dict[str, float]:
    """The store's, status's, pareto's and the report's figures for a study of `count` trials."""
    storage = Path(tempfile.mkdtemp(prefix="gainakt-bench-report-"))
    try:
        started = time.perf_counter()
        study = fake_study(storage, "bench", count, epochs=5, segments=True)
        print(
            f"{count:,} trials x 5 epochs (writing the synthetic store: "
            f"{time.perf_counter() - started:.1f} s, not counted)"
        )
        files = sum(
            len(list(Path(folder).glob("*.parquet"))) for folder in (study.trials_dir, study.epochs_dir)
        )
        started = time.perf_counter()
        store = Store(study)
        trials, epochs = store.trials(), store.epochs()
        figures = {"store read": time.perf_counter() - started}
        where = ["bench", "--storage", str(storage)]
        figures["status"] = timed_command(["status", *where])
        figures["pareto"] = timed_command(["pareto", *where])
        figures["pareto --epoch-level"] = timed_command(["pareto", *where, "--epoch-level"])
        started = time.perf_counter()
        written = write_report(study)
        figures["report"] = time.perf_counter() - started
        size = os.path.getsize(written.html) / 1e6
        print(
            f"  files in the store: {files} ({len(trials):,} trial rows, {len(epochs):,} epoch rows)\n"
            f"  store read, both tables whole: {figures['store read']:.2f} s\n"
            f"  status: {figures['status']:.2f} s (target < {2 if count <= 10_000 else 5} s)\n"
            f"  pareto: {figures['pareto']:.2f} s (target < 2 s at 10,000); "
            f"with --epoch-level: {figures['pareto --epoch-level']:.2f} s\n"
            f"  report (store read, analysis, HTML and Markdown): {figures['report']:.2f} s "
            f"(target < 10 s at 10,000); HTML {size:.2f} MB (target < 10 MB)"
        )
        return figures
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=100_000, help="trials for front and hypervolume")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="trials of each study"
    )
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    time_front(args.trials)
    sizes = sorted(args.sizes)
    figures = {count: time_study(count) for count in sizes}
    if len(sizes) > 1:
        small, large = sizes[-2], sizes[-1]
        growth = ", ".join(
            f"{name} x{figures[large][name] / figures[small][name]:.2f}" for name in figures[large]
        )
        print(f"growth from {small:,} to {large:,} trials (x{large / small:g} the study): {growth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
