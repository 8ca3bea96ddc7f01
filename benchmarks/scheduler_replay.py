"""Early stopping measured by replaying recorded learning curves instead of training again.

A finished study whose every trial ran all its epochs (scheduler fifo) is a table: each trial's
metrics and seconds at every epoch. The replay runs `--workers` simulated workers over its
trials, drawn in a random order per repetition: a worker takes the next trial and runs it epoch
by epoch on a simulated clock (each epoch takes its recorded seconds), the scheduler sees each
epoch's result (the same scheduler objects the sweep uses, fed through the same calls) and
says whether the trial goes on. Per scheduler (fifo; Ray's ASHA on AUC; mo-asha) it prints,
as the mean and a 95% t interval over `--repetitions` orders:

- the hypervolume of the front of what it observed (each trial's values at the epoch the
  trainer would select among those it ran; one reference point for all, from the whole table)
  over FIFO's final hypervolume, at the end;
- the compute (trial-epochs and simulated seconds) until it first reached 95% of FIFO's final
  hypervolume (never: the repetition counts as all its compute), and the compute it used in all.

    .venv/bin/python benchmarks/scheduler_replay.py --storage DIR --name NAME [--workers 4] [--repetitions 50]
    .venv/bin/python benchmarks/scheduler_replay.py --record DIR [--trials 64] [--epochs 8]

`--record DIR` first runs the recorded study (fifo, the built-in simulator with 600 students,
`--trials` x `--epochs`, minutes on two cores) into DIR as study `replay`, then replays it.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from gainakt.schema import select_epoch
from search import pareto
from search.schedulers import MultiObjectiveASHA
from search.schema import TrialStatus
from search.spec import Constraint, Objective
from search.store import Store
from search.study import Study

TARGET = 0.95  # of FIFO's final hypervolume
RECORDED_DATA = "synthetic:students=600,seed=3"  # the simulator, small enough for minutes on two cores


@dataclass(frozen=True)
class Curves:
    """A recorded study: per trial, its epoch rows in order."""

    rows: Mapping[str, list[dict[str, Any]]]
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    epochs: int

    @classmethod
    def read(cls, storage: str, name: str) -> Curves:
        study = Study(storage, name)
        spec = study.read_spec()
        epochs = Store(study).epochs()
        rows = {t: frame.sort_values("epoch").to_dict("records") for t, frame in epochs.groupby("trial_id")}
        if spec.scheduler != "fifo":
            raise SystemExit(
                f"{study.location}: scheduler {spec.scheduler}; replay a study recorded with fifo"
            )
        # A trial shorter than the rest ended by its trainer's patience: it ends there under any scheduler.
        return cls(rows, spec.objectives, spec.constraints, max(len(r) for r in rows.values()))


@dataclass
class Run:
    """One scheduler's replay in one order: what it observed and when."""

    trial_epochs: int = 0
    seconds: float = 0.0
    reached_at: tuple[float, float] | None = None  # (trial-epochs, seconds) at TARGET x FIFO's hypervolume
    hypervolume: float = 0.0


def hypervolume(observed: Mapping[str, list[dict]], curves: Curves, reference: np.ndarray) -> float:
    if not observed:
        return 0.0
    frame = pd.DataFrame([select_epoch(rows) for rows in observed.values()])  # as the trainer deploys
    frame["status"] = TrialStatus.COMPLETED.value
    return pareto.hypervolume(frame, curves.objectives, reference)


def make_scheduler(kind: str, curves: Curves) -> Any:
    if kind == "asha":
        return ASHAScheduler(
            metric="auc", mode="max", max_t=curves.epochs, grace_period=1, reduction_factor=2
        )
    if kind == "mo-asha":
        return MultiObjectiveASHA(curves.objectives, curves.constraints, curves.epochs, 1, 2)
    return None


def replay(
    kind: str, curves: Curves, order: Sequence[str], workers: int, reference: np.ndarray, goal: float
) -> Run:
    """Simulate `workers` workers running the trials of `order` under the scheduler `kind`."""
    scheduler, run = make_scheduler(kind, curves), Run()
    stubs = {t: Trial("replay", config={}, trial_id=t, stub=True) for t in order}
    observed: dict[str, list[dict]] = {}
    queue = list(reversed(order))
    events: list[tuple[float, int, str, int]] = []  # (time an epoch ends, tie-break, trial, epoch)
    tie = 0

    def start(trial: str, at: float) -> None:
        nonlocal tie
        if isinstance(scheduler, ASHAScheduler):
            scheduler.on_trial_add(None, stubs[trial])
        heapq.heappush(events, (at + float(curves.rows[trial][0]["seconds"]), tie, trial, 1))
        tie += 1

    for _ in range(min(workers, len(queue))):
        start(queue.pop(), 0.0)
    while events:
        now, _, trial, epoch = heapq.heappop(events)
        row = curves.rows[trial][epoch - 1]
        observed.setdefault(trial, []).append(row)
        run.trial_epochs += 1
        run.seconds = now
        if run.reached_at is None and hypervolume(observed, curves, reference) >= goal:
            run.reached_at = (run.trial_epochs, now)
        result = {
            "training_iteration": epoch,
            **{k: v for k, v in row.items() if isinstance(v, (int, float))},
        }
        decision = TrialScheduler.CONTINUE
        if isinstance(scheduler, ASHAScheduler):
            decision = scheduler.on_trial_result(None, stubs[trial], result)
        elif scheduler is not None:
            decision = scheduler.decide(trial, result)
        if epoch < len(curves.rows[trial]) and decision == TrialScheduler.CONTINUE:
            heapq.heappush(events, (now + float(curves.rows[trial][epoch]["seconds"]), tie, trial, epoch + 1))
            tie += 1
        elif queue:
            start(queue.pop(), now)
    run.hypervolume = hypervolume(observed, curves, reference)
    return run


def interval(values: Sequence[float]) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    from scipy import stats

    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def record(folder: Path, trials: int, epochs: int, data: str) -> None:
    from search.cli import main

    argv = ["run", "--name", "replay", "--storage", str(folder), "--trials", str(trials), "--data", data]
    argv += ["--set", f"epochs={epochs}", "--scheduler", "fifo", "--num-cpus", str(os.cpu_count() or 2)]
    if main(argv) != 0:
        raise SystemExit("recording the study failed")


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
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    if args.record:
        record(Path(args.record), args.trials, args.epochs, args.data)
    storage = args.record or args.storage
    if storage is None:
        parser.error("give --storage (a recorded study) or --record DIR")
    curves = Curves.read(storage, args.name)
    every = pd.DataFrame([row for rows in curves.rows.values() for row in rows]).assign(
        status=TrialStatus.COMPLETED.value
    )
    reference = pareto.reference_point(every, curves.objectives)
    fifo_final = hypervolume(curves.rows, curves, reference)
    goal = TARGET * fifo_final
    total = sum(len(r) for r in curves.rows.values())
    short = sum(len(r) < curves.epochs for r in curves.rows.values())
    print(
        f"study {storage}/{args.name}: {len(curves.rows)} trials x {curves.epochs} epochs, "
        f"objectives {', '.join(str(o) for o in curves.objectives)}; {args.workers} workers, "
        f"{args.repetitions} random orders; {short} trial(s) ended early by their trainer's patience; "
        f"FIFO's final hypervolume {fifo_final:.5f}"
    )
    rng = np.random.default_rng(0)
    orders = [list(rng.permutation(sorted(curves.rows))) for _ in range(args.repetitions)]
    for kind in ("fifo", "asha", "mo-asha"):
        runs = [replay(kind, curves, order, args.workers, reference, goal) for order in orders]
        ratio = [r.hypervolume / fifo_final for r in runs]
        to_goal = [r.reached_at[0] if r.reached_at else r.trial_epochs for r in runs]
        seconds_to_goal = [r.reached_at[1] if r.reached_at else r.seconds for r in runs]
        missed = sum(r.reached_at is None for r in runs)
        print(
            f"{kind:>8}: final hypervolume / FIFO's {interval(ratio)}; to {TARGET:.0%} of it: "
            f"{interval(to_goal)} trial-epochs, {interval(seconds_to_goal)} s (never reached in {missed}); "
            f"in all {interval([r.trial_epochs for r in runs])} of {total} trial-epochs, "
            f"{interval([r.seconds for r in runs])} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
