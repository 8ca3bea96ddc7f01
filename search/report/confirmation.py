"""The report's confirmation section: what `confirm` stored, on the split it was scored on.

A figure of the objective pair with error bars (means and 95% t intervals over seeds x folds; the
baselines as points, being deterministic), the robust front, and a table of every confirmed
source (the trials, DKT and the baselines) on the objectives and the constraint metrics. The
sweep's own sections are the validation fold the trials were selected on; this one says which
split it shows.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from search.analysis.statistics import (
    INDISTINGUISHABLE,
    SOURCE,
    confirmed_runs,
    confirmed_split,
    left_out,
    lookup_means,
    robust_front,
    robust_table,
    shown_column,
    student_intervals,
    student_text,
    summarize,
)
from search.report.figures import embed
from search.report.html import html_table
from search.schema import BASELINE_PREFIX, DKT_SOURCE, split_column
from search.spec import Objective, SweepSpec


def _metrics(table: pd.DataFrame, spec: SweepSpec, split: str) -> list[str]:
    """The study's objective and constraint metrics that the confirm table holds on `split`."""
    wanted = [*(o.metric for o in spec.objectives), *(c.metric for c in spec.constraints)]
    return [m for m in dict.fromkeys(wanted) if split_column(split, m) in table.columns]


def summary_table(table: pd.DataFrame, metrics: Sequence[str], split: str) -> pd.DataFrame:
    """One row per confirmed source: `runs` and each metric as `mean [low, high]` text."""
    summary = summarize(confirmed_runs(table, metrics, split), list(metrics))
    out = pd.DataFrame({"source": summary[SOURCE], "runs": summary["runs"]})
    for m in metrics:
        out[m] = shown_column(summary, m)
    return out


def error_bar_figure(table: pd.DataFrame, objectives: Sequence[Objective], split: str) -> go.Figure:
    """The first two objectives: each confirmed source at its means, with its 95% intervals."""
    x, y = (o.metric for o in objectives[:2])
    summary = summarize(confirmed_runs(table, [x, y], split), [x, y])
    fig = go.Figure()
    groups = {
        "trials": ~summary[SOURCE].str.startswith(BASELINE_PREFIX) & (summary[SOURCE] != DKT_SOURCE),
        "DKT": summary[SOURCE] == DKT_SOURCE,
        "baselines": summary[SOURCE].str.startswith(BASELINE_PREFIX),
    }
    for (name, mask), symbol in zip(groups.items(), ("circle", "diamond", "x")):
        part = summary[mask]
        if not len(part):
            continue
        fig.add_trace(
            go.Scatter(
                x=part[f"{x}.mean"],
                y=part[f"{y}.mean"],
                mode="markers",
                name=name,
                marker={"symbol": symbol, "size": 9},
                text=part[SOURCE],
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": part[f"{x}.high"] - part[f"{x}.mean"],
                    "arrayminus": part[f"{x}.mean"] - part[f"{x}.low"],
                },
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": part[f"{y}.high"] - part[f"{y}.mean"],
                    "arrayminus": part[f"{y}.mean"] - part[f"{y}.low"],
                },
                hovertemplate=f"%{{text}}<br>{x} %{{x:.4f}}<br>{y} %{{y:.4f}}<extra></extra>",
            )
        )
    which = "test split" if split == "test" else "validation"
    fig.update_layout(
        title=f"{which}: mean and 95% interval over seeds x folds",
        xaxis_title=f"{x} ({objectives[0].direction})",
        yaxis_title=f"{y} ({objectives[1].direction})",
        height=480,
    )
    return fig


def confirmation_html(table: pd.DataFrame, spec: SweepSpec, fixed: Mapping[str, str] | None = None) -> str:
    """The section's HTML, its figure and tables drawn as the rest of the page's; `fixed` names what
    each source's model fixes by construction (`source_fixed`)."""
    split = confirmed_split(table)
    objectives = spec.objectives
    metrics = _metrics(table, spec, split)
    runs = confirmed_runs(table, metrics, split)
    trials = runs[~runs[SOURCE].str.startswith(BASELINE_PREFIX)]
    seeds, folds = trials["seed"].nunique(), trials["fold"].nunique()
    which = "the test split" if split == "test" else "validation folds"
    note = (
        f"<p class=note>Figures on {html.escape(which)}: each confirmed trial re-trained with {seeds} new "
        f"seed(s) on {folds} fold(s) (mean and 95% t interval over seeds x folds), beside DKT on the same "
        "seeds and folds and the baselines fitted on the training folds. The sweep's sections below are "
        "on the validation fold the trials were selected on, one seed each.</p>"
    )
    parts = [note]
    if len(objectives) >= 2 and len(trials):
        parts.append(embed(error_bar_figure(table, objectives, split)))
    constraints = [c.resolve(lookup_means(runs)) for c in spec.constraints]
    if len(trials):
        robust = robust_table(runs, objectives, constraints, fixed)
        front = robust_front(runs, objectives, constraints, fixed, table=robust)
        front = front.assign(
            **{o.metric: shown_column(front, o.metric, mean=o.metric) for o in objectives},
            **{INDISTINGUISHABLE: [", ".join(v) or "-" for v in front[INDISTINGUISHABLE]]},
        )
        targets = " and ".join(c.shown() for c in constraints) or "none"
        parts.append(
            "<h3>Robust front (on the means, the lookups and DKT beside the trials; constraints: "
            f"{html.escape(targets)}; trials no paired interval tells apart)</h3>"
        )
        parts.append(
            html_table(
                front, [SOURCE, "runs", *(o.metric for o in objectives), INDISTINGUISHABLE], "robust-front"
            )
        )
        off = left_out(robust)
        if off:
            parts.append(f"<p>Left off the front: {html.escape(', '.join(off))}.</p>")
    students = student_intervals(table, [o.metric for o in objectives], split)
    if len(students):
        shown = student_text(students, [o.metric for o in objectives])
        parts.append(
            "<h3>Student bootstrap (95% percentile interval of one run over resampled students, the "
            "mean of the runs')</h3>"
        )
        parts.append(html_table(shown, list(shown.columns), "student-bootstrap"))
    parts.append(f"<h3>Every confirmed source on {html.escape(which)}</h3>")
    summary = summary_table(table, metrics, split)
    parts.append(html_table(summary, list(summary.columns), "confirmed"))
    return "\n".join(parts)


def confirmation_markdown(table: pd.DataFrame, spec: SweepSpec) -> str:
    split = confirmed_split(table)
    summary = summary_table(table, _metrics(table, spec, split), split)
    head = "| " + " | ".join(summary.columns) + " |"
    rule = "| " + " | ".join("---" for _ in summary.columns) + " |"
    rows = ["| " + " | ".join(str(v) for v in record) + " |" for record in summary.itertuples(index=False)]
    which = "test split" if split == "test" else "validation folds"
    return "\n".join(
        [f"## Confirmation ({which}; mean [95% t interval] over seeds x folds)\n", head, rule, *rows, ""]
    )
