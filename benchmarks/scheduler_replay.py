"""Early stopping measured by replaying recorded learning curves instead of training again.

A finished study whose every trial ran all its epochs (scheduler fifo) is a table: each trial's
figures and seconds at every epoch. `benchmarks/replay.py` runs `--workers` simulated workers over
it on a simulated clock, feeding each epoch's result to the sweep's own scheduler objects as
the trainable reports it. Two measurements, each as the mean and a 95% t interval:

1. In random orders (`--repetitions`), per scheduler (fifo; Ray's ASHA on AUC; mo-asha): the
   hypervolume of the front of what it observed (each trial at the epoch the trainer would
   select among those it ran; one reference point for all, from the whole table) over FIFO's
   final one; the compute (trial-epochs, simulated seconds) until it first reached 95% of FIFO's
   final hypervolume (never: all its compute counts) and in all; and the share of the FIFO
   front's trials it stopped early.
2. With the study's sampler in the loop (`--seeds` sampler seeds, `--budget` trials of the
   table): the searcher proposes, the recorded trial nearest to each proposal runs, and the
   searcher hears its results; a stopped trial is told to Optuna as complete (its values at the
   stopping epoch) or as pruned. Per setting: final hypervolume over FIFO's on the whole table,
   that of the proposed trials had they all run to the end, trial-epochs, and the paired
   difference from fifo with the same seed.

    .venv/bin/python benchmarks/scheduler_replay.py --storage DIR --name NAME [--workers 4] [--repetitions 50]
    .venv/bin/python benchmarks/scheduler_replay.py --record DIR [--trials 64] [--epochs 8]

`--record DIR` first runs the recorded study (fifo, the built-in simulator with 600 students,
`--trials` x `--epochs`, minutes on two cores) into DIR as study `replay`, then replays it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from replay import SCHEDULERS, Curves, Feed, Run, Sampled, ordered, replay

from search.analysis import pareto
from search.analysis.statistics import Estimate
from search.schema import TrialStatus

TARGET = 0.95  # of FIFO's final hypervolume
RECORDED_DATA = "synthetic:students=600,seed=3"  # the simulator, small enough for minutes on two cores


def interval(values: Sequence[float], digits: int = 3) -> str:
    estimate = Estimate.of(values)
    if estimate.n < 2:
        return f"{estimate.mean:.{digits}f}"
    return f"{estimate.mean:.{digits}f} [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def record(folder: Path, trials: int, epochs: int, data: str) -> None:
    from search.cli import main

    argv = ["run", "--name", "replay", "--storage", str(folder), "--trials", str(trials), "--data", data]
    argv += ["--set", f"epochs={epochs}", "--scheduler", "fifo", "--num-cpus", str(os.cpu_count() or 2)]
    if main(argv) != 0:
        raise SystemExit("recording the study failed")


def fifo_front(curves: Curves) -> set[str]:
    """The trials on the front of the whole table, each run to its end."""
    frame = curves.final(sorted(curves.rows)).assign(trial_id=sorted(curves.rows))
    return set(pareto.front(frame, curves.spec.objectives)["trial_id"])


def in_orders(curves: Curves, args: argparse.Namespace, reference: np.ndarray, fifo_final: float) -> None:
    rng = np.random.default_rng(0)
    orders = [list(rng.permutation(sorted(curves.rows))) for _ in range(args.repetitions)]
    front = fifo_front(curves)
    print(
        f"\n1. {args.repetitions} random orders, {args.workers} workers; "
        f"the FIFO front has {len(front)} trials"
    )
    for kind in SCHEDULERS:
        runs = [
            replay(
                curves,
                Feed(kind, curves.spec, curves.epochs),
                args.workers,
                ordered(o),
                reference,
                TARGET * fifo_final,
            )
            for o in orders
        ]
        ratio = [r.hypervolume / fifo_final for r in runs]
        to_goal = [r.reached_at[0] if r.reached_at else r.trial_epochs for r in runs]
        seconds_to_goal = [r.reached_at[1] if r.reached_at else r.seconds for r in runs]
        missed = sum(r.reached_at is None for r in runs)
        front_stopped = [len(r.stopped & front) / len(front) for r in runs]
        print(
            f"{kind:>8}: final hypervolume / FIFO's {interval(ratio)}; to {TARGET:.0%} of it: "
            f"{interval(to_goal, 1)} trial-epochs, {interval(seconds_to_goal, 1)} s "
            f"(never reached in {missed}); "
            f"in all {interval([r.trial_epochs for r in runs], 1)} trial-epochs, "
            f"{interval([r.seconds for r in runs], 1)} s; FIFO front's trials stopped early "
            f"{interval(front_stopped)}"
        )


def sampled(curves: Curves, args: argparse.Namespace, reference: np.ndarray, fifo_final: float) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = [("fifo", "complete"), ("mo-asha", "complete"), ("mo-asha", "pruned")]
    print(
        f"\n2. sampler {curves.spec.sampler} in the loop: {args.budget} of the {len(curves.rows)} recorded "
        f"trials, {args.workers} workers, {args.seeds} sampler seeds"
    )
    results: dict[tuple[str, str], list[tuple[Run, float]]] = {}
    for kind, told in settings:
        results[kind, told] = []
        for seed in range(args.seeds):
            source = Sampled(curves, args.budget, seed, told)
            run = replay(
                curves,
                Feed(kind, curves.spec, curves.epochs),
                args.workers,
                source.propose,
                reference,
                on_result=source.on_result,
                on_end=source.on_end,
            )
            proposed = pareto.hypervolume(curves.final(source.running), curves.spec.objectives, reference)
            results[kind, told].append((run, proposed / fifo_final))
    fifo = results["fifo", "complete"]
    for (kind, told), runs in results.items():
        ratio = [r.hypervolume / fifo_final for r, _ in runs]
        paired = [
            r.hypervolume / fifo_final - f.hypervolume / fifo_final for (r, _), (f, _) in zip(runs, fifo)
        ]
        epochs = [r.trial_epochs for r, _ in runs]
        saved = [1 - r.trial_epochs / f.trial_epochs for (r, _), (f, _) in zip(runs, fifo)]
        label = kind if kind == "fifo" else f"{kind}, stopped told as {told}"
        print(
            f"{label:>33}: final hypervolume / FIFO's on the table {interval(ratio)} (minus fifo's, paired: "
            f"{interval(paired)}); proposed trials run to the end {interval([p for _, p in runs])}; "
            f"{interval(epochs, 1)} trial-epochs ({interval(saved)} fewer than fifo)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--storage", help="folder (or URI) of the recorded study")
    parser.add_argument("--name", default="replay", help="its name (default replay)")
    parser.add_argument("--record", help="first record a study into this folder, then replay it")
    parser.add_argument("--trials", type=int, default=64, help="trials of the recorded study (default 64)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the recorded study (default 8)")
    parser.add_argument(
        "--data", default=RECORDED_DATA, help=f"data of the recorded study (default {RECORDED_DATA})"
    )
    parser.add_argument("--workers", type=int, default=4, help="simulated workers (default 4)")
    parser.add_argument("--repetitions", type=int, default=50, help="random trial orders (default 50)")
    parser.add_argument("--budget", type=int, default=32, help="trials per sampled replay (default 32)")
    parser.add_argument(
        "--seeds", type=int, default=20, help="sampler seeds of the sampled replay (default 20)"
    )
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    if args.record:
        record(Path(args.record), args.trials, args.epochs, args.data)
    storage = args.record or args.storage
    if storage is None:
        parser.error("give --storage (a recorded study) or --record DIR")
    try:
        curves = Curves.read(storage, args.name)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not 0 < args.budget <= len(curves.rows):
        parser.error(f"--budget {args.budget}: between 1 and the study's {len(curves.rows)} trials")
    every = pd.DataFrame([row for rows in curves.rows.values() for row in rows]).assign(
        status=TrialStatus.COMPLETED.value
    )
    reference = pareto.reference_point(every, curves.spec.objectives)
    fifo_final = pareto.hypervolume(curves.final(curves.rows), curves.spec.objectives, reference)
    short = sum(len(r) < curves.epochs for r in curves.rows.values())
    print(
        f"study {storage}/{args.name}: {len(curves.rows)} trials x {curves.epochs} epochs "
        f"({sum(len(r) for r in curves.rows.values())} trial-epochs; {short} trial(s) ended early by their "
        f"trainer's patience), objectives {', '.join(str(o) for o in curves.spec.objectives)}, "
        f"rungs from grace period {curves.spec.grace_period}, factor {curves.spec.reduction_factor}; "
        f"FIFO's final hypervolume {fifo_final:.5f}"
    )
    in_orders(curves, args, reference, fifo_final)
    if args.seeds:
        sampled(curves, args, reference, fifo_final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
