"""Benchmark: the three prediction heads, with and without the prospective mastery loss (by hand).

Trains GainAKT2Exp (the cpu-small preset, deep mastery by default: it can go down, and a mastery
head reading it sees what the free head sees; `--mastery direct` for the linear one) with each
prediction head, `free`, `mastery` and `mixed` (the mixed head's residual penalised), each without
and with the prospective `mastery_performance` loss, for several seeds, on one dataset's
validation fold, and prints a table of each variant's mean over seeds with a 95% t interval:

- on the simulator: AUC beside the Bayes-optimal AUC, the recovery figures (`mastery_recovery`,
  `mastery_recovery_within`, `gain_recovery`, `unpractised_recovery`) beside the best baseline's,
  `faithfulness`; goal: a faithful head (`faithfulness` > 0) whose `mastery_recovery_within`
  beats every baseline's by at least 0.1 at no more than 0.01 AUC below the `free` head;
- on real data: AUC, `mastery_corr` beside its ceiling `pred_corr`, `mastery_lift`,
  `faithfulness`, `copy_corr`; goal: a `mastery` or `mixed` head with `mastery_corr` >= 0.95 x
  its own `pred_corr` and `mastery_lift` > 0.03, within 0.005 AUC of the `free` head.

A goal is judged on the means over seeds; beside it the 95% t intervals of the differences
(paired with the free head on the same seeds) say whether a difference is beyond seed noise.
Runs are kept in `--out`; a run folder that already has its results is read, not trained
again, so an interrupted benchmark continues where it stopped.

    .venv/bin/python benchmarks/heads.py                                  # the simulator, 3 seeds
    .venv/bin/python benchmarks/heads.py --mastery direct                 # the linear mastery head
    .venv/bin/python benchmarks/heads.py --data ../shared/data/assist2015 --seeds 1 --without-loss

Exit code 0 whether goals are met or not; 2 for missing data or a bad setting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

from gainakt.baselines import baseline_metrics, fold_baseline
from gainakt.batching import BatchPlan
from gainakt.data import load_dataset
from gainakt.errors import UserError
from gainakt.evaluate import observe, recovery_metrics
from gainakt.presets import DEFAULT_PRESET
from gainakt.run_folder import load_run
from gainakt.schema import RECOVERY_METRICS, EvalMetrics
from gainakt.sequences import Dataset
from gainakt.train import Trainer, make_config

HEADS = ("free", "mastery", "mixed")
SIMULATOR = "synthetic:students_differ=1,forgetting=0.1"
PREDICTION_WITHIN = "prediction_recovery_within"  # the prediction read as a mastery (benchmark only)
SIMULATED_COLUMNS = (
    "auc",
    *RECOVERY_METRICS,
    PREDICTION_WITHIN,
    "faithfulness",
    "residual_share",
    "copy_corr",
)
REAL_COLUMNS = (
    "auc",
    "mastery_corr",
    "pred_corr",
    "mastery_lift",
    "faithfulness",
    "residual_share",
    "copy_corr",
)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Variant:
    head: str
    mastery_loss: float  # weight of the prospective mastery_performance loss, 0 for none

    @property
    def name(self) -> str:
        return self.head + (f"+mp{self.mastery_loss:g}" if self.mastery_loss else "")

    def settings(self, residual: float, mastery: str) -> list[str]:
        out = [f"model.mastery={mastery}", f"model.head={self.head}"]
        if self.mastery_loss:
            out.append(f"weights.mastery_performance={self.mastery_loss:g}")
        if self.head == "mixed":
            out.append(f"weights.residual={residual:g}")
        return out


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Interval:
        """Mean and 95% t interval over seeds; no interval with one seed (low = high = mean)."""
        x = np.asarray(values, dtype=np.float64)
        mean = float(x.mean())
        if x.size < 2 or not np.isfinite(x).all():
            return cls(mean, mean, mean)
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
        return cls(mean, mean - half, mean + half)

    def __str__(self) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.low == self.high:
            return f"{self.mean:.4f}"
        return f"{self.mean:.4f} ± {(self.high - self.low) / 2:.4f}"


def run_variant(variant: Variant, seed: int, dataset: Dataset, args: argparse.Namespace) -> dict[str, float]:
    """The best epoch's validation figures of one run (trained now, or read from its folder)."""
    # every setting that makes two runs differ names the folder, so that runs are only reused as such
    data = "".join(ch if ch.isalnum() or ch in "=,." else "_" for ch in dataset.source).strip("_.")
    residual = f"-residual{args.residual:g}" if variant.head == "mixed" else ""
    out = Path(args.out) / data / f"{variant.name}{residual}-{args.mastery}-seed{seed}"
    results = out / "results.json"
    if results.is_file():
        return with_prediction_recovery(json.loads(results.read_text())["best"], out, dataset, args.fold)
    assignments = [*variant.settings(args.residual, args.mastery), f"seed={seed}", *args.set]
    config = make_config(
        args.preset,
        assignments=assignments,
        data=dataset.source,
        fold=args.fold,
        out=str(out),
        threads=args.threads,
    )
    start = time.perf_counter()
    trainer = Trainer(config, dataset, fold_baseline(dataset, config.fold))
    best = with_prediction_recovery(trainer.run()["best"], out, dataset, args.fold)
    print(
        f"  {variant.name:<14} seed {seed}: auc {best['auc']:.4f} ({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    return best


def with_prediction_recovery(
    best: dict[str, float], run: Path, dataset: Dataset, fold: int
) -> dict[str, float]:
    """`best` with `prediction_recovery_within`: the run's prediction p[t] read as the mastery of the
    next concept, against the truth within each concept (what the head could recover if its mastery
    were its prediction); NaN on real data."""
    if not dataset.is_synthetic:
        return {**best, PREDICTION_WITHIN: math.nan}
    model, _, _ = load_run(run)
    observed = observe(model, BatchPlan(dataset.split(fold)[1], 256, shuffle=False))
    read = recovery_metrics(replace(observed, next_mastery=observed.prob))
    return {**best, PREDICTION_WITHIN: read["mastery_recovery_within"]}


def paired(a: list[dict[str, float]], b: list[dict[str, float]], metric: str) -> Interval:
    return Interval.of([x[metric] - y[metric] for x, y in zip(a, b)])


def goal_lines(
    rows: dict[Variant, list[dict[str, float]]], best_baseline: dict[str, float], simulated: bool
) -> list[str]:
    """Each faithful variant against the issue's goal, on the means and on the paired intervals."""
    free = next(runs for v, runs in rows.items() if v.head == "free" and not v.mastery_loss)
    lines = []
    for variant, runs in rows.items():
        if variant.head == "free":
            continue
        auc_gap = paired(runs, free, "auc")
        faithful = Interval.of([r["faithfulness"] for r in runs])
        if simulated:
            within = Interval.of(
                [r["mastery_recovery_within"] - best_baseline["mastery_recovery_within"] for r in runs]
            )
            checks = {
                "faithfulness > 0": faithful.low > 0,
                "within - best baseline >= 0.1": within.mean >= 0.1,
                "auc - free >= -0.01": auc_gap.mean >= -0.01,
            }
            detail = f"within lift {within}, auc - free {auc_gap}"
        else:
            ratio = Interval.of([r["mastery_corr"] / r["pred_corr"] for r in runs])
            lift = Interval.of([r["mastery_lift"] for r in runs])
            checks = {
                "mastery_corr >= 0.95 pred_corr": ratio.mean >= 0.95,
                "mastery_lift > 0.03": lift.mean > 0.03,
                "auc - free >= -0.005": auc_gap.mean >= -0.005,
            }
            detail = f"mastery_corr / pred_corr {ratio}, lift {lift}, auc - free {auc_gap}"
        verdict = (
            "MET" if all(checks.values()) else "missed: " + ", ".join(k for k, ok in checks.items() if not ok)
        )
        lines.append(f"  {variant.name:<14} {verdict}  ({detail})")
    return lines


def table(rows: dict[Variant, list[dict[str, float]]], columns: tuple[str, ...]) -> list[str]:
    lines = ["| variant | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    for variant, runs in rows.items():
        cells = [str(Interval.of([r[c] for r in runs])) for c in columns]
        lines.append(f"| {variant.name} | " + " | ".join(cells) + " |")
    return lines


def best_of_baselines(scores: dict[str, EvalMetrics], columns: tuple[str, ...]) -> dict[str, float]:
    """Per metric, the best baseline's value (higher is better for every column compared)."""
    out = {}
    for column in columns:
        values = [getattr(m, column) for m in scores.values() if hasattr(m, column)]
        finite = [v for v in values if not math.isnan(v)]
        out[column] = max(finite) if finite else math.nan
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The three prediction heads, with and without the prospective mastery loss, over "
        "seeds, on one dataset's validation fold (see the module docstring).",
    )
    parser.add_argument("--data", default=SIMULATOR, help=f"dataset (default {SIMULATOR})")
    parser.add_argument("--fold", type=int, default=0, help="validation fold (default 0)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, help="training preset (default %(default)s)")
    parser.add_argument(
        "--mastery-loss",
        type=float,
        default=0.1,
        help="weight of the prospective mastery_performance loss (default 0.1)",
    )
    parser.add_argument(
        "--without-loss", action="store_true", help="only the variants without the mastery_performance loss"
    )
    parser.add_argument(
        "--mastery",
        choices=["deep", "direct", "cumulative"],
        default="deep",
        help="mastery mode of every variant (default deep; direct and deep can go down, cumulative cannot)",
    )
    parser.add_argument(
        "--residual", type=float, default=0.1, help="weight of the mixed head's residual loss (default 0.1)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further training setting for every run, e.g. --set epochs=4",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--out", default="runs/bench-heads", help="run folders (default runs/bench-heads)")
    parser.add_argument("--json", help="also write every run's figures to this JSON file")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        dataset = load_dataset(args.data)
        train, valid = dataset.split(args.fold)
        losses = (0.0,) if args.without_loss else (0.0, args.mastery_loss)
        variants = [Variant(head, loss) for loss in losses for head in HEADS]
        simulated = dataset.is_synthetic
        columns = SIMULATED_COLUMNS if simulated else REAL_COLUMNS
        baselines = baseline_metrics(train, valid, dataset.num_concepts)
        best = best_of_baselines(baselines, columns)
        print(f"$ {shlex.join([sys.executable, *sys.argv])}")
        print(
            f"data {dataset.source}, validation fold {args.fold}, {args.seeds} seed(s), "
            f"preset {args.preset}, {args.mastery} mastery, mixed residual weight {args.residual:g}"
        )
        rows = {v: [run_variant(v, seed, dataset, args) for seed in range(args.seeds)] for v in variants}
    except UserError as err:
        print(f"heads: {err}", file=sys.stderr)
        return 2
    print(f"\nvalidation figures, mean ± half-width of the {CONFIDENCE:.0%} t interval over seeds:")
    print("\n".join(table(rows, columns)))
    shown = {c: best[c] for c in columns if c not in ("faithfulness", "residual_share", "copy_corr")}
    print(
        "best baseline (per column, validation): "
        + ", ".join(f"{c} {v:.4f}" for c, v in shown.items() if not math.isnan(v))
    )
    if simulated:
        print(f"Bayes-optimal AUC (true probabilities): {dataset.summary(args.fold)['bayes_auc']:.4f}")
    print("goals:")
    print("\n".join(goal_lines(rows, best, simulated)))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "data": dataset.source,
                    "runs": {v.name: runs for v, runs in rows.items()},
                    "best_baseline": best,
                },
                indent=1,
                default=float,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
