"""Pareto analysis over the study's tables: pure functions of the trial (and epoch) DataFrames.

Everything here reads only what the Parquet store holds (`Store.trials()`, `Store.epochs()`),
so it works on a finished study, a running one, or one copied from a cluster.

- Candidates (`usable`): COMPLETED trials whose every objective is a finite number. The rest
  of the completed trials are listed by `excluded` with the reason (a missing or NaN objective).
- `front`: the non-dominated candidates for any objectives with mixed directions (moocore's
  `is_nondominated`; ties and duplicates are all kept, as neither dominates the other).
- `feasible` / `constrained_front`: the constraints checked afresh on each row with
  `Constraint.met` (a NaN never meets a target), and the front of the feasible candidates.
- `closest_to_feasible`: when nothing is feasible, the candidates ranked by their total
  normalised violation: the sum over constraints of `Constraint.violation(value) / scale`,
  where `scale` is the spread (max - min) of that constraint's metric over the candidates, or
  1 when the spread is 0 or undefined. Dividing by the spread makes a miss of a metric with a
  small range (neg_gain_rate) count as much as one of a metric with a wide range; a NaN
  value is an infinite violation.
- `reference_point` / `hypervolume` / `hypervolume_history`: the hypervolume (moocore) of the
  candidates against a reference point. The reference comes from the spec (`reference`, a
  metric -> value table) where it names the objective; otherwise it is the worst observed
  value of that objective among the candidates pushed out by 10% of the observed range (by 10%
  of max(|worst|, 1) when all values are equal, or their range is below 1e-12 of that), so
  that the worst trial still adds volume.
  Points that do not strictly beat the reference on every objective add no volume. The history
  is the hypervolume after each candidate, in order of trial completion (`ended_at`); it never
  decreases, since the reference point is fixed for the whole history.
- `epoch_front`: every epoch row with a checkpoint (of any trial except LOST ones) is a
  candidate model; the front over those rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import moocore
import numpy as np
import pandas as pd

from gainakt import schema as model_schema
from gainakt.errors import ConfigError
from search.schema import (
    BASELINE_PREFIX,
    BELOW_BASELINE,
    DEGENERATE,
    DOMINATED_BY,
    FEASIBLE,
    GUARANTEED,
    PARAM,
    TRIAL_KEY,
    TrialStatus,
    fixed_metrics,
)
from search.spec import Constraint, Objective, SweepSpec
from search.store.segments import Store
from search.store.study import Study

REFERENCE_MARGIN = 0.1  # of the observed range, beyond the worst observed value
SPREAD_EPSILON = 1e-12  # relative: a smaller range of an objective counts as all values equal
VIOLATION_COLUMN = "total_violation"


# ---------------------------------------------------------------------------- candidates


def objective_values(frame: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """The objective columns as floats; a column the table lacks reads as NaN."""
    columns = [
        pd.to_numeric(frame[o.metric], errors="coerce")
        if o.metric in frame.columns
        else pd.Series(np.nan, index=frame.index)
        for o in objectives
    ]
    return (
        np.column_stack([c.to_numpy(dtype=float) for c in columns])
        if len(frame)
        else np.empty((0, len(objectives)))
    )


def _completed(trials: pd.DataFrame) -> pd.DataFrame:
    if not len(trials) or "status" not in trials.columns:
        return trials.iloc[0:0]
    return trials[trials["status"] == TrialStatus.COMPLETED]


def usable(trials: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Completed trials whose every objective is a number."""
    done = _completed(trials)
    if not len(done):
        return done
    return done[np.isfinite(objective_values(done, objectives)).all(axis=1)]


def excluded(trials: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Completed trials left out of the front for a missing or NaN objective, with a `reason` column."""
    done = _completed(trials)
    values = objective_values(done, objectives)
    bad = ~np.isfinite(values).all(axis=1)
    out = done[bad].copy()
    out["reason"] = [
        "no value for " + ", ".join(o.metric for o, ok in zip(objectives, np.isfinite(row)) if not ok)
        for row in values[bad]
    ]
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------- dominance


def nondominated(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """Mask of the rows of `values` (finite) that no other row dominates; duplicates all kept."""
    if not len(values):
        return np.zeros(0, dtype=bool)
    return moocore.is_nondominated(
        values, maximise=[o.direction == "max" for o in objectives], keep_weakly=True
    )


def _sorted(frame: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    first = objectives[0]
    return frame.sort_values(
        first.metric, ascending=first.direction == "min", kind="stable", ignore_index=True
    )


def front(trials: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """The non-dominated usable trials (ties kept), best first on the first objective."""
    candidates = usable(trials, objectives)
    if not len(candidates):
        return candidates.reset_index(drop=True)
    keep = nondominated(objective_values(candidates, objectives), objectives)
    return _sorted(candidates[keep], objectives)


# ---------------------------------------------------------------------------- constraints


def _metric(frame: pd.DataFrame, metric: str) -> np.ndarray:
    if metric not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float)


def _fixed(frame: pd.DataFrame) -> list[frozenset[str]]:
    """Per row, the metrics its model fixes by construction (the `guaranteed` column, if any)."""
    if GUARANTEED not in frame.columns:
        return [frozenset()] * len(frame)
    return [fixed_metrics(listed) for listed in frame[GUARANTEED]]


def feasible(frame: pd.DataFrame, constraints: Sequence[Constraint]) -> pd.Series:
    """Whether each row meets every constraint (all rows when there is none); a constraint on a
    metric the row's model fixes by construction does not count for that row."""
    mask = np.ones(len(frame), dtype=bool)
    fixed = _fixed(frame)
    for constraint in constraints:
        values = _metric(frame, constraint.metric)
        met = [constraint.met(v, constraint.metric in f) for v, f in zip(values, fixed, strict=True)]
        mask &= np.array(met, dtype=bool)
    return pd.Series(mask, index=frame.index, name="feasible")


def constrained_front(
    trials: pd.DataFrame, objectives: Sequence[Objective], constraints: Sequence[Constraint]
) -> pd.DataFrame:
    """The non-dominated trials among the usable ones that meet every constraint."""
    candidates = usable(trials, objectives)
    return front(candidates[feasible(candidates, constraints)], objectives)


def total_violation(
    frame: pd.DataFrame, constraints: Sequence[Constraint], scales: Mapping[str, float] | None = None
) -> pd.Series:
    """Sum over constraints of violation / scale (the metric's spread over `frame` unless given)."""
    total = np.zeros(len(frame))
    fixed = _fixed(frame)
    for constraint in constraints:
        values = _metric(frame, constraint.metric)
        scale = (scales or {}).get(constraint.metric, _spread(values))
        gaps = [constraint.violation(v, constraint.metric in f) for v, f in zip(values, fixed, strict=True)]
        total += np.array(gaps) / scale
    return pd.Series(total, index=frame.index, name=VIOLATION_COLUMN)


def _spread(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    spread = float(finite.max() - finite.min()) if len(finite) else 0.0
    return spread if spread > 0 else 1.0


def closest_to_feasible(
    trials: pd.DataFrame, objectives: Sequence[Objective], constraints: Sequence[Constraint], count: int = 5
) -> pd.DataFrame:
    """The `count` usable trials of smallest total normalised violation, with a `total_violation` column."""
    candidates = usable(trials, objectives).copy()
    candidates[VIOLATION_COLUMN] = total_violation(candidates, constraints)
    return candidates.sort_values(VIOLATION_COLUMN, kind="stable", ignore_index=True).head(count)


# ---------------------------------------------------------------------------- hypervolume


def reference_point(
    trials: pd.DataFrame, objectives: Sequence[Objective], given: Mapping[str, float] | None = None
) -> np.ndarray:
    """One value per objective: the given one, or the worst observed pushed out by 10% of the range."""
    return reference_of(objective_values(usable(trials, objectives), objectives), objectives, given)


def reference_of(
    values: np.ndarray, objectives: Sequence[Objective], given: Mapping[str, float] | None = None
) -> np.ndarray:
    """`reference_point` of objective values [n, objectives] (finite ones)."""
    point = []
    for j, objective in enumerate(objectives):
        if given and objective.metric in given:
            point.append(float(given[objective.metric]))
            continue
        column = values[:, j]
        if not len(column):
            point.append(math.nan)
            continue
        worst = column.min() if objective.direction == "max" else column.max()
        spread = column.max() - column.min()
        scale = max(abs(worst), 1.0)
        # A spread negligible against the values counts as none: 10% of it may not move the
        # reference off the worst value in floating point (or may underflow to 0).
        margin = REFERENCE_MARGIN * (spread if spread > SPREAD_EPSILON * scale else scale)
        point.append(worst - margin if objective.direction == "max" else worst + margin)
    return np.array(point, dtype=float)


def _hv(values: np.ndarray, reference: np.ndarray, objectives: Sequence[Objective]) -> float:
    if not len(values) or not np.isfinite(reference).all():
        return 0.0
    return float(
        moocore.hypervolume(values, ref=reference, maximise=[o.direction == "max" for o in objectives])
    )


def hypervolume(trials: pd.DataFrame, objectives: Sequence[Objective], reference: np.ndarray) -> float:
    """The hypervolume of the usable trials against `reference`."""
    return _hv(objective_values(usable(trials, objectives), objectives), reference, objectives)


def completion_order(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials in order of completion (`ended_at`, then trial id); unfinished ones last."""
    if not len(trials):
        return trials
    keys = [c for c in ("ended_at", "trial_id") if c in trials.columns]
    return trials.sort_values(keys, kind="stable", na_position="last", ignore_index=True)


def hypervolume_history(
    trials: pd.DataFrame,
    objectives: Sequence[Objective],
    reference: np.ndarray,
    constraints: Sequence[Constraint] = (),
) -> pd.DataFrame:
    """The hypervolume after each usable trial, in order of completion.

    Columns: `trial_id`, `ended_at`, `hypervolume`. With `constraints`, only the feasible
    trials add volume (the others keep their row, with the value unchanged). Only the running
    front is kept, and the hypervolume is recomputed only when a trial joins it, so long
    histories stay cheap.
    """
    ordered = completion_order(usable(trials, objectives))
    values = objective_values(ordered, objectives)
    counts = feasible(ordered, constraints).to_numpy()
    running = np.empty((0, len(objectives)))
    current, history = 0.0, []
    maximise = [o.direction == "max" for o in objectives]
    for point, counted in zip(values, counts):
        if not counted:
            history.append(current)
            continue
        merged = np.vstack([running, point])
        keep = moocore.is_nondominated(merged, maximise=maximise, keep_weakly=False)
        if keep[-1]:  # the trial joins the front (a duplicate of a front point does not)
            running = merged[keep]
            current = _hv(running, reference, objectives)
        history.append(current)
    return pd.DataFrame(
        {
            "trial_id": ordered["trial_id"].to_numpy() if len(ordered) else [],
            "ended_at": ordered["ended_at"].to_numpy()
            if len(ordered) and "ended_at" in ordered.columns
            else [None] * len(ordered),
            "hypervolume": history,
        }
    )


# ---------------------------------------------------------------------------- epochs


def epoch_candidates(
    epochs: pd.DataFrame, trials: pd.DataFrame, objectives: Sequence[Objective]
) -> pd.DataFrame:
    """Epoch rows with a checkpoint and every objective a number, of trials that are not LOST, each
    with its trial's `guaranteed` cell (what its model fixes holds at every epoch)."""
    if not len(epochs) or "checkpoint" not in epochs.columns:
        return epochs.iloc[0:0]
    rows = epochs[epochs["checkpoint"].notna()]
    if len(trials) and "status" in trials.columns:
        lost = set(trials.loc[trials["status"] == TrialStatus.LOST, TRIAL_KEY])
        rows = rows[~rows["trial_id"].isin(lost)]
    if GUARANTEED in trials.columns and GUARANTEED not in rows.columns:
        fixed = trials.drop_duplicates(TRIAL_KEY).set_index(TRIAL_KEY)[GUARANTEED]
        rows = rows.assign(**{GUARANTEED: rows[TRIAL_KEY].map(fixed)})
    return rows[np.isfinite(objective_values(rows, objectives)).all(axis=1)]


def epoch_front(
    epochs: pd.DataFrame,
    trials: pd.DataFrame,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint] = (),
) -> pd.DataFrame:
    """The non-dominated checkpointed epochs: every saved epoch of every trial is a candidate model.

    With `constraints`, only the epochs that meet them all are candidates (the constrained front).
    """
    candidates = epoch_candidates(epochs, trials, objectives)
    candidates = candidates[feasible(candidates, constraints)]
    if not len(candidates):
        return candidates.reset_index(drop=True)
    keep = nondominated(objective_values(candidates, objectives), objectives)
    return _sorted(candidates[keep], objectives)


# ---------------------------------------------------------------------------- everything at once


# ---------------------------------------------------------------------------- baselines


# A lookup's prediction is its estimate of the next concept: nothing bypasses it, and per concept it
# is its own mastery (docs/metrics.md).
LOOKUP_FIXED = "residual_share,mastery_pred_corr"


def lookup_rows(baselines: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """One row per lookup of `baselines` (name -> metrics, as baselines.json holds them), laid out as a
    completed trial's: `trial_id` baseline:NAME, its metrics, its `mastery_lift` against the best
    lookup's mastery_corr (so 0 for the best), and what a lookup fixes by construction."""
    if not baselines:
        return pd.DataFrame(columns=[TRIAL_KEY, "status", GUARANTEED])
    corr = [float(m.get("mastery_corr", math.nan)) for m in baselines.values()]
    best = max((c for c in corr if math.isfinite(c)), default=math.nan)
    rows = [
        {
            TRIAL_KEY: BASELINE_PREFIX + name,
            "status": TrialStatus.COMPLETED.value,
            **{m: float(metrics.get(m, math.nan)) for m in model_schema.METRICS},
            "mastery_lift": float(metrics.get("mastery_corr", math.nan)) - best,
            GUARANTEED: LOOKUP_FIXED,
        }
        for name, metrics in baselines.items()
    ]
    return pd.DataFrame(rows)


def dominated_by(frame: pd.DataFrame, baselines: pd.DataFrame, objectives: Sequence[Objective]) -> list[str]:
    """Per row of `frame`, the baselines (rows of `baselines`, every objective defined) that are at
    least as good on every objective and better on one, comma-separated by their name."""
    if not len(frame) or not len(baselines):
        return [""] * len(frame)
    sign = np.array([1.0 if o.direction == "max" else -1.0 for o in objectives])
    rows = objective_values(frame, objectives) * sign  # larger is better on every column
    beaters = objective_values(baselines, objectives) * sign
    names = [str(t).removeprefix(BASELINE_PREFIX) for t in baselines[TRIAL_KEY]]
    out = []
    for row in rows:
        wins = (beaters >= row).all(axis=1) & (beaters > row).any(axis=1)
        out.append(",".join(name for name, won in zip(names, wins, strict=True) if won))
    return out


# ---------------------------------------------------------------------------- flags


def baseline_values(
    baselines: Mapping[str, Mapping[str, float]], metrics: Sequence[str]
) -> dict[str, tuple[float, str]]:
    """For each metric, the best baseline's value in the metric's better direction and its name."""
    out = {}
    for metric in (m for m in metrics if m in model_schema.VERSUS_BASELINES):
        direction = model_schema.METRIC_DIRECTIONS.get(metric)
        scored = [
            (float(v[metric]), name)
            for name, v in baselines.items()
            if math.isfinite(v.get(metric, math.nan))
        ]
        if direction and scored:
            out[metric] = max(scored) if direction == "max" else min(scored)
    return out


def flags(frame: pd.DataFrame, baseline: Mapping[str, tuple[float, str]]) -> pd.DataFrame:
    """`frame` with `degenerate` (the degeneracy limits each row reaches) and `below_baseline` (the
    metrics on which it does worse than the best baseline), each a comma-separated list."""

    def names(checks: list[tuple[str, np.ndarray]]) -> list[str]:
        return [",".join(name for name, hit in checks if hit[i]) for i in range(len(frame))]

    degenerate = [(m, _metric(frame, m) >= limit) for m, limit in model_schema.DEGENERACY_LIMITS.items()]
    worse = []
    for metric, (value, _) in baseline.items():
        values = _metric(frame, metric)
        worse.append(
            (metric, values < value if model_schema.METRIC_DIRECTIONS[metric] == "max" else values > value)
        )
    return frame.assign(**{DEGENERATE: names(degenerate), BELOW_BASELINE: names(worse)})


@dataclass(frozen=True)
class Analysis:
    """What the `pareto` command and the report show, computed once from the two tables."""

    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    trials: pd.DataFrame
    epochs: pd.DataFrame
    candidates: pd.DataFrame  # usable trials, with `feasible` and `front` columns
    front: pd.DataFrame  # with `feasible`
    feasible_front: pd.DataFrame
    closest: pd.DataFrame  # empty unless no candidate is feasible
    excluded: pd.DataFrame
    reference: np.ndarray
    reference_given: tuple[bool, ...]  # per objective: from the spec, or derived
    hypervolume: float
    feasible_hypervolume: float
    history: pd.DataFrame  # trial_id, ended_at, hypervolume, feasible_hypervolume
    epoch_front: pd.DataFrame  # with `feasible`
    baseline: Mapping[str, tuple[float, str]]  # per objective or constraint metric: best baseline value, name
    lookups: pd.DataFrame  # the lookups with every objective defined, as rows (`lookup_rows`), `feasible`


def _stacked(trials: pd.DataFrame, lookups: pd.DataFrame) -> pd.DataFrame:
    """The trial rows, then the lookup rows (none: the trials as they are, their dtypes kept)."""
    return pd.concat([trials, lookups], ignore_index=True) if len(lookups) else trials


def analyse(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
    reference: Mapping[str, float] | None = None,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
) -> Analysis:
    """Everything at once; `baselines` maps each baseline's name to its metrics on the same split
    (what a `best_lookup` threshold is resolved against)."""
    objectives = tuple(objectives)
    constraints = tuple(c.resolve(baselines or {}) for c in constraints)
    metrics = list(dict.fromkeys([o.metric for o in objectives] + [c.metric for c in constraints]))
    baseline = baseline_values(baselines or {}, metrics)
    candidates = flags(usable(trials, objectives), baseline)
    candidates[FEASIBLE] = feasible(candidates, constraints)
    lookups = usable(lookup_rows(baselines or {}), objectives)
    lookups = lookups.assign(**{FEASIBLE: feasible(lookups, constraints)})
    candidates[DOMINATED_BY] = dominated_by(candidates, lookups, objectives)
    # The front of the trials and the lookups together: a lookup that no trial beats stands on it.
    both = _stacked(candidates, lookups)
    # nondominated gives an empty boolean array for no candidates: an empty list would index columns.
    on_front = nondominated(objective_values(both, objectives), objectives)
    candidates["front"] = on_front[: len(candidates)]
    lookups = lookups.assign(front=on_front[len(candidates) :])
    # The constrained front: feasible trials no baseline dominates, and the feasible lookups.
    undominated = candidates[candidates[FEASIBLE] & (candidates[DOMINATED_BY] == "")]
    feasible_lookups = lookups[lookups[FEASIBLE]]
    meeting = _stacked(undominated, feasible_lookups)
    point = reference_point(trials, objectives, reference)
    epochs_front = epoch_front(epochs, trials, objectives)
    epochs_front[FEASIBLE] = feasible(epochs_front, constraints)
    history = hypervolume_history(trials, objectives, point)
    history["feasible_hypervolume"] = hypervolume_history(trials, objectives, point, constraints)[
        "hypervolume"
    ]
    any_feasible = bool(candidates["feasible"].any()) if len(candidates) else False
    return Analysis(
        objectives=objectives,
        constraints=constraints,
        trials=trials,
        epochs=epochs,
        candidates=candidates,
        front=_sorted(_stacked(candidates[candidates["front"]], lookups[lookups["front"]]), objectives),
        feasible_front=front(meeting, objectives),
        closest=closest_to_feasible(trials, objectives, constraints)
        if constraints and not any_feasible
        else candidates.iloc[0:0],
        excluded=excluded(trials, objectives),
        reference=point,
        reference_given=tuple(o.metric in (reference or {}) for o in objectives),
        hypervolume=hypervolume(trials, objectives, point),
        feasible_hypervolume=_hv(
            objective_values(candidates[candidates["feasible"]], objectives), point, objectives
        )
        if len(candidates)
        else 0.0,
        history=history,
        epoch_front=epochs_front,
        baseline=baseline,
        lookups=lookups,
    )


CURVE_METRICS = ("auc", "mastery_corr")  # the report's learning curves (with their ceilings)


def epoch_columns(objectives: Sequence[Objective], constraints: Sequence[Constraint]) -> list[str]:
    """The epoch table's columns the epoch-level front and the learning curves read."""
    metrics = [*(o.metric for o in objectives), *(c.metric for c in constraints), *CURVE_METRICS]
    ceilings = [model_schema.CEILINGS[m] for m in metrics if m in model_schema.CEILINGS]
    return list(dict.fromkeys(["checkpoint", *metrics, *ceilings]))


def load_analysis(
    study: Study,
    objectives: Sequence[Objective] | None = None,
    epochs: bool = True,
    every_setting: bool = True,
) -> tuple[SweepSpec, Analysis]:
    """The study's spec and the analysis of its store; a one-line error when the store holds no
    trial. The epoch table is read (only the columns of `epoch_columns`) when `epochs` is set: for
    the epoch-level front and the learning curves; without it both are empty. Without
    `every_setting` the trials' settings (`param.*`) are read for the fronts and the closest
    trials alone (what `pareto` prints), not for every trial (what the report draws)."""
    spec = study.read_spec()
    store = Store(study)
    names = store.schema("trials").names
    settings = [c for c in names if c.startswith(PARAM)]
    light = None if every_setting else [c for c in names if c not in settings]
    trials = store.trials(columns=light)
    if not len(trials):
        raise ConfigError(f"study {study.name!r} has no trials in its store yet ({study.trials_dir})")
    objectives = objectives or spec.objectives
    columns = epoch_columns(objectives, spec.constraints)
    rows = store.epochs(columns=columns) if epochs else pd.DataFrame(columns=[TRIAL_KEY, "epoch", *columns])
    store.warn_lacking_epochs(trials, rows if epochs else None)  # without epochs, from the listing
    analysis = analyse(trials, rows, objectives, spec.constraints, spec.reference, study.read_baselines())
    if every_setting or not settings:
        return spec, analysis
    return spec, _with_settings(analysis, store, settings)


def _with_settings(analysis: Analysis, store: Store, settings: Sequence[str]) -> Analysis:
    """`analysis` with the settings of the trials its fronts and closest trials show."""
    shown = {
        t
        for frame in (analysis.front, analysis.feasible_front, analysis.closest)
        for t in frame[TRIAL_KEY]
        if not str(t).startswith(BASELINE_PREFIX)  # a lookup has no settings
    }
    found = store.trials(columns=settings, trial_ids=shown) if shown else pd.DataFrame(columns=[TRIAL_KEY])
    found = found.set_index(TRIAL_KEY)[[c for c in settings if c in found.columns]]

    def joined(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.join(found, on=TRIAL_KEY)

    return dataclasses.replace(
        analysis,
        front=joined(analysis.front),
        feasible_front=joined(analysis.feasible_front),
        closest=joined(analysis.closest),
    )


def verdict(analysis: Analysis) -> str | None:
    """The study's first sentence when its search found nothing to pick over the baselines: every
    feasible trial dominated by a baseline, or no feasible trial at all; None otherwise."""
    candidates = analysis.candidates
    if not len(candidates):
        return None
    meeting = candidates[candidates[FEASIBLE]]
    if len(meeting) and (meeting[DOMINATED_BY] == "").any():
        return None
    objectives = ", ".join(str(o) for o in analysis.objectives)
    if len(meeting):
        beaters = sorted({name for listed in meeting[DOMINATED_BY] for name in listed.split(",") if name})
        every = "the" if len(meeting) == 1 else f"every one of the {len(meeting)}"
        return (
            f"No trial beats the baselines: {every} feasible trial{'s' if len(meeting) > 1 else ''} is "
            f"dominated by {', '.join(beaters)} on {objectives}."
        )
    named = [{n for n in listed.split(",") if n} for listed in candidates[DOMINATED_BY]]
    beaters = sorted(set.intersection(*named))
    beaten = f", and {', '.join(beaters)} dominates every one on {objectives}" if beaters else ""
    usable = len(candidates)
    return f"No trial meets the constraints: none of the {usable} usable trials is a model to pick{beaten}."


QUALIFIED = "feasible, not degenerate and no worse than the best lookup on any objective"


def recommendation_rule(analysis: Analysis) -> str:
    """The rule `recommended` picks by, in words."""
    metric, direction = ranking(analysis)
    best = "highest" if direction == "max" else "lowest"
    return f"of the trials {QUALIFIED}, the one with the {best} {metric}"


def recommended(analysis: Analysis) -> pd.Series | None:
    """The one trial to pick by `recommendation_rule`, or None when no trial qualifies."""
    candidates = analysis.candidates
    if not len(candidates):
        return None
    objectives = analysis.objectives
    no_worse = candidates[BELOW_BASELINE].map(lambda listed: not worse_objectives(listed, objectives))
    qualified = candidates[candidates[FEASIBLE] & (candidates[DEGENERATE] == "") & no_worse]
    return best_trial(qualified, objectives)


def best_trial(frame: pd.DataFrame, objectives: Sequence[Objective]) -> pd.Series | None:
    """The row of `frame` best on the metric `ranking_of` names (NaN left out); None if there is none."""
    metric, direction = ranking_of(objectives)
    if not len(frame) or metric not in frame.columns:
        return None
    values = frame[metric].dropna()
    if not len(values):
        return None
    return frame.loc[values.idxmax() if direction == "max" else values.idxmin()]


def worse_objectives(listed: str, objectives: Sequence[Objective]) -> list[str]:
    """The objectives among a row's `below_baseline` list (`flags`)."""
    metrics = {o.metric for o in objectives}
    return [name for name in str(listed).split(",") if name in metrics]


def ranking(analysis: Analysis) -> tuple[str, str]:
    """The metric the recommendation ranks by, and its direction (`ranking_of`)."""
    return ranking_of(analysis.objectives)


def ranking_of(objectives: Sequence[Objective]) -> tuple[str, str]:
    """The selection metric (AUC) where it is an objective, else the first objective, with its
    direction: what "the best trial" means in a recommendation and in a sweep's progress line."""
    for objective in objectives:
        if objective.metric == model_schema.SELECTION_METRIC:
            return objective.metric, objective.direction
    return objectives[0].metric, objectives[0].direction
