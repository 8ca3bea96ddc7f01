"""Training throughput and GPU memory with 1, 2, 4 and 8 trials sharing one GPU.

For each sharing (GPU fractions 1, 0.5, 0.25 and 0.125 per trial), a sweep of as many trials as
fit on the GPU at once, all at the same time, on the simulator (or `--data`); prints per sharing
the interactions per second of one trial and of all together (each trial's last epoch, mean and
sum) and the peak GPU memory of a trial. Needs a CUDA GPU; where there is none it says so and
exits with code 1.

    .venv/bin/python benchmarks/gpu_trials.py [--data synthetic] [--epochs 2] [--storage DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

SHARINGS = ((1, 1.0), (2, 0.5), (4, 0.25), (8, 0.125), (16, 0.0625))  # trials at once, GPU share each


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic", help="dataset (default synthetic)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (default 2)")
    parser.add_argument("--storage", help="where the studies go (default: a temporary folder, removed)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_trials: torch finds no CUDA GPU on this machine; run this benchmark on one", file=sys.stderr
        )
        return 1
    from search.cli import main as gainakt_search
    from search.store.segments import Store
    from search.store.study import Study

    storage = args.storage or tempfile.mkdtemp(prefix="gpu-trials-")
    cpus = max(1, (os.cpu_count() or 8) // 8)
    gpu = torch.cuda.get_device_name(0)
    print(f"# {platform.node()}: {gpu}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"# data {args.data}, {args.epochs} epochs, {cpus} CPU(s) per trial")
    print("trials  fraction  per-trial interactions/s  all together  peak GPU MiB per trial  wall s")
    try:
        for trials, fraction in SHARINGS:
            name = f"share{trials}"
            started = time.perf_counter()
            code = gainakt_search(
                [
                    "run", "--name", name, "--storage", storage, "--data", args.data,
                    "--trials", str(trials), "--concurrent", str(trials), "--gpus", str(fraction),
                    "--cpus", str(cpus), "--no-constraints", "--set", f"epochs={args.epochs}",
                ]
            )  # fmt: skip
            wall = time.perf_counter() - started
            if code != 0:
                print(f"{trials:6d}  {fraction:8.3f}  the sweep failed (exit {code})")
                continue
            store = Store(Study(storage, name))
            epochs, table = store.epochs(), store.trials()
            last = epochs.sort_values("epoch").groupby("trial_id").tail(1)["interactions_per_s"]
            memory = table["gpu_memory_mib"].max()
            print(
                f"{trials:6d}  {fraction:8.3f}  {last.mean():25,.0f}  {last.sum():12,.0f}  "
                f"{memory:22,.0f}  {wall:6.0f}"
            )
        print(f"command: {' '.join([sys.executable, *sys.argv])}")
        return 0
    finally:
        if not args.storage:
            shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
