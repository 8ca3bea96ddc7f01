"""What the commands print: terminal tables, summaries and notes, as lines of text.

The CLI parses and calls; this module turns results into text. The report uses the same
column choices and counts, so the terminal and the HTML never disagree.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from gainakt import strict_json
from gainakt.schema import CEILINGS, CONTEXT_METRICS, RECOVERY_METRICS
from search.analysis import pareto
from search.analysis.pareto import Analysis
from search.analysis.progress import EPOCH_COLUMNS, duration, time_left
from search.run.lease import LeaseInfo
from search.schema import (
    BASELINE_PREFIX,
    BELOW_BASELINE,
    CHECKPOINT,
    DEGENERATE,
    DOMINATED_BY,
    FEASIBLE,
    GUARANTEED,
    PARAM,
    TRIAL_KEY,
    UNTRAINED,
    VIOLATION,
    TrialStatus,
    short_label,
)
from search.spec import Constraint, Objective, SweepSpec

# ---------------------------------------------------------------------------- tables


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return "-" if value is None else str(value)


def _column_widths(frame: pd.DataFrame, columns: Sequence[str]) -> list[int]:
    return [max([len(short_label(c))] + [len(_cell(v)) for v in frame[c]]) for c in columns]


def text_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """Columns aligned under their short labels, numbers to 4 decimals, NaN as '-'."""
    headers = [short_label(c) for c in columns]
    rows = [[_cell(v) for v in record] for record in frame[list(columns)].itertuples(index=False)]
    widths = _column_widths(frame, columns)
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def terminal_width() -> int:
    """The terminal's width (or $COLUMNS); 100 where the output is not a terminal or one that
    reports no width (a pty nobody sized)."""
    return shutil.get_terminal_size((100, 24)).columns or 100


def fitting_columns(
    frame: pd.DataFrame, columns: Sequence[str], keep: Sequence[str], width: int
) -> tuple[list[str], list[str]]:
    """The columns of a table at most `width` characters wide (or as close as `keep` allows), and
    those left out: first the
    parameters equal on every row (when there are several), then the other figures from the right,
    then the parameters that differ from the right; never those of `keep`."""
    shown = list(columns)
    if len(frame) > 1:
        shown = [c for c in shown if not (c.startswith(PARAM) and frame[c].astype(str).nunique() <= 1)]

    def too_wide() -> bool:
        return sum(_column_widths(frame, shown)) + 2 * (len(shown) - 1) > width

    droppable = [c for c in reversed(shown) if c not in keep]
    for column in sorted(droppable, key=lambda c: c.startswith(PARAM)):  # stable: right to left
        if not too_wide():
            break
        shown.remove(column)
    return shown, [c for c in columns if c not in shown]


def fitted_table(
    frame: pd.DataFrame, columns: Sequence[str], keep: Sequence[str], width: int | None, wide_hint: str
) -> list[str]:
    """`text_table` within `width` characters (all the columns with None), and a line naming what
    was left out and how to see it."""
    if width is None:
        return [text_table(frame, columns)]
    shown, left_out = fitting_columns(frame, columns, keep, width)
    lines = [text_table(frame, shown)]
    if left_out:
        lines.append(f"({len(left_out)} columns left out to fit {width} characters; {wide_hint} shows them)")
    return lines


def front_columns(
    frame: pd.DataFrame,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
    detail: bool = False,
) -> list[str]:
    """Trial, objectives, constraint metrics, their ceilings, the context metrics (`faithfulness`),
    feasibility, the degeneracy and baseline flags, the metrics fixed by construction, selected epoch
    and parameters; with `detail` also the Optuna number, each constraint's violation and the
    checkpoint."""
    metrics = [o.metric for o in objectives] + [c.metric for c in constraints]
    columns = [TRIAL_KEY, *(["number"] if detail else []), *metrics]
    columns += [CEILINGS[m] for m in metrics if m in CEILINGS]
    columns += list(CONTEXT_METRICS)
    columns += [c for c in frame.columns if c.startswith(VIOLATION)] if detail else []
    columns += [FEASIBLE, DOMINATED_BY, DEGENERATE, BELOW_BASELINE, GUARANTEED, UNTRAINED, "selected_epoch"]
    columns += [c for c in frame.columns if c.startswith(PARAM)]
    columns += [CHECKPOINT] if detail else []
    return [c for c in dict.fromkeys(columns) if c in frame.columns]


def status_counts(trials: pd.DataFrame, every_status: bool = False) -> str:
    """`3 completed, 1 error`; with `every_status`, zeros too, in the order of `TrialStatus`."""
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    shown = list(TrialStatus) if every_status else [s for s in TrialStatus if counts.get(s.value)]
    return ", ".join(f"{counts.get(s.value, 0)} {s.value.lower()}" for s in shown) or "none"


def failed_line(trials: pd.DataFrame, spec: SweepSpec) -> str | None:
    """One line when trials of a sweep ended in error (so the sweep exits non-zero), else None."""
    failed = trials[trials["status"] == TrialStatus.ERROR] if len(trials) else trials
    if not len(failed):
        return None
    errors = failed["error"].dropna()
    first = f"; the first error: {errors.iloc[0]}" if len(errors) else ""
    if len(failed) == len(trials):
        return f"every trial failed ({len(trials)} of {len(trials)}){first}"
    return f"{len(failed)} of {len(trials)} trials failed{first}; '{resume_command(spec)}' runs them again"


# ---------------------------------------------------------------------------- data, train, eval, check


def data_summary_lines(summary: Mapping[str, Any]) -> list[str]:
    def block(part: Mapping[str, Any]) -> list[str]:
        return [
            f"  students      {part['students']:,}",
            f"  interactions  {part['interactions']:,}",
            f"  windows       {part['windows']:,} "
            f"(at most 200 interactions; a trailing window under 3 dropped)",
            (
                f"  length        min {part['length_min']}, median {part['length_median']:g}, "
                f"mean {part['length_mean']:g}, max {part['length_max']}"
            ),
            f"  correct       {part['correct_share']:.1%}",
        ]

    folds = ", ".join(f"{fold}: {count:,}" for fold, count in summary["folds"].items())
    lines = [f"{summary['source']}", f"train/valid     {summary['file']}", *block(summary)]
    lines += [f"  folds         {folds} (students)", f"  concepts      {summary['concepts']}"]
    if "test" in summary:
        lines += [f"test            {summary['test']['file']}", *block(summary["test"])]
    lines.append(f"fingerprint     {summary['fingerprint']}")
    if "bayes_auc" in summary:
        lines.append(
            f"Bayes-optimal AUC {summary['bayes_auc']:.4f} "
            f"(true probabilities, validation fold {summary['bayes_auc_fold']})"
        )
    return lines


def training_lines(results: Mapping[str, Any], run_dir: str) -> list[str]:
    best = results["best"] or {}
    figures = ", ".join(
        f"{name} {best.get(name, math.nan):.4f}" for name in ("auc", "mastery_corr", "neg_gain_rate")
    )
    return [
        f"best epoch {results['best_epoch']} of {results['epochs_run']}: {figures}",
        f"run folder: {run_dir}",
    ]


def metric_lines(
    title: str,
    metrics: Mapping[str, Any],
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    intervals: Mapping[str, tuple[float, float]] | None = None,
) -> list[str]:
    """One line per metric; with `intervals`, its bootstrap interval; with `baselines`, each metric's
    best baseline value (and which) beside it."""
    best = pareto.baseline_values(baselines or {}, list(metrics))
    header = f"  {'metric':<28} {'model':>9}"
    header += f"   {'95% interval':<19}" if intervals else ""
    lines = [title, header + "   best baseline (docs/metrics.md)"] if baselines else [title]
    for name, value in metrics.items():
        if name in RECOVERY_METRICS and math.isnan(value):  # real data: no truth to recover
            continue
        shown = f"{value:9.4f}" if isinstance(value, float) else f"{value:>9}"
        if intervals:  # not for the count of positions
            low, high = (
                intervals.get(name, (math.nan, math.nan)) if isinstance(value, float) else (math.nan,) * 2
            )
            shown += f"   {f'[{low:.4f}, {high:.4f}]' if not math.isnan(low) else '':<19}"
        beside = f"   {best[name][0]:.4f} ({best[name][1]})" if name in best else ""
        lines.append(f"  {name:<28} {shown}{beside}".rstrip())
    return lines


def check_lines(results: Sequence[Any]) -> list[str]:
    return [f"{'OK  ' if r.ok else 'FAIL'}  {r.name:<22} {r.detail}" for r in results]


# ---------------------------------------------------------------------------- a study


def _briefly_dominated(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its `dominated_by` lists cut to the first name and how many more (`pfa +1`), so
    that the column fits a terminal beside the objectives."""
    if DOMINATED_BY not in frame.columns:
        return frame

    def brief(listed: object) -> object:
        names = [n for n in str(listed).split(",") if n] if isinstance(listed, str) else []
        return f"{names[0]} +{len(names) - 1}" if len(names) > 1 else (names[0] if names else "")

    return frame.assign(**{DOMINATED_BY: frame[DOMINATED_BY].map(brief)})


def front_lines(analysis: Analysis, width: int | None = None, wide_hint: str = "--wide") -> list[str]:
    """The study's non-dominated trials as a terminal table, within `width` characters if given."""
    if not len(analysis.front):
        return ["no completed trial with every objective defined yet"]
    objectives = ", ".join(str(o) for o in analysis.objectives)
    columns = front_columns(analysis.front, analysis.objectives, analysis.constraints)
    keep = [TRIAL_KEY, *(o.metric for o in analysis.objectives), FEASIBLE, DOMINATED_BY]
    table = fitted_table(_briefly_dominated(analysis.front), columns, keep, width, wide_hint)
    said = pareto.verdict(analysis)
    return [*([said] if said else []), f"non-dominated trials and lookups ({objectives}):", *table]


def pareto_notes(analysis: Analysis) -> list[str]:
    """Feasibility, the closest trials when none is feasible, the hypervolume and the excluded trials."""
    lines = []
    if analysis.constraints:
        targets = " and ".join(c.shown() for c in analysis.constraints)
        feasible = int(analysis.candidates[FEASIBLE].sum()) if len(analysis.candidates) else 0
        lines.append(f"feasible ({targets}): {feasible} of {len(analysis.candidates)}")
        if len(analysis.closest):
            closest = ", ".join(
                f"{r.trial_id} ({r.total_violation:.3f})" for r in analysis.closest.itertuples()
            )
            lines.append(f"closest to feasible (total normalised violation): {closest}")
    if analysis.baseline:
        best = ", ".join(f"{m} {v:.4f} ({name})" for m, (v, name) in analysis.baseline.items())
        lines.append(f"best baselines (docs/metrics.md): {best}")
    candidates = analysis.candidates
    flagged = candidates[candidates[DEGENERATE] != ""] if len(candidates) else candidates
    if len(flagged):
        rows = ", ".join(f"{r[TRIAL_KEY]} ({r[DEGENERATE]})" for r in flagged.to_dict("records"))
        lines.append(f"degenerate (copying the last response or saturated mastery): {rows}")
    reference = ", ".join(f"{o.metric} {v:.4g}" for o, v in zip(analysis.objectives, analysis.reference))
    lines.append(f"hypervolume: {analysis.hypervolume:.6g} (reference point: {reference})")
    lines += [f"excluded: trial {row.trial_id}, {row.reason}" for row in analysis.excluded.itertuples()]
    return lines


def status_columns(spec: SweepSpec) -> list[str]:
    """The trial table's columns `status_lines` reads."""
    return [
        "status",
        "started_at",
        "ended_at",
        FEASIBLE,
        *EPOCH_COLUMNS,
        *(o.metric for o in spec.objectives),
    ]


def status_lines(
    spec: SweepSpec, trials: pd.DataFrame, where: str, lease: LeaseInfo | None = None
) -> list[str]:
    """How a study stands: counts, the best value per objective, feasibility, elapsed and left time.
    `lease` (search/run/lease.py) says whether a driver is at work; trials "running" without one were
    interrupted."""
    header = (
        f"study {spec.name} in {where}: {spec.trials} trials asked, {spec.concurrent} at a time, "
        f"space {spec.space}, data {spec.data}"
    )
    driven = lease is not None and lease.live()
    driver = [f"driver: {lease.holder()}"] if driven and lease is not None else []
    if not len(trials):
        return [header, *driver, "no trial has started yet"]
    running = bool((trials["status"] == TrialStatus.RUNNING).any())
    interrupted = running and not driven
    if interrupted:
        since = (
            f" since {time.strftime('%H:%M', time.localtime(lease.last_seen))}" if lease is not None else ""
        )
        driver = [f"interrupted (no driver{since}): continue with '{resume_command(spec)}'"]
    lines = [header, *driver, "trials: " + status_counts(trials, every_status=True)]
    completed = trials[trials["status"] == TrialStatus.COMPLETED]
    for objective in spec.objectives:
        values = completed[objective.metric].astype(float).dropna()
        label = f"best {objective.metric} ({objective.direction})"
        if len(values):
            best = completed.loc[values.idxmax() if objective.direction == "max" else values.idxmin()]
            lines.append(f"{label}: {best[objective.metric]:.4f} (trial {best[TRIAL_KEY]})")
        else:
            lines.append(f"{label}: none yet")
    feasible = int(completed[FEASIBLE].astype(bool).sum()) if len(completed) else 0
    targets = " and ".join(str(c) for c in spec.constraints) or "no constraints"
    lines.append(f"feasible ({targets}): {feasible} of {len(completed)} completed")
    return lines + _timing(trials, spec, running=running and not interrupted)


def _timing(trials: pd.DataFrame, spec: SweepSpec, running: bool) -> list[str]:
    """Elapsed time, and while a driver is at work the time left (no estimate for an interrupted study)."""
    start = trials["started_at"].min()
    ended = trials["ended_at"].dropna()
    end = pd.Timestamp.now(tz="UTC") if running or not len(ended) else ended.max()
    elapsed = (end - start).total_seconds()
    lines = [f"elapsed: {duration(elapsed)} (first start to {'now' if running else 'last end'})"]
    finished = int(trials["status"].map(lambda s: TrialStatus(s).ended).sum())
    left = time_left(trials, spec)
    if left is not None and running:
        lines.append(
            f"time left: about {duration(left.seconds)} "
            f"({left.trials} trials of about {duration(left.per_trial)}, {spec.concurrent} at a time)"
        )
    elif spec.trials - finished <= 0:
        lines.append("time left: none, every trial has finished")
    return lines


def sweep_start_line(spec: SweepSpec, data: str, resumed: bool) -> str:
    verb = "continuing" if resumed else "starting"
    return (
        f"{verb} study {spec.name!r}: {spec.trials} trials, {spec.concurrent} at a time, space {spec.space}, "
        f"data {data}"
    )


def storage_flag(spec: SweepSpec) -> str:
    """` --storage DIR` where the study is not under the default storage, so a command printed works."""
    return f" --storage {spec.storage}" if spec.storage != SweepSpec.storage else ""


def resume_command(spec: SweepSpec) -> str:
    return f"gainakt-search resume {spec.name}{storage_flag(spec)}"


def resume_hint(spec: SweepSpec) -> str:
    return f"interrupted: continue with '{resume_command(spec)}'"


def pareto_output(
    analysis: Analysis,
    epoch_level: bool = False,
    feasible_only: bool = False,
    output: str = "table",
    width: int | None = None,
) -> str:
    """The `pareto` command's answer: the front of trials (or checkpointed epochs) as a table, CSV or
    JSON; the table within `width` characters if given (`--wide`: all of it)."""
    objectives, constraints = analysis.objectives, analysis.constraints
    if epoch_level:
        rows = pareto.epoch_front(
            analysis.epochs, analysis.trials, objectives, constraints if feasible_only else ()
        )
        metrics = [o.metric for o in objectives] + [c.metric for c in constraints]
        columns = [
            TRIAL_KEY,
            "epoch",
            *metrics,
            *(CEILINGS[m] for m in metrics if m in CEILINGS),
            FEASIBLE,
            CHECKPOINT,
        ]
        what = "non-dominated checkpointed epochs"
    else:
        rows = analysis.feasible_front if feasible_only else analysis.front
        columns = front_columns(rows, objectives, constraints, detail=True)
        what = "non-dominated trials and lookups"
    rows = rows.assign(**{FEASIBLE: pareto.feasible(rows, constraints)})
    columns = [c for c in dict.fromkeys(columns) if c in rows.columns]
    if output == "csv":
        return rows[columns].to_csv(index=False).rstrip("\n")
    if output == "json":
        # pandas writes NaN as null and times as ISO text, but escapes every "/" of a path: re-dumped.
        records = json.loads(rows[columns].to_json(orient="records", date_format="iso"))
        return strict_json.dumps(records, indent=2)
    shown = [c for c in columns if c not in (CHECKPOINT, "number") and not c.startswith(VIOLATION)]
    targets = " meeting the targets" if feasible_only else ""
    keep = [TRIAL_KEY, "epoch", *(o.metric for o in objectives), FEASIBLE, DOMINATED_BY]
    table = fitted_table(_briefly_dominated(rows), shown, keep, width, "--wide") if len(rows) else ["none"]
    said = None if epoch_level else pareto.verdict(analysis)
    lines = [*([said] if said else []), f"{what}{targets} ({', '.join(str(o) for o in objectives)}):", *table]
    return "\n".join(lines + pareto_notes(analysis))


def baseline_lines(title: str, scores: Mapping[str, Mapping[str, Any]], best: str | None) -> list[str]:
    """The `baselines` command's answer: a row per baseline, then the best one by mastery_corr."""
    columns = ["baseline", "auc", "pred_corr", "mastery_corr", "mastery_corr_student", "mastery_pred_corr"]
    columns += ["copy_corr", "mastery_saturation", "prospective_corr"]
    frame = pd.DataFrame([{"baseline": name, **values} for name, values in scores.items()])
    columns += [name for name in RECOVERY_METRICS if frame[name].notna().any()]  # on simulated data
    lines = [title, text_table(frame, columns)]
    if best is None:
        return lines + ["best by mastery_corr: none (undefined for every baseline)"]
    return lines + [f"best by mastery_corr: {best} ({scores[best]['mastery_corr']:.4f})"]


# ---------------------------------------------------------------------------- confirmation


def confirmed_lines(
    table: pd.DataFrame,
    objectives: Sequence[Objective],
    split: str,
    constraints: Sequence[Constraint] = (),
    fixed: Mapping[str, str] | None = None,
) -> list[str]:
    """The robust front of a study's confirmation runs on `split` (means and 95% t intervals over
    seeds x folds, and which trials no paired interval tells apart) with the lookups and DKT on it
    and the constraints applied (a `best_lookup` threshold against the lookups on that split), the
    sources left off it and why, then the lookups there."""
    from search.analysis.statistics import (
        INDISTINGUISHABLE,
        SOURCE,
        confirmed_runs,
        left_out,
        lookup_means,
        robust_front,
        robust_table,
        shown_column,
        student_intervals,
        student_text,
    )

    metrics = list(dict.fromkeys([*(o.metric for o in objectives), *(c.metric for c in constraints)]))
    done = confirmed_runs(table, metrics, split)
    lookups = done[done[SOURCE].str.startswith(BASELINE_PREFIX)]
    which = "test split" if split == "test" else "validation fold(s)"
    if len(lookups) == len(done):
        return [f"no completed confirmation run yet ({len(table)} rows)"]
    resolved = [c.resolve(lookup_means(done)) for c in constraints]
    robust = robust_table(done, objectives, resolved, fixed)
    front = robust_front(done, objectives, resolved, fixed, table=robust)
    rows = pd.DataFrame(
        {
            "source": front[SOURCE],
            "runs": front["runs"],
            **{o.metric: shown_column(front, o.metric, mean=o.metric) for o in objectives},
            "not distinguishable from": [", ".join(v) or "-" for v in front[INDISTINGUISHABLE]],
        }
    )
    targets = " and ".join(c.shown() for c in resolved) or "none"
    lines = [
        f"robust front on the {which} ({', '.join(str(o) for o in objectives)}; constraints on the means: "
        f"{targets}): mean [95% t interval] over seeds x folds",
        text_table(rows, list(rows.columns)) if len(rows) else "none",
    ]
    off = left_out(robust)
    if off:
        lines.append("left off the front: " + ", ".join(off))
    students = student_intervals(table, [o.metric for o in objectives], split)
    if len(students):
        lines.append(f"student bootstrap on the {which} (95% percentile interval, the mean of the runs'):")
        shown = student_text(students, [o.metric for o in objectives])
        lines.append(text_table(shown, list(shown.columns)))
    if len(lookups):
        means = lookups.groupby(SOURCE)[[o.metric for o in objectives]].mean()
        lines.append(f"lookups on the same {which} (mean over folds):")
        for name, row in means.iterrows():
            values = ", ".join(f"{o.metric} {row[o.metric]:.4f}" for o in objectives)
            lines.append(f"  {str(name).removeprefix(BASELINE_PREFIX)}: {values}")
    return lines
