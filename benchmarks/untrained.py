"""Benchmark: untrained models against the default constraints.

Every combination of gain activation, mastery mode, attention and prediction head the built-in
spaces sample, and DKT, freshly initialised (the quick-start's model size, seed 0, no training
at all), scored on a validation fold beside the lookups fitted on the other folds; each row says
which default constraints it meets and misses, with the sweep's own rule (`pareto.feasible`: a
constraint on a metric the model fixes by construction does not count). An untrained model must
never be feasible; `tests/search_tests/analysis_tests/test_untrained.py` asserts it.

    .venv/bin/python benchmarks/untrained.py                                   # the simulator
    .venv/bin/python benchmarks/untrained.py --data ../shared/data/assist2015 --windows 2000

Exit code 0 when no untrained model is feasible, 1 when one is, 2 for bad input.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from gainakt.baselines import baseline_metrics, best_mastery_corr
from gainakt.batching import BatchPlan
from gainakt.data import load_dataset
from gainakt.errors import UserError
from gainakt.evaluate import evaluate
from gainakt.guarantees import guaranteed_metrics
from gainakt.model import build_model
from gainakt.sequences import Dataset
from gainakt.train import make_config
from search.analysis import pareto
from search.schema import FEASIBLE, GUARANTEED
from search.spec import DEFAULT_CONSTRAINTS, DEFAULT_TRAIN, Constraint

GAINS = ("relu", "softplus", "linear")
MASTERIES = ("cumulative", "direct", "deep")  # aux_weights_deep's; aux_weights samples the first two
ATTENTIONS = ("legacy", "intrinsic")
HEADS = ("free", "mastery", "mixed")
SHOWN = (
    "auc",
    "mastery_corr",
    "mastery_lift",
    "faithfulness",
    "residual_share",
    "copy_corr",
    "mastery_saturation",
)


def settings() -> list[dict[str, str]]:
    """Every searched combination of the model's modes, then DKT."""
    combos = itertools.product(GAINS, MASTERIES, ATTENTIONS, HEADS)
    modes = [dict(zip(("gains", "mastery", "attention", "head"), c, strict=True)) for c in combos]
    return [{"kind": "gainakt2exp", **m} for m in modes] + [{"kind": "dkt"}]


def untrained_scores(
    dataset: Dataset,
    fold: int = 0,
    windows: int | None = None,
    constraints: Sequence[Constraint] = DEFAULT_CONSTRAINTS,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """One row per untrained model (its modes, metrics, `guaranteed`, `feasible` and `misses`: the
    constraints it does not meet) on `windows` validation windows of `fold` spread evenly over it (all
    when None), and the lookups' metrics on the same windows."""
    train, valid = dataset.split(fold)
    if windows is not None:
        picked = np.zeros(len(valid), dtype=bool)
        picked[np.linspace(0, len(valid) - 1, min(windows, len(valid))).astype(int)] = True
        valid = valid.subset(picked)  # evenly spread over the fold
    lookups = baseline_metrics(train, valid, dataset.num_concepts)
    scores = {name: m.as_dict() for name, m in lookups.items()}
    resolved = [c.resolve(scores) for c in constraints]
    base = make_config(**DEFAULT_TRAIN).model
    plan = BatchPlan(valid, 128, "bucketed", shuffle=False)
    rows = []
    for modes in settings():
        options = replace(base, **modes)
        torch.manual_seed(seed)
        model = build_model(options, dataset.num_concepts).eval()
        with torch.no_grad():
            metrics = evaluate(model, plan, baseline_mastery_corr=best_mastery_corr(lookups)).as_dict()
        rows.append({**modes, **metrics, GUARANTEED: ",".join(guaranteed_metrics(options))})
    frame = pd.DataFrame(rows)
    frame[FEASIBLE] = pareto.feasible(frame, resolved)
    frame["misses"] = [
        ", ".join(str(c) for c in resolved if not pareto.feasible(frame.loc[[i]], [c]).iloc[0])
        for i in frame.index
    ]
    return frame, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="synthetic", help="a dataset (default: the simulator)")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--windows", type=int, help="score N windows spread over the fold (default: all)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        dataset = load_dataset(args.data)
        frame, lookups = untrained_scores(dataset, args.fold, args.windows)
    except UserError as err:
        print(f"untrained.py: error: {err}", file=sys.stderr)
        return 2
    print(f"$ .venv/bin/python benchmarks/untrained.py {shlex.join(sys.argv[1:] if argv is None else argv)}")
    print(f"{args.data}, validation fold {args.fold}, {args.windows or 'all'} windows; default constraints:")
    print("  " + " and ".join(c.shown() for c in (c.resolve(lookups) for c in DEFAULT_CONSTRAINTS)))
    columns = ["kind", "gains", "mastery", "attention", "head", *SHOWN, "feasible", "misses"]
    with pd.option_context("display.width", 250, "display.max_rows", 200, "display.max_colwidth", 90):
        print(frame[columns].fillna("-").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("lookups on the same windows:")
    table = pd.DataFrame(lookups).T[[m for m in SHOWN if m in next(iter(lookups.values()))]]
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    feasible = int(frame[FEASIBLE].sum())
    print(f"feasible untrained models: {feasible} of {len(frame)} ({time.perf_counter() - began:.1f} s)")
    return 1 if feasible else 0


if __name__ == "__main__":
    sys.exit(main())
