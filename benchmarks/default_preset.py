"""How close the default preset comes to the Bayes-optimal AUC on the default simulator.

Trains `cpu-small` on `synthetic` exactly as `gainakt-search train` does (about a minute on two
cores) and prints its best validation AUC beside the simulator's Bayes-optimal AUC on the same
fold (the ceiling no model can pass); the goal is to come within 0.03 of it. Exits 1 when it
does not.

    .venv/bin/python benchmarks/default_preset.py
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from gainakt.data import load_dataset
from gainakt.train import make_config, train

GOAL = 0.03  # at most this far below the Bayes-optimal AUC


def main() -> int:
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    data = load_dataset("synthetic")
    bayes = data.summary(0)["bayes_auc"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gainakt-bench-preset-") as folder:
        best = train(make_config(data="synthetic", out=f"{folder}/default"), data)["best"]
    gap = bayes - best["auc"]
    print(
        f"cpu-small on synthetic, fold 0 (validation): best AUC {best['auc']:.4f} at epoch "
        f"{best['epoch']}, Bayes-optimal {bayes:.4f}, gap {gap:.4f} (goal <= {GOAL}); "
        f"mastery_recovery {best['mastery_recovery']:.3f}; {time.perf_counter() - started:.0f} s"
    )
    return 0 if gap <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
