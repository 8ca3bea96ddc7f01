"""The confirmation figures of a results page, from a study's confirm table (`gainakt-search confirm`).

    .venv/bin/python docs/results/confirmation.py studies/assist2015 [--against dkt] [--out docs/results]

Prints, as Markdown: per source (trial, DKT, baseline) the mean [95% t interval] over its seeds x
folds of each metric below; the student-level bootstrap intervals where the runs have them
(`confirm --bootstrap`); the paired differences of every trial against each `--against` source
(DKT by default) on the same seeds and folds, on the study's objectives, with their
Holm-corrected intervals and p-values across every comparison printed; and writes
NAME_confirmed.png (AUC against mastery_lift, with the intervals as error bars). Needs
matplotlib (`pip install -e ".[docs]"`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib.use above)
import pandas as pd  # noqa: E402  (after matplotlib.use above)

from search.analysis.statistics import (
    SOURCE,
    confirmed_runs,
    confirmed_split,
    paired_comparisons,
    shown,
    shown_column,
    student_intervals,
    student_text,
    summarize,
)
from search.report.markdown import markdown_table  # noqa: E402  (after matplotlib.use above)
from search.schema import BASELINE_PREFIX, DKT_SOURCE  # noqa: E402  (after matplotlib.use above)
from search.store.segments import Store  # noqa: E402  (after matplotlib.use above)
from search.store.study import Study  # noqa: E402  (after matplotlib.use above)

METRICS = (
    "auc",
    "mastery_corr",
    "pred_corr",
    "mastery_lift",
    "monotonicity_violation_rate",
    "faithfulness",
    "copy_corr",
)


def tables(
    runs: pd.DataFrame, against: Sequence[str], paired: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary (one row per source) and the paired differences of every trial against each of
    `against` on the metrics `paired` (the study's objectives), Holm-corrected across all of them
    (the comparisons the page makes)."""
    summary = summarize(runs, METRICS)
    shown_summary = pd.DataFrame(
        {SOURCE: summary[SOURCE], "runs": summary["runs"], **{m: shown_column(summary, m) for m in METRICS}}
    )
    lookups = shown_summary[SOURCE].astype(str).str.startswith(BASELINE_PREFIX)
    shown_summary.loc[lookups, "faithfulness"] = "-"  # a lookup's answer is its mastery: nothing to read
    pairs = [
        (str(source), reference)
        for reference in against
        for source in summary[SOURCE]
        if source not in against and not str(source).startswith(BASELINE_PREFIX)
    ]
    compared = paired_comparisons(runs, pairs, paired)
    compared = compared[(compared["n"] > 0) & compared["mean"].notna()]
    differences = pd.DataFrame(
        {
            "pair": [f"{a} - {b}" for a, b in zip(compared["a"], compared["b"], strict=True)],
            "metric": compared["metric"],
            "difference [95% t]": [
                shown(m, lo, hi)
                for m, lo, hi in zip(compared["mean"], compared["low"], compared["high"], strict=True)
            ],
            "Holm-corrected interval": [
                "-" if math.isnan(lo) else f"[{lo:+.4f}, {hi:+.4f}]"
                for lo, hi in zip(compared["low_holm"], compared["high_holm"], strict=True)
            ],
            "p (Holm)": [_p(p) for p in compared["p_holm"]],
        }
    )
    return shown_summary, differences


def _p(p: float) -> str:
    if math.isnan(p):
        return "-"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def plot(runs: pd.DataFrame, out: Path) -> None:
    summary = summarize(runs, ("auc", "mastery_lift"))
    summary = summary[summary["mastery_lift.mean"].notna()]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for _, row in summary.iterrows():
        x, y = row["auc.mean"], row["mastery_lift.mean"]
        xerr = [[x - row["auc.low"]], [row["auc.high"] - x]]
        yerr = [[y - row["mastery_lift.low"]], [row["mastery_lift.high"] - y]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=str(row[SOURCE]))
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("AUC (mean, 95% t interval)")
    ax.set_ylabel("mastery_lift over the best lookup")
    ax.legend(fontsize=8, loc="lower left")  # a legend: close models' labels would overlap
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", help="the study folder, e.g. studies/assist2015")
    parser.add_argument(
        "--against", nargs="+", default=[DKT_SOURCE], help="sources every trial is paired with (default dkt)"
    )
    parser.add_argument("--out", default="docs/results", help="folder of the picture (default docs/results)")
    args = parser.parse_args(argv)
    folder = Path(args.study)
    study = Study(str(folder.parent), folder.name)
    table = Store(study).confirm()
    if not len(table):
        print(f"{folder}: no confirmation runs", file=sys.stderr)
        return 2
    split = confirmed_split(table)
    objectives = [o.metric for o in study.read_spec().objectives]
    runs = confirmed_runs(table, list(dict.fromkeys([*METRICS, *objectives])), split)
    folds = ", ".join(str(f) for f in sorted(runs["fold"].unique()))
    summary, differences = tables(runs, args.against, [m for m in objectives if m in runs.columns])
    print(f"## Confirmed on {split} (folds {folds}): mean [95% t interval] over seeds x folds\n")
    print(markdown_table(summary, list(summary.columns)))
    students = student_text(student_intervals(table, METRICS, split), METRICS)
    if len(students):
        print(f"\n## Student-level 95% intervals on {split} (bootstrap over students, mean of each run's)\n")
        print(markdown_table(students, list(students.columns)))
    against = ", ".join(args.against)
    print(
        f"\n## Paired differences against {against} (same seeds and folds), Holm-corrected across "
        f"all {len(differences)}\n"
    )
    print(markdown_table(differences, list(differences.columns)))
    picture = Path(args.out) / f"{folder.name}_confirmed.png"
    plot(runs, picture)
    print(f"\npicture: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
