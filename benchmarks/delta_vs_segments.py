"""Why the store compacts into plain Parquet segments rather than a Delta Lake table: measured.

Writes the same epoch rows (`--trials` trials x 5 epochs, one row per result, as the driver
writes them) two ways and prints, for each: the mean and last-tenth time per written result,
the files in the folder, the rows `pd.read_parquet(folder)` returns (what the README promises
users) against the rows written, and the time to read the table back.

- segments: this project's `Store` (`put_epochs` per result, compaction every 64 settled trials);
- delta: `deltalake.write_deltalake(mode="append")` per result, then `optimize.compact()` at the
  same points, read as a Delta table by `DeltaTable.to_pandas()` and as a folder by pandas.

Needs the `deltalake` package, which the project does not depend on (`pip install deltalake`).

    .venv/bin/python benchmarks/delta_vs_segments.py [--trials 500]
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

import pandas as pd
import pyarrow as pa

from search.schema import TrialStatus
from search.store.segments import SEGMENT_TRIALS, Store
from search.store.study import Study

EPOCHS = 5


def epoch_row(trial: int, epoch: int) -> dict:
    return {"trial_id": f"t{trial:06d}", "epoch": epoch, "auc": 0.6 + trial / 1e6, "seconds": 1.0}


def trial_row(trial: int, status: TrialStatus) -> dict:
    return {"trial_id": f"t{trial:06d}", "number": trial, "status": status.value, "auc": 0.6}


def summary(name: str, seconds: list[float], folder: Path, plain: int, written: int, read: float) -> None:
    tenth = max(1, len(seconds) // 10)
    files = sum(1 for p in folder.rglob("*.parquet"))
    print(
        f"{name}: per result mean {statistics.mean(seconds) * 1e3:.2f} ms, last tenth "
        f"{statistics.mean(seconds[-tenth:]) * 1e3:.2f} ms; {files} Parquet files; "
        f"pd.read_parquet(folder) gives {plain:,} rows of {written:,} written; read {read:.2f} s"
    )


def segments(root: Path, trials: int) -> None:
    store, seconds = Store(Study(str(root), "segments")), []
    for trial in range(trials):
        rows = []
        for epoch in range(1, EPOCHS + 1):
            rows.append(epoch_row(trial, epoch))
            started = time.perf_counter()
            store.put_epochs(f"t{trial:06d}", rows)
            seconds.append(time.perf_counter() - started)
        store.put_trial(trial_row(trial, TrialStatus.COMPLETED))
    folder = Path(store.study.epochs_dir)
    started = time.perf_counter()
    ours = len(store.epochs())
    read = time.perf_counter() - started
    assert ours == trials * EPOCHS
    summary("segments", seconds, folder, len(pd.read_parquet(folder)), trials * EPOCHS, read)


def delta(root: Path, trials: int) -> None:
    from deltalake import DeltaTable, write_deltalake

    folder, seconds = root / "delta", []
    for trial in range(trials):
        for epoch in range(1, EPOCHS + 1):
            started = time.perf_counter()
            write_deltalake(str(folder), pa.Table.from_pylist([epoch_row(trial, epoch)]), mode="append")
            seconds.append(time.perf_counter() - started)
        if (trial + 1) % SEGMENT_TRIALS == 0:
            DeltaTable(str(folder)).optimize.compact()
    started = time.perf_counter()
    rows = len(DeltaTable(str(folder)).to_pandas())
    read = time.perf_counter() - started
    assert rows == trials * EPOCHS
    summary("delta", seconds, folder, len(pd.read_parquet(folder)), trials * EPOCHS, read)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=500, help="trials of 5 epochs (default 500)")
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    root = Path(tempfile.mkdtemp(prefix="gainakt-bench-delta-"))
    try:
        segments(root, args.trials)
        try:
            delta(root, args.trials)
        except ImportError:
            print("delta: skipped, the deltalake package is not installed (pip install deltalake)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
