"""Sweep efficiency of the Ray Tune search on this machine.

Runs a real sweep (default: 16 trials of about 30 s, 2 at a time, 1 CPU each, on the
simulator) and prints:
- sweep efficiency = sum of the trials' own seconds (training and validation, measured
  inside each trial) / (wall time of the trials x trials at a time); target >= 0.85;
- Ray's start-up time (ray.init of a local instance);
- the per-trial overhead (what the driver sees of a trial minus the trial's own seconds:
  actor start, imports, data transfer, checkpoint upload).

    .venv/bin/python benchmarks/sweep_efficiency.py [--trials 16] [--epochs 10] [--keep]

Run it on an otherwise idle machine: any other load shows up as lost efficiency.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

from search.run.sweep import prepare, run_sweep
from search.schema import TrialStatus
from search.spec import SweepSpec
from search.store.segments import Store


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument(
        "--epochs", type=int, default=10, help="epochs per trial (10 is about 30 s per trial here)"
    )
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--keep", action="store_true", help="keep the study folder and print where it is")
    args = parser.parse_args()

    storage = tempfile.mkdtemp(prefix="gainakt-bench-")
    spec = SweepSpec(
        name="efficiency",
        data=args.data,
        storage=storage,
        trials=args.trials,
        concurrent=args.concurrent,
        cpus=1,
        train={
            "preset": "cpu-small",
            "epochs": args.epochs,
            "patience": 0,
            "model": {"d_model": 64, "d_ff": 128},
        },
    )
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        f"sweep: {spec.trials} trials, {spec.concurrent} at a time, {args.epochs} epochs each, "
        f"data {spec.data}"
    )
    began = time.time()
    outcome = run_sweep(prepare(spec), num_cpus=spec.concurrent, echo=lambda line: None)
    total = time.time() - began
    trials = Store(outcome.study).trials()
    done = trials[trials["status"] == TrialStatus.COMPLETED]
    own = done["train_seconds"].sum()
    seen = (done["ended_at"] - done["started_at"]).dt.total_seconds()
    efficiency = own / (outcome.wall_seconds * spec.concurrent)
    print(f"trials completed:         {len(done)} of {spec.trials}")
    print(
        f"trial length (own):       mean {done['train_seconds'].mean():.1f} s, "
        f"min {done['train_seconds'].min():.1f} s, "
        f"max {done['train_seconds'].max():.1f} s"
    )
    print(f"wall time of the trials:  {outcome.wall_seconds:.1f} s (whole command {total:.1f} s)")
    print(f"sweep efficiency:         {efficiency:.3f}  (target >= 0.85)")
    print(f"Ray start-up:             {outcome.ray_start_seconds:.1f} s")
    print(
        f"per-trial overhead:       mean {(seen - done['train_seconds']).mean():.2f} s "
        f"(driver-seen {seen.mean():.1f} s - own {done['train_seconds'].mean():.1f} s)"
    )
    if args.keep:
        print(f"study folder: {outcome.study.display()}")
    else:
        shutil.rmtree(storage, ignore_errors=True)
    return 0 if efficiency >= 0.85 else 1


if __name__ == "__main__":
    sys.exit(main())
