"""Statistics of repeated runs: the figures a confirmation reports, pure functions of a runs table.

A runs table has one row per (source trial, seed, fold): the columns `source`, `seed`, `fold`
and one column per metric. From it:

- `summarize`: per source trial and metric, the mean, the sample standard deviation and the
  95% t interval of the mean over its seeds x folds (scipy.stats.t), and the number of runs;
- `paired_difference`: the difference of two source trials on one metric, paired on the
  (seed, fold) both have, with the t interval of its mean: common seeds cancel the noise the
  two runs share, so the paired interval is the one to judge a difference by;
- `robust_table` / `robust_front`: every source on its means with the constraints applied and
  the baselines (lookups, DKT) beside the trials; the front is the feasible sources no baseline
  dominates and no other feasible source dominates, each trial with the trials it is not
  distinguishable from: no objective's paired t test rejects equality once Holm corrects for
  every comparison the front makes;
- `paired_comparisons`: paired differences with their raw and Holm-corrected intervals and
  p-values (`holm`), for a page that makes several comparisons.

With a single run there is no interval (NaN bounds); NaN runs are left out of a metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gainakt.guarantees import guarantees
from search.analysis import pareto
from search.schema import (
    BASELINE_PREFIX,
    DKT_SOURCE,
    DOMINATED_BY,
    FEASIBLE,
    GUARANTEED,
    TRIAL_KEY,
    TrialStatus,
    split_column,
)
from search.spec import Constraint, Objective

CONFIDENCE = 0.95
SOURCE, SEED, FOLD = "source", "seed", "fold"
INDISTINGUISHABLE = "indistinguishable_from"


@dataclass(frozen=True)
class Estimate:
    """The mean of some runs with its t interval."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        mean = float(x.mean())
        if x.size < 2:
            return cls(mean, math.nan, math.nan, math.nan, 1)
        std = float(x.std(ddof=1))
        if std == 0:
            return cls(mean, 0.0, mean, mean, int(x.size))
        from scipy import stats  # here: importing scipy.stats takes seconds, and most reports need none

        low, high = stats.t.interval(confidence, x.size - 1, loc=mean, scale=std / math.sqrt(x.size))
        return cls(mean, std, float(low), float(high), int(x.size))

    def includes(self, value: float) -> bool:
        """Whether `value` lies in the interval; True where there is no interval (nothing is shown)."""
        return math.isnan(self.low) or self.low <= value <= self.high


def shown(mean: float, low: float, high: float) -> str:
    """`0.7265 [0.7216, 0.7306]`, or the mean alone where there is no interval."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if math.isnan(low) else f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def shown_column(frame: pd.DataFrame, metric: str, mean: str | None = None) -> list[str]:
    """`shown` for every row of a `summarize`-style frame: mean in `mean` (default `METRIC.mean`),
    bounds in `METRIC.low` and `METRIC.high`."""
    means = frame[mean or f"{metric}.mean"]
    return [shown(*v) for v in zip(means, frame[f"{metric}.low"], frame[f"{metric}.high"])]


def confirmed_split(table: pd.DataFrame) -> str:
    """The split a confirm table was scored on: test when it has test figures, else validation."""
    return "test" if any(c.startswith("test.") for c in table.columns) else "valid"


def confirmed_runs(table: pd.DataFrame, metrics: Sequence[str], split: str) -> pd.DataFrame:
    """The completed rows of a confirm table (`search/run/confirm.py`), `split.METRIC` renamed `METRIC`;
    a lookup's `mastery_lift` is its mastery_corr minus the best lookup's on the same fold (0 for
    the best), as the sweep measures a trial's."""
    # A lookup's lift needs the lookups' mastery_corr, asked for or not.
    named = [*metrics, *(["mastery_corr"] if "mastery_lift" in metrics else [])]
    done = table[table["status"] == TrialStatus.COMPLETED.value].rename(
        columns={split_column(split, m): m for m in named}
    )
    if "mastery_lift" in metrics and "mastery_corr" in done.columns:
        lookup = done[SOURCE].astype(str).str.startswith(BASELINE_PREFIX)
        corr = pd.to_numeric(done["mastery_corr"], errors="coerce")
        best = corr.where(lookup).groupby(done[FOLD]).transform("max")
        lift = pd.to_numeric(done.get("mastery_lift", pd.Series(np.nan, index=done.index)), errors="coerce")
        done = done.assign(mastery_lift=lift.where(~lookup, corr - best))
    return done


STUDENT_LOW, STUDENT_HIGH = ".student_low", ".student_high"  # as `confirm --bootstrap` stores them


def student_intervals(table: pd.DataFrame, metrics: Sequence[str], split: str) -> pd.DataFrame:
    """Per source, each metric's student-level bootstrap interval on `split` averaged over its
    completed runs (`confirm --bootstrap`): columns `source`, `METRIC.student_low`,
    `METRIC.student_high`; empty when no run has one."""
    done = table[table["status"] == TrialStatus.COMPLETED.value]
    columns = {
        f"{m}{edge}": f"{split_column(split, m)}{edge}"
        for m in metrics
        for edge in (STUDENT_LOW, STUDENT_HIGH)
        if f"{split_column(split, m)}{edge}" in done.columns
    }
    if not columns or not len(done):
        return pd.DataFrame(columns=[SOURCE])
    values = done[list(columns.values())].apply(pd.to_numeric, errors="coerce")
    means = values.groupby(done[SOURCE]).mean().rename(columns={v: k for k, v in columns.items()})
    return means.dropna(how="all").reset_index()


def student_text(students: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """`student_intervals` as text: `source` and, per metric it has, `[low, high]`."""
    out = pd.DataFrame({SOURCE: students[SOURCE]})
    for m in metrics:
        if f"{m}{STUDENT_LOW}" in students.columns:
            low, high = students[f"{m}{STUDENT_LOW}"], students[f"{m}{STUDENT_HIGH}"]
            out[m] = [f"[{a:.4f}, {b:.4f}]" for a, b in zip(low, high, strict=True)]
    return out


def lookup_means(runs: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Each lookup's metrics in `runs` (`confirmed_runs`), averaged over its folds: what a
    `best_lookup` threshold is resolved against on the confirmed split."""
    lookups = runs[runs[SOURCE].astype(str).str.startswith(BASELINE_PREFIX)]
    numbers = lookups.drop(columns=[SOURCE]).apply(pd.to_numeric, errors="coerce")
    means = numbers.groupby(lookups[SOURCE]).mean()
    return {str(name).removeprefix(BASELINE_PREFIX): row.to_dict() for name, row in means.iterrows()}


def summarize(runs: pd.DataFrame, metrics: Sequence[str], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per source trial: `METRIC.mean`, `.std`, `.low`, `.high` for each metric, and `runs`."""
    rows = []
    for source, group in runs.groupby(SOURCE, sort=True):
        row: dict[str, object] = {SOURCE: source, "runs": len(group)}
        for metric in metrics:
            values = group[metric] if metric in group.columns else pd.Series(np.nan, index=group.index)
            estimate = Estimate.of(pd.to_numeric(values, errors="coerce"), confidence)
            row.update(
                {f"{metric}.{part}": getattr(estimate, part) for part in ("mean", "std", "low", "high")}
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _differences(runs: pd.DataFrame, a: str, b: str, metric: str) -> np.ndarray:
    """a - b on `metric` for each (seed, fold) both were run with (NaN pairs left out)."""
    keys = [SEED, FOLD]
    left = runs.loc[runs[SOURCE] == a, [*keys, metric]]
    right = runs.loc[runs[SOURCE] == b, [*keys, metric]]
    both = left.merge(right, on=keys, suffixes=("_a", "_b"))
    difference = pd.to_numeric(both[f"{metric}_a"], errors="coerce") - pd.to_numeric(
        both[f"{metric}_b"], errors="coerce"
    )
    values = difference.to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]


def paired_difference(
    runs: pd.DataFrame, a: str, b: str, metric: str, confidence: float = CONFIDENCE
) -> Estimate:
    """Source trial a minus b on `metric`, paired on the (seed, fold) both were run with."""
    return Estimate.of(_differences(runs, a, b, metric), confidence)


def paired_p_value(runs: pd.DataFrame, a: str, b: str, metric: str) -> float:
    """The two-sided p-value of the paired t test that a and b differ on `metric` (NaN with fewer
    than 2 pairs; 1 or 0 when the differences are all equal: to 0 or not)."""
    d = _differences(runs, a, b, metric)
    if d.size < 2:
        return math.nan
    std = float(d.std(ddof=1))
    if std == 0:
        return 1.0 if float(d.mean()) == 0 else 0.0
    from scipy import stats

    t = float(d.mean()) / (std / math.sqrt(d.size))
    return float(2 * stats.t.sf(abs(t), d.size - 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of m p-values (NaN ones left out of m and kept NaN): the i-th
    smallest is multiplied by m - i (i from 0), made non-decreasing in that order, capped at 1."""
    order = [i for i in np.argsort(np.asarray(p_values, dtype=float), kind="stable")]
    order = [i for i in order if not math.isnan(p_values[i])]
    out, running = [math.nan] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        out[i] = running
    return out


COMPARISON_COLUMNS = ["a", "b", "metric", "mean", "low", "high", "p", "p_holm", "low_holm", "high_holm", "n"]


def paired_comparisons(
    runs: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    metrics: Sequence[str],
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Every (a, b, metric) of `pairs` x `metrics`: the paired difference a - b with its t interval,
    its p-value, and the same corrected by Holm across all of them: `p_holm`, and `low_holm`,
    `high_holm`, the interval at the level Holm tests its rank at, 1 - alpha / (m - rank) for rank 0,
    1, ... (ascending p) up to the first comparison Holm does not reject and that level after it, so
    that it excludes 0 exactly where `p_holm` <= alpha."""
    wanted = [(a, b, m) for a, b in pairs for m in metrics]
    p_values = [paired_p_value(runs, a, b, m) for a, b, m in wanted]
    adjusted = holm(p_values)
    alpha, levels = 1 - confidence, [math.nan] * len(wanted)
    order = [i for i in np.argsort(p_values, kind="stable") if not math.isnan(p_values[i])]
    kept: float | None = None  # the level of the first comparison Holm does not reject, kept after it
    for rank, i in enumerate(order):
        levels[i] = kept if kept is not None else 1 - alpha / (len(order) - rank)
        if kept is None and p_values[i] > alpha / (len(order) - rank):
            kept = levels[i]
    rows = []
    for (a, b, metric), p, p_holm, level in zip(wanted, p_values, adjusted, levels, strict=True):
        raw = paired_difference(runs, a, b, metric, confidence)
        wide = raw if math.isnan(level) else paired_difference(runs, a, b, metric, level)
        rows.append([a, b, metric, raw.mean, raw.low, raw.high, p, p_holm, wide.low, wide.high, raw.n])
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def is_baseline_source(sources: pd.Series) -> pd.Series:
    """Which sources are a baseline (a lookup, baseline:NAME, or DKT) rather than a sweep trial."""
    text = sources.astype(str)
    return text.str.startswith(BASELINE_PREFIX) | (text == DKT_SOURCE)


def source_fixed(trials: pd.DataFrame) -> dict[str, str]:
    """Per confirmed source, the metrics its model fixes by construction (a `guaranteed` cell): each
    sweep trial's from the trial table, DKT's and the lookups' (their prediction is their mastery)."""
    fixed = {DKT_SOURCE: ",".join(g.metric for g in guarantees("", "", kind="dkt"))}
    if GUARANTEED in trials.columns:
        listed = trials[GUARANTEED].fillna("").astype(str)
        fixed.update(zip(trials[TRIAL_KEY].astype(str), listed, strict=True))
    return fixed


def robust_table(
    runs: pd.DataFrame,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint] = (),
    fixed: Mapping[str, str] | None = None,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per source on its means (`summarize` columns renamed to the metric): `feasible` (the
    constraints on the means; `fixed` names what each source's model fixes, a lookup's by its
    prefix), `dominated_by` (the baselines, lookups and DKT, at least as good on every objective and
    better on one) and `front`: the feasible sources with every objective defined that no baseline
    dominates and no other such source dominates on the means."""
    metrics = list(dict.fromkeys([*(o.metric for o in objectives), *(c.metric for c in constraints)]))
    summary = summarize(runs, metrics, confidence)
    means = summary.rename(columns={f"{m}.mean": m for m in metrics})
    lookups = means[SOURCE].astype(str).str.startswith(BASELINE_PREFIX)
    means[GUARANTEED] = [
        pareto.LOOKUP_FIXED if lookup else (fixed or {}).get(str(source), "")
        for source, lookup in zip(means[SOURCE], lookups, strict=True)
    ]
    means[TRIAL_KEY] = means[SOURCE]  # the row id pareto's functions read
    values = pareto.objective_values(means, objectives)
    usable = np.isfinite(values).all(axis=1)
    means[FEASIBLE] = pareto.feasible(means, constraints).to_numpy() & usable
    baselines = is_baseline_source(means[SOURCE])
    means[DOMINATED_BY] = pareto.dominated_by(means, means[baselines & usable], objectives)
    means.loc[baselines, DOMINATED_BY] = ""  # a baseline is shown against the trials, not flagged
    candidates = (means[FEASIBLE] & (means[DOMINATED_BY] == "")).to_numpy()
    on_front = np.zeros(len(means), dtype=bool)
    if candidates.any():
        on_front[np.flatnonzero(candidates)] = pareto.nondominated(values[candidates], objectives)
    means["front"] = on_front
    return means.drop(columns=[TRIAL_KEY])


def robust_front(
    runs: pd.DataFrame,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint] = (),
    fixed: Mapping[str, str] | None = None,
    confidence: float = CONFIDENCE,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The sources on the front of `robust_table` (`table`, when the caller has it), best first,
    each with the other sweep trials (and DKT) it cannot be told apart from
    (`indistinguishable_from`, a list): those whose paired difference no objective's test rejects
    once Holm corrects for every comparison the front makes (`paired_comparisons`). Lookups,
    deterministic, are compared on their means alone."""
    if table is None:
        table = robust_table(runs, objectives, constraints, fixed, confidence)
    front = table[table["front"]].copy()
    seeded = [str(s) for s in table[SOURCE] if not str(s).startswith(BASELINE_PREFIX)]
    on_front = [str(s) for s in front[SOURCE] if not str(s).startswith(BASELINE_PREFIX)]
    # One family of comparisons, Holm-corrected: each front source against every other seeded one,
    # on every objective.
    pairs = sorted({(min(s, o), max(s, o)) for s in on_front for o in seeded if o != s})
    compared = paired_comparisons(runs, pairs, [o.metric for o in objectives], confidence)
    differ = {frozenset((r.a, r.b)) for r in compared.itertuples() if r.p_holm <= 1 - confidence}
    front[INDISTINGUISHABLE] = [
        []
        if str(s).startswith(BASELINE_PREFIX)
        else [other for other in seeded if other != s and frozenset((str(s), other)) not in differ]
        for s in front[SOURCE]
    ]
    first = objectives[0]
    return front.sort_values(first.metric, ascending=first.direction == "min", kind="stable").reset_index(
        drop=True
    )


def left_out(table: pd.DataFrame) -> list[str]:
    """Why each source with every objective defined is off `robust_table`'s front while it would be
    on it otherwise: `32966f0b (infeasible)`, `ef68b935 (dominated by dkt)`."""
    out = []
    off = table[~table["front"]].assign(baseline=is_baseline_source(table[SOURCE]))
    for row in off.to_dict("records"):
        if row[DOMINATED_BY]:
            out.append(f"{row[SOURCE]} (dominated by {row[DOMINATED_BY].replace(',', ', ')})")
        elif not row[FEASIBLE] and not row["baseline"]:
            out.append(f"{row[SOURCE]} (infeasible)")
    return out
