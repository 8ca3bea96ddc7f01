"""The confirmation figures of a results page, from a study's confirm table (`gainakt-search confirm`).

    .venv/bin/python docs/results/confirmation.py studies/assist2015 [--against dkt] [--out docs/results]

Prints, as Markdown: per source (trial, DKT, baseline) the mean [95% t interval] over its seeds x
folds of each metric below; the paired differences of every trial against each `--against`
source (DKT by default) on the same seeds and folds; and writes NAME_confirmed.png (AUC against
mastery_lift, with the intervals as error bars). Needs matplotlib (`pip install -e ".[docs]"`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib.use above)
import pandas as pd  # noqa: E402  (after matplotlib.use above)

from search.analysis.statistics import (
    SOURCE,
    confirmed_runs,
    confirmed_split,
    paired_difference,
    shown,
    shown_column,
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


def tables(runs: pd.DataFrame, against: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary (one row per source) and every trial's paired differences against `against`."""
    summary = summarize(runs, METRICS)
    shown_summary = pd.DataFrame(
        {SOURCE: summary[SOURCE], "runs": summary["runs"], **{m: shown_column(summary, m) for m in METRICS}}
    )
    lookups = shown_summary[SOURCE].astype(str).str.startswith(BASELINE_PREFIX)
    shown_summary.loc[lookups, "faithfulness"] = "-"  # a lookup's answer is its mastery: nothing to read
    trials = [s for s in summary[SOURCE] if s != against and not str(s).startswith(BASELINE_PREFIX)]
    differences = []
    for source in trials:
        row: dict[str, object] = {SOURCE: f"{source} - {against}"}
        for metric in ("auc", "mastery_corr", "mastery_lift"):
            d = paired_difference(runs, source, against, metric)
            row[metric] = shown(d.mean, d.low, d.high)
        differences.append(row)
    return shown_summary, pd.DataFrame(differences)


def plot(runs: pd.DataFrame, out: Path) -> None:
    summary = summarize(runs, ("auc", "mastery_lift"))
    summary = summary[summary["mastery_lift.mean"].notna()]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for _, row in summary.iterrows():
        x, y = row["auc.mean"], row["mastery_lift.mean"]
        xerr = [[x - row["auc.low"]], [row["auc.high"] - x]]
        yerr = [[y - row["mastery_lift.low"]], [row["mastery_lift.high"] - y]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3)
        ax.annotate(str(row[SOURCE]), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("AUC (mean, 95% t interval)")
    ax.set_ylabel("mastery_lift over the best lookup")
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
    runs = confirmed_runs(table, METRICS, split)
    folds = ", ".join(str(f) for f in sorted(runs["fold"].unique()))
    for k, against in enumerate(args.against):
        summary, differences = tables(runs, against)
        if k == 0:
            print(f"## Confirmed on {split} (folds {folds}): mean [95% t interval] over seeds x folds\n")
            print(markdown_table(summary, list(summary.columns)))
        print(f"\n## Paired differences against {against} (same seeds and folds)\n")
        print(markdown_table(differences, list(differences.columns)))
    picture = Path(args.out) / f"{folder.name}_confirmed.png"
    plot(runs, picture)
    print(f"\npicture: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
