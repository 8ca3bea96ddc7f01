"""The figures and numbers of a results page, from a finished study's Parquet store.

    .venv/bin/python docs/results/figures.py studies/assist2015 [--eval] [--out docs/results]

Writes NAME_front.png (validation AUC against mastery correlation, coloured by negative-gain
rate, targets drawn), NAME_hypervolume.png (over trials) and NAME_curves.png (per-epoch curves
of the trial with the best AUC and of the feasible, or else closest, trial with the best AUC)
and prints, as Markdown, what the
page quotes: trials and timing, the front, hypervolume, the trade-off along the front, the
targets, the pred_corr ceiling, and with --eval the `gainakt-search eval` check of both trials.
Needs matplotlib (`pip install -e ".[docs]"`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib.use above)
import numpy as np  # noqa: E402  (after matplotlib.use above)
import pandas as pd  # noqa: E402  (after matplotlib.use above)

from search import pareto  # noqa: E402  (after matplotlib.use above)
from search.pareto import load_analysis  # noqa: E402  (after matplotlib.use above)
from search.report import markdown_table, render_markdown  # noqa: E402  (after matplotlib.use above)
from search.spec import Objective  # noqa: E402  (after matplotlib.use above)
from search.study import Study  # noqa: E402  (after matplotlib.use above)

EVAL_METRICS = (
    "auc",
    "acc",
    "val_loss",
    "mastery_corr",
    "pred_corr",
    "mastery_corr_student",
    "gain_corr",
    "neg_gain_rate",
    "monotonicity_violation_rate",
)
AUC_MASTERY = (Objective("auc", "max"), Objective("mastery_corr", "max"))


def trade_off(candidates: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """The AUC-mastery_corr front (other objectives ignored) and the AUC lost per +0.1 of
    mastery_corr along it (least-squares slope; NaN with fewer than two points)."""
    values = pareto.objective_values(candidates, AUC_MASTERY)
    front = candidates[pareto.nondominated(values, AUC_MASTERY)].sort_values("mastery_corr")
    if len(front) < 2:
        return front, float("nan")
    slope = np.polyfit(front["mastery_corr"], front["auc"], 1)[0]
    return front, float(-slope * 0.1)


def picked_trials(analysis: pareto.Analysis) -> dict[str, pd.Series]:
    """The trial with the best AUC, and the feasible (else closest to feasible) trial with the best AUC."""
    candidates = analysis.candidates
    best = candidates.loc[candidates["auc"].idxmax()]
    if candidates["feasible"].any():
        pool, label = candidates[candidates["feasible"]], "feasible, best AUC"
    else:
        closest = analysis.closest
        pool = closest[closest[pareto.VIOLATION_COLUMN] == closest[pareto.VIOLATION_COLUMN].min()]
        label = "closest to the targets"
    other = pool.loc[pool["auc"].idxmax()]
    return {"best AUC": best, label: other}


def front_png(analysis: pareto.Analysis, path: Path) -> None:
    candidates = analysis.candidates
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=130)
    rest = candidates[~candidates["front"]]
    ax.scatter(
        rest["mastery_corr"],
        rest["auc"],
        s=28,
        c="#cccccc",
        edgecolors="#999999",
        linewidths=0.5,
        label="dominated trials",
    )
    front = candidates[candidates["front"]]
    points = ax.scatter(
        front["mastery_corr"],
        front["auc"],
        s=60,
        c=front["neg_gain_rate"],
        cmap="viridis_r",
        edgecolors="black",
        linewidths=0.6,
        label="front (3 objectives)",
    )
    for row in front.to_dict("records"):
        ax.annotate(
            row["trial_id"],
            (row["mastery_corr"], row["auc"]),
            textcoords="offset points",
            xytext=(6, -3),
            fontsize=7,
        )
    bar = fig.colorbar(points, ax=ax)
    bar.set_label("negative-gain rate (lower is better)")
    for constraint in analysis.constraints:
        if constraint.metric == "mastery_corr":
            ax.axvline(constraint.threshold, color="#d62728", linestyle="--", linewidth=1)
            ax.annotate(
                f"target {constraint}",
                (constraint.threshold, 0.02),
                xycoords=("data", "axes fraction"),
                rotation=90,
                ha="right",
                va="bottom",
                color="#d62728",
                fontsize=8,
            )
        if constraint.metric == "neg_gain_rate":
            bar.ax.axhline(constraint.threshold, color="#d62728", linewidth=1.5)
    ceiling = float(np.nanmedian(candidates["pred_corr"]))
    ax.axvline(ceiling, color="#555555", linestyle=":", linewidth=1)
    ax.annotate(
        f"pred_corr median {ceiling:.2f}",
        (ceiling, 0.02),
        xycoords=("data", "axes fraction"),
        rotation=90,
        ha="right",
        va="bottom",
        color="#555555",
        fontsize=8,
    )
    ax.set_xlabel("mastery correlation (validation, per interaction)")
    ax.set_ylabel("validation AUC")
    ax.set_title(f"{analysis.trials['study'].iloc[0]}: {len(candidates)} trials, {len(front)} on the front")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def curves_png(analysis: pareto.Analysis, picked: dict[str, pd.Series], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=130)
    for (label, row), colour in zip(picked.items(), ("#1f77b4", "#ff7f0e")):
        own = analysis.epochs[analysis.epochs["trial_id"] == row["trial_id"]].sort_values("epoch")
        for ax, metric in zip(axes, ("auc", "mastery_corr", "neg_gain_rate")):
            ax.plot(own["epoch"], own[metric], marker="o", color=colour, label=f"{row['trial_id']} ({label})")
            if metric == "mastery_corr":
                ax.plot(
                    own["epoch"],
                    own["pred_corr"],
                    linestyle=":",
                    color=colour,
                    label=f"{row['trial_id']} pred_corr",
                )
    for ax, metric in zip(axes, ("validation AUC", "mastery_corr (dotted: pred_corr)", "neg_gain_rate")):
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def hypervolume_png(analysis: pareto.Analysis, path: Path) -> None:
    history = analysis.history
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=130)
    ax.step(np.arange(1, len(history) + 1), history["hypervolume"], where="post", marker="o", markersize=3)
    ax.set_xlabel("trials completed (in order of completion)")
    ax.set_ylabel("hypervolume")
    ax.set_title("hypervolume of the usable trials (reference: worst observed)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def eval_check(row: pd.Series, epochs: pd.DataFrame) -> pd.DataFrame:
    """`gainakt-search eval` on the trial's best.pt against the stored row of its selected epoch."""
    stored = epochs[
        (epochs["trial_id"] == row["trial_id"]) & (epochs["epoch"] == row["selected_epoch"])
    ].iloc[0]
    command = [
        sys.executable,
        "-m",
        "search.cli",
        "eval",
        str(Path(row["checkpoint"])),
        "--split",
        "valid",
        "--json",
    ]
    fresh = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    fresh["val_loss"] = fresh.pop("loss")
    return pd.DataFrame(
        [
            {"metric": m, "stored": stored[m], "eval": fresh[m], "difference": abs(fresh[m] - stored[m])}
            for m in EVAL_METRICS
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="study folder, e.g. studies/assist2015")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent), help="where the PNGs go (default: beside this file)"
    )
    parser.add_argument("--eval", action="store_true", help="re-evaluate both picked trials from best.pt")
    args = parser.parse_args(argv)
    folder = Path(args.study)
    spec, analysis = load_analysis(Study(str(folder.parent), folder.name))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trials, candidates = analysis.trials, analysis.candidates

    print(render_markdown(spec, analysis))
    print("## Timing\n")
    own = float(trials["train_seconds"].sum())
    span = (trials["ended_at"].max() - trials["started_at"].min()).total_seconds()
    print(f"- trials by status: {trials['status'].value_counts().to_dict()}")
    print(f"- trials' own seconds: {own:.0f}; first start to last end: {span:.0f} s")
    where = [
        sorted(map(str, trials[c].dropna().unique())) if c in trials.columns else []
        for c in ("hostname", "device")
    ]
    print(f"- nodes/devices: {where[0]} / {where[1]}")
    epochs = analysis.epochs
    per_trial = epochs.groupby("trial_id")["epoch"].agg(["count", "max"])
    print(
        f"- epoch rows: {len(epochs)}; "
        f"duplicated (trial, epoch): {int(epochs.duplicated(['trial_id', 'epoch']).sum())}; "
        f"trials with a gap in their epochs: {int((per_trial['count'] != per_trial['max']).sum())}; "
        f"epochs per trial: {per_trial['count'].sum()} = "
        f"sum of the trial table's epochs {int(trials['epochs'].sum())}\n"
    )

    print("## Hypervolume after n trials\n")
    history = analysis.history.reset_index(drop=True)
    marks = sorted({*range(3, len(history), 4), len(history) - 1}) if len(history) else []
    print(" ".join(f"{i + 1}: {history['hypervolume'][i]:.5f}" for i in marks) + "\n")

    print("## Trade-off (AUC against mastery_corr only)\n")
    groups = [("all usable trials", candidates)]
    for constraint in analysis.constraints:
        if constraint.metric != "mastery_corr":  # the same front among trials meeting the other targets
            meeting = candidates[candidates[constraint.metric].map(constraint.met)]
            groups.append((f"the {len(meeting)} trials with {constraint}", meeting))
    for label, group in groups:
        front, cost = trade_off(group)
        print(f"Among {label}:\n")
        print(markdown_table(front, ["trial_id", "auc", "mastery_corr", "pred_corr", "neg_gain_rate"]))
        print(f"AUC lost per +0.1 mastery_corr along it (least squares): {cost:.4f}\n")

    print("## Ceiling\n")
    gap = candidates["pred_corr"] - candidates["mastery_corr"]
    print(
        f"- pred_corr over usable trials: median {candidates['pred_corr'].median():.4f}, "
        f"max {candidates['pred_corr'].max():.4f}"
    )
    print(
        f"- best mastery_corr {candidates['mastery_corr'].max():.4f}; "
        f"pred_corr - mastery_corr: min {gap.min():.4f}, median {gap.median():.4f}"
    )
    print(f"- best mastery_corr_student {candidates['mastery_corr_student'].max():.4f}\n")

    picked = picked_trials(analysis)
    columns = [
        "epoch",
        "train_loss",
        "val_loss",
        "auc",
        "mastery_corr",
        "pred_corr",
        "mastery_corr_student",
        "neg_gain_rate",
        "seconds",
    ]
    for label, row in picked.items():
        params = {
            k.removeprefix("param."): row[k].item() if hasattr(row[k], "item") else row[k]
            for k in row.index
            if k.startswith("param.")
        }
        print(f"## Trial {row['trial_id']} ({label}), selected epoch {row['selected_epoch']}\n\n{params}\n")
        own_epochs = analysis.epochs[analysis.epochs["trial_id"] == row["trial_id"]].sort_values("epoch")
        print(markdown_table(own_epochs, columns))
        if args.eval:
            check = eval_check(row, analysis.epochs)
            print(markdown_table(check, list(check.columns)))
            print(f"largest difference: {check['difference'].max():.2e}\n")

    front_png(analysis, out / f"{spec.name}_front.png")
    curves_png(analysis, picked, out / f"{spec.name}_curves.png")
    hypervolume_png(analysis, out / f"{spec.name}_hypervolume.png")
    print(f"wrote {spec.name}_front.png, {spec.name}_curves.png and {spec.name}_hypervolume.png in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
