"""The HTML page's tables and text sections: the front, the targets, the epoch-level front, the
excluded trials, the summary, the provenance and the parameter importances."""

from __future__ import annotations

import html
import json
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from search.analysis import pareto
from search.analysis.importance import MAX_TRIALS, param_importances, target_quantile
from search.report.figures import PALETTE, arrow, embed
from search.report.sections import (
    MAX_LISTED,
    cell,
    listed_note,
    provenance,
    recommendation_lines,
    summary_lines,
    targets,
)
from search.report.terminal import front_columns
from search.schema import (
    BELOW_BASELINE,
    CHECKPOINT,
    DEGENERATE,
    DOMINATED_BY,
    GUARANTEED,
    PARAM,
    TRIAL_KEY,
    UNTRAINED,
    VIOLATION,
    WANDB_RUN,
    TrialStatus,
    fixed_metrics,
    short_label,
)
from search.spec import SweepSpec


def _breakable(label: str) -> str:
    """A column title that may wrap after its underscores and dots (never inside a word)."""
    return html.escape(label).replace("_", "_<wbr>").replace(".", ".<wbr>")


def _link(where: object) -> str:
    """A W&B run as a link: its URL, or its offline folder as a file URL."""
    if not isinstance(where, str) or not where:
        return "-"
    href = Path(where).as_uri() if where.startswith("/") else where  # a URL, or a folder's absolute path
    return f'<a href="{html.escape(href)}">run</a>'


def _td(record: dict, column: str, fixed: Collection[str], untrained: Collection[str] = ()) -> str:
    value = record[column]
    text = isinstance(value, str) or not isinstance(value, (int, float, np.number))
    if column == WANDB_RUN:
        return f"<td class=text>{_link(value)}</td>"
    if column == TRIAL_KEY:  # an id never breaks
        return f"<td class=id>{html.escape(cell(value))}</td>"
    shown = html.escape(cell(value).replace(",", ", "))  # lists of names wrap after their commas
    # On a line of its own, so that a column of numbers stays narrow.
    fixed_note = "<br><span class=note>(by construction)</span>" if column in fixed else ""
    if column in untrained:
        fixed_note = "<br><span class=note>(untrained)</span>"
    return f"<td{' class=text' if text else ''}>{shown}{fixed_note}</td>"


def _details_row(record: dict, columns: Sequence[str], span: int) -> str:
    """A row under a trial's row, spanning the table: its other columns as `name value` pairs that
    wrap with the page, folded until opened."""
    pairs = ", ".join(f"{html.escape(short_label(c))} {html.escape(cell(record[c]))}" for c in columns)
    return (
        f"<tr class=details><td colspan={span} class=text><details><summary>settings, violations, "
        f"checkpoint</summary>{pairs}</details></td></tr>"
    )


def html_table(
    frame: pd.DataFrame, columns: Sequence[str], table_id: str, details: Sequence[str] = ()
) -> str:
    """A table of `columns`, a row per record (with `details`, a folded row of those under each)."""
    if not len(frame):
        return "<p>none</p>"
    head = "".join(f"<th>{_breakable(short_label(c))}</th>" for c in columns)
    rows = []
    for record in frame.to_dict("records"):
        fixed, untrained = fixed_metrics(record.get(GUARANTEED)), fixed_metrics(record.get(UNTRAINED))
        cells = "".join(_td(record, c, fixed, untrained) for c in columns)
        feasible = (
            " class=feasible" if record.get("feasible") is True or record.get("feasible") is np.True_ else ""
        )
        rows.append(
            f'<tr data-trial-id="{html.escape(str(record.get("trial_id", "")))}"{feasible}>{cells}</tr>'
        )
        if details:
            rows.append(_details_row(record, details, len(columns)))
    return (
        f'<div class=wide><table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )


NOTES = "notes"


_FLAG_WORDS = {
    DOMINATED_BY: "dominated by",
    DEGENERATE: "degenerate",
    BELOW_BASELINE: "below the best baseline on",
    GUARANTEED: "fixed by construction",
    UNTRAINED: "untrained (no loss of its setting trains its gain head)",
}


def _notes(record: dict, flags: Sequence[str]) -> str:
    """A trial's flags in words: `degenerate: copy_corr; below the best baseline on: auc`."""
    said = [
        f"{_FLAG_WORDS[flag]}: {record[flag]}"
        for flag in flags
        if isinstance(record[flag], str) and record[flag]
    ]
    return "; ".join(said)


def front_table_html(analysis: pareto.Analysis) -> str:
    """The front's figures in a table that fits the page, then its settings, violations and
    checkpoints in a second one."""
    frame = analysis.front
    every = front_columns(frame, analysis.objectives, analysis.constraints, detail=True)
    detail = [c for c in every if c.startswith((PARAM, VIOLATION)) or c in (CHECKPOINT, "number")]
    flags = [c for c in (DOMINATED_BY, DEGENERATE, BELOW_BASELINE, GUARANTEED, UNTRAINED) if c in every]
    main = [c for c in every if c not in detail and c not in flags]
    if flags:  # one column of words that wraps, instead of three narrow ones
        frame = frame.assign(**{NOTES: [_notes(record, flags) for record in frame.to_dict("records")]})
        main.insert(main.index("selected_epoch") if "selected_epoch" in main else len(main), NOTES)
    if WANDB_RUN in frame.columns and frame[WANDB_RUN].notna().any():
        main.append(WANDB_RUN)
    note = (
        "<p class=note>Completed trials and lookups (baseline:NAME) that none of them dominates, best "
        "first on the first objective; the feasible ones are marked on the left. Under each trial, its "
        "settings, constraint violations and checkpoint (click to open).</p>"
    )
    return note + html_table(frame, main, "front-table", details=detail)


def targets_html(analysis: pareto.Analysis) -> str:
    section = targets(analysis)
    if section is None:
        return "<p>No constraints.</p>"
    lead = f"<p>{html.escape(section.lead)}</p>"
    if not section.columns:
        return lead
    table_id = "feasible-front-table" if section.met else "closest-table"
    return lead + html_table(section.frame, section.columns, table_id)


def epoch_front_html(analysis: pareto.Analysis) -> str:
    frame = analysis.epoch_front
    columns = [
        "trial_id",
        "epoch",
        *(o.metric for o in analysis.objectives),
        *(c.metric for c in analysis.constraints),
        "feasible",
        "checkpoint",
    ]
    note = "<p class=note>Every checkpointed epoch of every trial (LOST ones aside) is a candidate model.</p>"
    return note + html_table(
        frame, [c for c in dict.fromkeys(columns) if c in frame.columns], "epoch-front-table"
    )


def excluded_html(analysis: pareto.Analysis) -> str:
    other = (
        analysis.trials[analysis.trials["status"] != TrialStatus.COMPLETED]
        if len(analysis.trials)
        else analysis.trials
    )
    text = "<p class=note>Completed trials with a missing or NaN objective are left out of the front:</p>"
    text += listed_table(analysis.excluded, ["trial_id", "reason"], "excluded-table")
    if len(other):
        text += "<p class=note>Trials not completed (not candidates):</p>"
        text += listed_table(
            other, [c for c in ("trial_id", "status", "error") if c in other.columns], "unfinished-table"
        )
    return text


def listed_table(frame: pd.DataFrame, columns: Sequence[str], table_id: str) -> str:
    """`html_table` of at most `MAX_LISTED` rows, saying how many there are when it holds fewer."""
    if len(frame) <= MAX_LISTED:
        return html_table(frame, columns, table_id)
    note = f"<p class=note>Listed: {listed_note(MAX_LISTED, len(frame))}.</p>"
    return note + html_table(frame.head(MAX_LISTED), columns, table_id)


def recommendation_html(spec: SweepSpec, analysis: pareto.Analysis) -> str:
    said = pareto.verdict(analysis)
    lines = [f"<p><strong>{html.escape(said)}</strong></p>"] if said else []
    return "".join(lines + [f"<p>{html.escape(line)}</p>" for line in recommendation_lines(spec, analysis)])


def summary_html(spec: SweepSpec, analysis: pareto.Analysis) -> str:
    items = [f"<li>{html.escape(line)}</li>" for line in summary_lines(spec, analysis)]
    return "<ul>" + "".join(items) + "</ul>"


def provenance_html(spec: SweepSpec, analysis: pareto.Analysis) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td class=text>{html.escape(v)}</td></tr>"
        for k, v in provenance(spec, analysis).items()
    )
    return (
        f'<table id="provenance">{rows}</table><h3>Spec</h3>'
        f"<pre>{html.escape(json.dumps(spec.to_dict(), indent=2))}</pre>"
    )


def importance_html(analysis: pareto.Analysis) -> str:
    """A bar per searched parameter and objective: Optuna's PED-ANOVA importance (analysis/importance.py)."""
    scores = param_importances(analysis.candidates, analysis.objectives)
    if not len(scores):
        return "<p>Fewer than two completed trials, or no searched parameter that varies among them.</p>"
    scores = scores.loc[scores.max(axis=1).sort_values().index]  # the most important at the top
    fig = go.Figure()
    for i, objective in enumerate(analysis.objectives):
        fig.add_trace(
            go.Bar(
                y=scores.index,
                x=scores[objective.metric],
                orientation="h",
                name=arrow(objective.metric, objective.direction),
                marker_color=PALETTE[i % len(PALETTE)],
            )
        )
    fig.update_layout(
        barmode="group",
        height=120 + 22 * len(scores) * max(1, len(analysis.objectives)),
        margin={"t": 30, "l": 160},
        xaxis_title="importance (each objective's bars sum to 1)",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
    )
    completed = len(analysis.candidates)
    trials = min(completed, MAX_TRIALS)
    # param_importances scores a fixed-seed sample of MAX_TRIALS beyond that many.
    of = f"{trials}" if trials == completed else f"a fixed-seed sample of {trials:,} of the {completed:,}"
    note = (
        f"<p class=note>PED-ANOVA (Optuna): how much each parameter decides whether a trial reaches "
        f"the best {target_quantile(trials):.0%} of the {of} completed trials on each objective. "
        "An estimate from these trials alone, without intervals: with few trials, a rough guide.</p>"
    )
    return note + embed(fig)
