"""What the HTML page and the Markdown summary both say, decided once: the summary lines, the
provenance, the cell format and the "meeting the targets" section (the feasible front, else the
closest trials)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from search.analysis import pareto
from search.report.terminal import status_counts, storage_flag
from search.schema import BELOW_BASELINE, CHECKPOINT, DEGENERATE, FEASIBLE, TRIAL_KEY
from search.spec import SweepSpec

MAX_LISTED = 100  # rows of a table that grows with the trials (excluded, not completed)


def cell(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"
    return "-" if value is None or value is pd.NaT else str(value)


def listed_note(shown: int, total: int) -> str:
    return f"the first {shown} of {total:,}; every trial is in the study's Parquet store"


def reference_lines(analysis: pareto.Analysis) -> list[str]:
    return [
        f"{o.metric} {value:.4g} ({'spec' if given else 'worst observed, 10% of the range beyond'})"
        for o, value, given in zip(analysis.objectives, analysis.reference, analysis.reference_given)
    ]


def summary_lines(spec: SweepSpec, analysis: pareto.Analysis) -> list[str]:
    trials = analysis.trials
    candidates = analysis.candidates
    feasible_count = int(candidates[FEASIBLE].sum()) if len(candidates) else 0
    return [
        f"trials: {len(trials)} of {spec.trials} asked ({status_counts(trials)})",
        "objectives: " + ", ".join(str(o) for o in analysis.objectives),
        "constraints: " + (" and ".join(c.shown() for c in analysis.constraints) or "none"),
        (
            f"front: {len(analysis.front)} of {len(candidates)} usable trials; {feasible_count} feasible; "
            f"{len(analysis.feasible_front)} on the constrained front"
        ),
        "reference point: " + ", ".join(reference_lines(analysis)),
        f"hypervolume: {analysis.hypervolume:.6g} "
        f"(feasible trials only: {analysis.feasible_hypervolume:.6g})",
        f"epoch-level front: {len(analysis.epoch_front)} checkpointed epochs",
        f"excluded for a missing objective: {len(analysis.excluded)}",
        "best baselines on the same split: "
        + (", ".join(f"{m} {v:.4f} ({name})" for m, (v, name) in analysis.baseline.items()) or "none stored"),
        "degenerate trials (copy_corr or mastery_saturation at their limits): "
        + str(int((candidates[DEGENERATE] != "").sum()) if len(candidates) else 0),
    ]


def recommendation_lines(spec: SweepSpec, analysis: pareto.Analysis) -> list[str]:
    """Which trial to pick, by a stated rule, its checkpoint and the commands that evaluate and
    confirm it; or, when no trial qualifies, that sentence."""
    rule = pareto.recommendation_rule(analysis)
    pick = pareto.recommended(analysis)
    if pick is None:
        return [f"no trial to recommend: none is {pareto.QUALIFIED}", *_nearest_miss(analysis)]
    figures = ", ".join(f"{o.metric} {cell(pick[o.metric])}" for o in analysis.objectives)
    return [
        f"recommended: trial {pick[TRIAL_KEY]} ({figures}): {rule}",
        f"its checkpoint: {pick[CHECKPOINT]}",
        f"evaluate it: gainakt-search eval {pick[CHECKPOINT]}; re-train it on new seeds: "
        f"gainakt-search confirm {spec.name}{storage_flag(spec)}",
    ]


def _nearest_miss(analysis: pareto.Analysis) -> list[str]:
    """What keeps the trial the rule would rank first from qualifying."""
    best = pareto.best_trial(analysis.candidates, analysis.objectives)
    if best is None:
        return []
    reasons = [] if best[FEASIBLE] else ["misses a target"]
    reasons += [f"degenerate ({best[DEGENERATE]})"] if best[DEGENERATE] else []
    worse = pareto.worse_objectives(best[BELOW_BASELINE], analysis.objectives)
    reasons += [f"worse than the best lookup on {', '.join(worse)}"] if worse else []
    metric, _ = pareto.ranking(analysis)
    return [f"(the trial with the best {metric}, {best[TRIAL_KEY]}: {'; '.join(reasons)})"]


def provenance(spec: SweepSpec, analysis: pareto.Analysis) -> dict[str, str]:
    trials = analysis.trials

    def distinct(column: str) -> str:
        return (
            ", ".join(sorted(map(str, trials[column].dropna().unique()))) if column in trials.columns else "-"
        )

    def when(value: object) -> str:
        return (
            "-" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S UTC")
        )

    return {
        "data": distinct("data"),
        "data fingerprint": distinct("data_fingerprint"),
        "package version": distinct("version"),
        "space": distinct("space"),
        "devices": distinct("device"),
        "first trial started": when(trials["started_at"].min() if "started_at" in trials.columns else None),
        "last trial ended": when(trials["ended_at"].max() if "ended_at" in trials.columns else None),
        "report written": when(pd.Timestamp(dt.datetime.now(dt.UTC))),
    }


@dataclass(frozen=True)
class Targets:
    """The "meeting the targets" section: a sentence, then `frame`'s `columns` (empty: no table)."""

    lead: str  # plain text; the HTML escapes it
    frame: pd.DataFrame
    columns: list[str]
    met: bool  # the frame holds trials meeting the targets, not the closest ones


def targets(analysis: pareto.Analysis) -> Targets | None:
    """The trials meeting every constraint that no other such trial dominates; when none meets them,
    the closest by total normalised violation. None without constraints."""
    if not analysis.constraints:
        return None
    said = " and ".join(c.shown() for c in analysis.constraints)
    objectives = [o.metric for o in analysis.objectives]
    if len(analysis.feasible_front):
        met = int(analysis.candidates[FEASIBLE].sum())
        columns = ["trial_id", *objectives, "selected_epoch", "checkpoint"]
        lead = f"{met} trials meet {said}; the non-dominated ones:"
        return Targets(lead, analysis.feasible_front, columns, met=True)
    if not len(analysis.closest):
        return Targets(f"No completed trial yet to check against {said}.", analysis.closest, [], met=False)
    columns = [
        "trial_id",
        *objectives,
        *(c.metric for c in analysis.constraints),
        pareto.VIOLATION_COLUMN,
    ]
    lead = (
        f"No trial meets {said}. The closest, by total normalised violation (each constraint's miss "
        "divided by the spread of its metric over the completed trials, summed):"
    )
    shown = [c for c in dict.fromkeys(columns) if c in analysis.closest.columns]
    return Targets(lead, analysis.closest, shown, met=False)
