"""The study report: one self-contained HTML file (plotly's JavaScript inside, so it opens with no
network) and a Markdown summary next to it, both from the Parquet store alone.

The HTML holds, in order: the study's counts, targets and reference point; the front in 2-D
projections of each objective pair (targets as dashed lines, each trial's own `pred_corr` as the
ceiling of its mastery correlation, feasible and infeasible trials marked, the front circled) and
in 3-D; parallel coordinates from parameters to objectives; the hypervolume over trials; the
learning curves of the front's trials; a table of the front (parameters, objective and
constraint values, selected epoch, checkpoint); the trials meeting the targets, or the closest
ones; the epoch-level front; the excluded trials; and the provenance (spec, data fingerprint,
package version, dates).
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from gainakt.errors import ConfigError
from gainakt.schema import CEILINGS

from . import pareto
from .confirm_report import confirmation_html, confirmation_markdown
from .pareto import load_analysis
from .schema import (
    BELOW_BASELINE,
    DEGENERATE,
    FEASIBLE,
    GUARANTEED,
    PARAM,
    TRIAL_KEY,
    TrialStatus,
    short_label,
)
from .spec import SweepSpec
from .statistics import confirmed_split
from .store import Store
from .study import Study
from .views import front_columns, status_counts

FEASIBLE_COLOUR, INFEASIBLE_COLOUR, BASELINE_COLOUR = "#1b9e77", "#9e9e9e", "#1f4e9e"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


@dataclass(frozen=True)
class Written:
    html: str
    markdown: str


# ---------------------------------------------------------------------------- entry points


def write_report(study: Study, out: str | None = None) -> Written:
    """Write report.html and report.md into the study folder, or FILE and FILE's .md next to it."""
    if out is not None:
        _check_output(Path(out))
    spec, analysis = load_analysis(study)
    confirmed = Store(study).confirm()
    page, summary = render_html(spec, analysis, confirmed), render_markdown(spec, analysis, confirmed)
    if out is None:
        html_path, md_path = f"{study.root}/report.html", f"{study.root}/report.md"
        study.write_atomic(html_path, page.encode())
        study.write_atomic(md_path, summary.encode())
        if not study.local:
            html_path, md_path = f"{study.uri}/report.html", f"{study.uri}/report.md"
        return Written(html_path, md_path)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    md = path.with_suffix(".md")
    path.write_text(page)
    md.write_text(summary)
    return Written(str(path), str(md))


def _check_output(path: Path) -> None:
    for target in (path, path.with_suffix(".md")):
        if target.is_dir():
            raise ConfigError(
                f"--output {path}: {target} is a folder; give a file name such as {path}/report.html"
            )
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"--output {path}: {blocking} is a file, not a folder")


# ---------------------------------------------------------------------------- the page


def render_html(spec: SweepSpec, analysis: pareto.Analysis, confirmed: pd.DataFrame | None = None) -> str:
    """The page; with `confirmed` rows (`Store.confirm`), a confirmation section after the summary."""
    confirmation = []
    if confirmed is not None and len(confirmed):
        title = (
            f"Confirmation ({'test split' if confirmed_split(confirmed) == 'test' else 'validation folds'})"
        )
        confirmation = [(title, confirmation_html(confirmed, spec, _figure, html_table))]
    sections = [
        ("Summary", _summary_html(spec, analysis)),
        *confirmation,
        ("Front: objective pairs", _figure(pairs_figure(analysis))),
        (
            "Front in 3-D",
            _figure(front_3d_figure(analysis))
            if len(analysis.objectives) >= 3
            else "<p>Fewer than three objectives: no 3-D view.</p>",
        ),
        ("Parameters and objectives", _figure(parallel_figure(analysis))),
        ("Hypervolume over trials", _figure(hypervolume_figure(analysis))),
        ("Learning curves of the front", _figure(learning_curves_figure(analysis))),
        ("The front", front_table_html(analysis)),
        ("Meeting the targets", targets_html(analysis)),
        ("Epoch-level front", epoch_front_html(analysis)),
        ("Excluded trials", excluded_html(analysis)),
        ("Provenance", provenance_html(spec, analysis)),
    ]
    body = "\n".join(
        f"<section><h2>{html.escape(title)}</h2>\n{content}\n</section>" for title, content in sections
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Study {html.escape(spec.name)}: Pareto report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
th {{ background: #f3f3f3; }} td.text {{ text-align: left; }}
tr.feasible td:first-child {{ border-left: 4px solid {FEASIBLE_COLOUR}; }}
.wide {{ overflow-x: auto; }}
pre {{ background: #f7f7f7; padding: 0.5em; overflow-x: auto; }}
.note {{ color: #555; font-size: 0.9em; }}
</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>Study {html.escape(spec.name)}: Pareto report</h1>
{body}
</body></html>
"""


def _figure(fig: go.Figure) -> str:
    return fig.to_html(
        full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True}
    )


# ---------------------------------------------------------------------------- figures


def _hover(frame: pd.DataFrame, analysis: pareto.Analysis) -> list[str]:
    text = "trial " + frame["trial_id"].astype(str)
    for o in analysis.objectives:
        text = text + f"<br>{o.metric} " + frame[o.metric].map("{:.4f}".format)
    text = (
        text
        + np.where(frame["feasible"], "<br>feasible", "<br>infeasible")
        + np.where(frame["front"], ", on the front", "")
    )
    for column, label in ((DEGENERATE, "degenerate"), (BELOW_BASELINE, "worse than the best baseline on")):
        if column in frame.columns:
            text = text + np.where(frame[column] != "", f"<br>{label}: " + frame[column].astype(str), "")
    return list(text)


def _groups(analysis: pareto.Analysis):
    """(name, rows, colour, on the front) for the four kinds of candidate."""
    c = analysis.candidates
    if not len(c):
        return
    for on_front in (False, True):
        for is_feasible in (True, False):
            rows = c[(c["front"] == on_front) & (c["feasible"] == is_feasible)]
            if len(rows):
                name = (
                    f"{'front' if on_front else 'dominated'}, {'feasible' if is_feasible else 'infeasible'}"
                )
                yield name, rows, FEASIBLE_COLOUR if is_feasible else INFEASIBLE_COLOUR, on_front


def _marker(colour: str, on_front: bool) -> dict:
    if on_front:
        return {"color": colour, "size": 10, "line": {"color": "black", "width": 1.5}}
    return {"color": colour, "size": 6, "opacity": 0.6}


def pairs_figure(analysis: pareto.Analysis) -> go.Figure:
    """Every pair of objectives: trials, the front, targets as lines, pred_corr as mastery's ceiling."""
    pairs = list(itertools.combinations(analysis.objectives, 2)) or [
        (analysis.objectives[0], analysis.objectives[0])
    ]
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.08, vertical_spacing=0.12)
    for i, (x, y) in enumerate(pairs):
        row, col = divmod(i, cols)
        for name, frame, colour, on_front in _groups(analysis):
            fig.add_trace(
                go.Scatter(
                    x=frame[x.metric],
                    y=frame[y.metric],
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=i == 0,
                    marker=_marker(colour, on_front),
                    text=_hover(frame, analysis),
                    hoverinfo="text",
                ),
                row=row + 1,
                col=col + 1,
            )
        _ceiling(fig, analysis, x.metric, y.metric, row + 1, col + 1, first=i == 0)
        _targets(fig, analysis, x.metric, y.metric, row + 1, col + 1)
        _baselines(fig, analysis, x.metric, y.metric, row + 1, col + 1, first=i == 0)
        fig.update_xaxes(title_text=f"{x.metric} ({x.direction})", row=row + 1, col=col + 1)
        fig.update_yaxes(title_text=f"{y.metric} ({y.direction})", row=row + 1, col=col + 1)
    fig.update_layout(height=420 * rows, margin={"t": 30}, legend={"orientation": "h", "y": -0.15})
    return fig


def _ceiling(
    fig: go.Figure, analysis: pareto.Analysis, x: str, y: str, row: int, col: int, first: bool
) -> None:
    """Each trial's ceiling of a metric (pred_corr for mastery_corr), joined to its value: how far
    below it is."""
    c = analysis.candidates
    metric = y if y in CEILINGS else x
    if metric not in CEILINGS or CEILINGS[metric] not in c.columns or not len(c):
        return
    on_y = metric == y
    other = c[x if on_y else y].to_numpy(dtype=float)
    mastery, ceiling = c[metric].to_numpy(dtype=float), c[CEILINGS[metric]].to_numpy(dtype=float)
    lines_a = [v for a, b in zip(other, other) for v in (a, b, None)]
    lines_b = [v for a, b in zip(mastery, ceiling) for v in (a, b, None)]
    xs, ys = (lines_a, lines_b) if on_y else (lines_b, lines_a)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line={"color": "#bbbbbb", "width": 1, "dash": "dot"},
            hoverinfo="skip",
            showlegend=False,
            legendgroup="ceiling",
        ),
        row=row,
        col=col,
    )
    fig.add_trace(
        go.Scatter(
            x=other if on_y else ceiling,
            y=ceiling if on_y else other,
            mode="markers",
            name=f"{CEILINGS[metric]} ({metric} ceiling)",
            legendgroup="ceiling",
            showlegend=first,
            marker={
                "symbol": "line-ew-open" if on_y else "line-ns-open",
                "size": 12,
                "color": "#555555",
                "line": {"width": 2},
            },
            text=[f"trial {t}<br>{CEILINGS[metric]} {v:.4f}" for t, v in zip(c[TRIAL_KEY], ceiling)],
            hoverinfo="text",
        ),
        row=row,
        col=col,
    )


def _targets(fig: go.Figure, analysis: pareto.Analysis, x: str, y: str, row: int, col: int) -> None:
    for constraint in analysis.constraints:
        style = {
            "line_dash": "dash",
            "line_color": "#d62728",
            "annotation_text": str(constraint),
            "row": row,
            "col": col,
        }
        if constraint.metric == x:
            fig.add_vline(x=constraint.threshold, **style)
        if constraint.metric == y:
            fig.add_hline(y=constraint.threshold, **style)


def _baselines(
    fig: go.Figure, analysis: pareto.Analysis, x: str, y: str, row: int, col: int, first: bool
) -> None:
    """The best baseline of each axis as a dotted line, and a cross on the trials that do worse than it."""
    for metric, add in ((x, fig.add_vline), (y, fig.add_hline)):
        if metric in analysis.baseline:
            value, name = analysis.baseline[metric]
            position = {"x": value} if add == fig.add_vline else {"y": value}
            add(
                **position,
                line_dash="dot",
                line_color=BASELINE_COLOUR,
                annotation_text=f"baseline: {name}",
                row=row,
                col=col,
            )
    c = analysis.candidates
    worse = c[c[BELOW_BASELINE].map(lambda names: bool({x, y} & set(names.split(","))))] if len(c) else c
    if len(worse):
        fig.add_trace(
            go.Scatter(
                x=worse[x],
                y=worse[y],
                mode="markers",
                name="worse than the best baseline",
                legendgroup="baseline",
                showlegend=first,
                hoverinfo="skip",
                marker={"symbol": "x-thin-open", "size": 14, "color": BASELINE_COLOUR, "line": {"width": 2}},
            ),
            row=row,
            col=col,
        )


def front_3d_figure(analysis: pareto.Analysis) -> go.Figure:
    """The first three objectives in 3-D, feasible and infeasible marked, the front outlined."""
    x, y, z = (o.metric for o in analysis.objectives[:3])
    fig = go.Figure()
    for name, frame, colour, on_front in _groups(analysis):
        marker = _marker(colour, on_front) | {"size": 6 if on_front else 3}
        fig.add_trace(
            go.Scatter3d(
                x=frame[x],
                y=frame[y],
                z=frame[z],
                mode="markers",
                name=name,
                marker=marker,
                text=_hover(frame, analysis),
                hoverinfo="text",
            )
        )
    fig.update_layout(
        height=600, margin={"t": 30}, scene={"xaxis_title": x, "yaxis_title": y, "zaxis_title": z}
    )
    return fig


def _axis(series: pd.Series, label: str) -> dict:
    """A parallel-coordinates dimension: categories as codes, weights spanning decades on log10 (0 = off)."""
    if series.dtype == bool or not pd.api.types.is_numeric_dtype(series):
        text = series.astype(str)
        categories = sorted(text.unique())
        codes = text.map({c: i for i, c in enumerate(categories)})
        return {
            "label": label,
            "values": codes.to_numpy(),
            "tickvals": list(range(len(categories))),
            "ticktext": categories,
        }
    values = series.to_numpy(dtype=float)
    positive = values[values > 0]
    if len(positive) and (values >= 0).all() and positive.max() / positive.min() > 100:
        floor = math.floor(math.log10(positive.min())) - 1
        logs = np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), floor)
        ticks = list(range(floor, math.ceil(math.log10(positive.max())) + 1))
        return {
            "label": f"{label} (log)",
            "values": logs,
            "tickvals": ticks,
            "ticktext": ["off" if t == floor else f"1e{t}" for t in ticks],
        }
    return {"label": label, "values": values}


def parallel_figure(analysis: pareto.Analysis) -> go.Figure:
    """Each usable trial a line from its parameters to its objectives, coloured by the first objective."""
    c = analysis.candidates
    if not len(c):
        return _empty("no completed trial with every objective defined")
    params = [p for p in c.columns if p.startswith(PARAM) and c[p].notna().all() and c[p].nunique() > 0]
    dims = [_axis(c[p], short_label(p)) for p in params]
    dims += [_axis(c[o.metric], f"{o.metric} ({o.direction})") for o in analysis.objectives]
    first = analysis.objectives[0]
    line = {
        "color": c[first.metric].to_numpy(dtype=float),
        "colorscale": "Viridis",
        "showscale": True,
        "colorbar": {"title": {"text": first.metric}},
        "reversescale": first.direction == "min",
    }
    return go.Figure(go.Parcoords(dimensions=dims, line=line)).update_layout(
        height=500, margin={"t": 60, "l": 60, "r": 60}
    )


def hypervolume_figure(analysis: pareto.Analysis) -> go.Figure:
    """Hypervolume of all usable trials, and of the feasible ones, after each trial in order of completion."""
    history = analysis.history
    if not len(history):
        return _empty("no completed trial with every objective defined")
    x = np.arange(1, len(history) + 1)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=history["hypervolume"],
            mode="lines+markers",
            name="all trials",
            line_shape="hv",
            text=[f"trial {t}" for t in history["trial_id"]],
        )
    )
    if analysis.constraints:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=history["feasible_hypervolume"],
                mode="lines+markers",
                name="feasible trials",
                line_shape="hv",
                line={"color": FEASIBLE_COLOUR},
                text=[f"trial {t}" for t in history["trial_id"]],
            )
        )
    fig.update_layout(
        height=380,
        margin={"t": 30},
        xaxis_title="completed trials (in order of completion)",
        yaxis_title="hypervolume",
    )
    return fig


def learning_curves_figure(analysis: pareto.Analysis) -> go.Figure:
    """Validation AUC and mastery correlation per epoch of each front trial (pred_corr dotted)."""
    epochs, chosen = analysis.epochs, analysis.front
    if not len(epochs) or not len(chosen):
        return _empty("no front trial has epoch rows yet")
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("validation AUC", "mastery correlation (pred_corr dotted)")
    )
    for i, row in enumerate(chosen.itertuples(index=False)):
        trial_id = row.trial_id
        own = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
        colour = PALETTE[i % len(PALETTE)]
        for col, metric in ((1, "auc"), (2, "mastery_corr")):
            if metric in own.columns:
                fig.add_trace(
                    go.Scatter(
                        x=own["epoch"],
                        y=own[metric],
                        mode="lines+markers",
                        name=f"trial {trial_id}",
                        legendgroup=trial_id,
                        showlegend=col == 1,
                        line={"color": colour},
                    ),
                    row=1,
                    col=col,
                )
        if CEILINGS["mastery_corr"] in own.columns:
            fig.add_trace(
                go.Scatter(
                    x=own["epoch"],
                    y=own[CEILINGS["mastery_corr"]],
                    mode="lines",
                    legendgroup=trial_id,
                    showlegend=False,
                    line={"color": colour, "dash": "dot"},
                    name=f"trial {trial_id} pred_corr",
                ),
                row=1,
                col=2,
            )
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=420, margin={"t": 40})
    return fig


def _empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig.update_layout(height=200, xaxis_visible=False, yaxis_visible=False)


# ---------------------------------------------------------------------------- tables


def _cell(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"
    return "-" if value is None or value is pd.NaT else str(value)


def html_table(frame: pd.DataFrame, columns: Sequence[str], table_id: str) -> str:
    if not len(frame):
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(short_label(c))}</th>" for c in columns)
    rows = []
    for record in frame.to_dict("records"):
        fixed = set(str(record.get(GUARANTEED) or "").split(","))
        cells = "".join(
            f"<td{' class=text' if not isinstance(record[c], (int, float, np.number)) else ''}>"
            f"{html.escape(_cell(record[c]))}{' (by construction)' if c in fixed else ''}</td>"
            for c in columns
        )
        feasible = (
            " class=feasible" if record.get("feasible") is True or record.get("feasible") is np.True_ else ""
        )
        rows.append(
            f'<tr data-trial-id="{html.escape(str(record.get("trial_id", "")))}"{feasible}>{cells}</tr>'
        )
    return (
        f'<div class=wide><table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )


def front_table_html(analysis: pareto.Analysis) -> str:
    frame = analysis.front
    note = (
        "<p class=note>Non-dominated completed trials, best first on the first objective; "
        "the feasible ones are marked on the left.</p>"
    )
    return note + html_table(
        frame, front_columns(frame, analysis.objectives, analysis.constraints, detail=True), "front-table"
    )


def targets_html(analysis: pareto.Analysis) -> str:
    if not analysis.constraints:
        return "<p>No constraints.</p>"
    targets = " and ".join(html.escape(str(c)) for c in analysis.constraints)
    if len(analysis.feasible_front):
        columns = ["trial_id", *(o.metric for o in analysis.objectives), "selected_epoch", "checkpoint"]
        return (
            f"<p>{int(analysis.candidates['feasible'].sum())} trials meet {targets}; "
            "the non-dominated ones:</p>"
            + html_table(analysis.feasible_front, columns, "feasible-front-table")
        )
    if not len(analysis.closest):
        return f"<p>No completed trial yet to check against {targets}.</p>"
    columns = [
        "trial_id",
        *(o.metric for o in analysis.objectives),
        *(c.metric for c in analysis.constraints),
        pareto.VIOLATION_COLUMN,
    ]
    return (
        f"<p>No trial meets {targets}. The closest, by total normalised violation (each constraint's miss "
        "divided by the spread of its metric over the completed trials, summed):</p>"
        + html_table(analysis.closest, list(dict.fromkeys(columns)), "closest-table")
    )


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
    text += html_table(analysis.excluded, ["trial_id", "reason"], "excluded-table")
    if len(other):
        text += "<p class=note>Trials not completed (not candidates):</p>"
        text += html_table(
            other, [c for c in ("trial_id", "status", "error") if c in other.columns], "unfinished-table"
        )
    return text


def _reference_lines(analysis: pareto.Analysis) -> list[str]:
    return [
        f"{o.metric} {value:.4g} ({'spec' if given else 'worst observed, 10% of the range beyond'})"
        for o, value, given in zip(analysis.objectives, analysis.reference, analysis.reference_given)
    ]


def _summary_html(spec: SweepSpec, analysis: pareto.Analysis) -> str:
    items = [f"<li>{html.escape(line)}</li>" for line in _summary_lines(spec, analysis)]
    return "<ul>" + "".join(items) + "</ul>"


def _summary_lines(spec: SweepSpec, analysis: pareto.Analysis) -> list[str]:
    trials = analysis.trials
    candidates = analysis.candidates
    feasible_count = int(candidates[FEASIBLE].sum()) if len(candidates) else 0
    return [
        f"trials: {len(trials)} of {spec.trials} asked ({status_counts(trials)})",
        "objectives: " + ", ".join(str(o) for o in analysis.objectives),
        "constraints: " + (" and ".join(str(c) for c in analysis.constraints) or "none"),
        (
            f"front: {len(analysis.front)} of {len(candidates)} usable trials; {feasible_count} feasible; "
            f"{len(analysis.feasible_front)} on the constrained front"
        ),
        "reference point: " + ", ".join(_reference_lines(analysis)),
        f"hypervolume: {analysis.hypervolume:.6g} "
        f"(feasible trials only: {analysis.feasible_hypervolume:.6g})",
        f"epoch-level front: {len(analysis.epoch_front)} checkpointed epochs",
        f"excluded for a missing objective: {len(analysis.excluded)}",
        "best baselines on the same split: "
        + (", ".join(f"{m} {v:.4f} ({name})" for m, (v, name) in analysis.baseline.items()) or "none stored"),
        "degenerate trials (copy_corr or mastery_saturation at their limits): "
        + str(int((candidates[DEGENERATE] != "").sum()) if len(candidates) else 0),
    ]


def _provenance(spec: SweepSpec, analysis: pareto.Analysis) -> dict[str, str]:
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


def provenance_html(spec: SweepSpec, analysis: pareto.Analysis) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td class=text>{html.escape(v)}</td></tr>"
        for k, v in _provenance(spec, analysis).items()
    )
    return (
        f'<table id="provenance">{rows}</table><h3>Spec</h3>'
        f"<pre>{html.escape(json.dumps(spec.to_dict(), indent=2))}</pre>"
    )


# ---------------------------------------------------------------------------- markdown


def _marked(record: dict, column: str) -> str:
    """A cell as text, marked when the trial's model fixes that metric by construction."""
    fixed = column in str(record.get(GUARANTEED) or "").split(",")
    return _cell(record[column]) + (" (by construction)" if fixed else "")


def markdown_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """The columns of `frame` as a Markdown table, cells formatted as in the report."""
    if not len(frame):
        return "none\n"
    head = "| " + " | ".join(short_label(c) for c in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    rows = [
        "| " + " | ".join(_marked(r, c).replace("|", "\\|") for c in columns) + " |"
        for r in frame.to_dict("records")
    ]
    return "\n".join([head, rule, *rows]) + "\n"


def render_markdown(spec: SweepSpec, analysis: pareto.Analysis, confirmed: pd.DataFrame | None = None) -> str:
    front = analysis.front
    columns = front_columns(front, analysis.objectives, analysis.constraints)
    parts = [
        f"# Study {spec.name}: Pareto summary\n",
        *(f"- {line}" for line in _summary_lines(spec, analysis)),
        "",
        *([confirmation_markdown(confirmed, spec)] if confirmed is not None and len(confirmed) else []),
        "## Front\n",
        markdown_table(front, columns),
    ]
    if analysis.constraints:
        if len(analysis.feasible_front):
            parts += [
                "## Meeting the targets (constrained front)\n",
                markdown_table(
                    analysis.feasible_front,
                    ["trial_id", *(o.metric for o in analysis.objectives), "checkpoint"],
                ),
            ]
        elif len(analysis.closest):
            parts += [
                "## No trial meets the targets: the closest (total normalised violation)\n",
                markdown_table(
                    analysis.closest,
                    [
                        "trial_id",
                        *dict.fromkeys(c.metric for c in analysis.constraints),
                        pareto.VIOLATION_COLUMN,
                    ],
                ),
            ]
    if len(analysis.excluded):
        parts += [
            "## Excluded (missing or NaN objective)\n",
            markdown_table(analysis.excluded, ["trial_id", "reason"]),
        ]
    parts += [
        "## Provenance\n",
        *(f"- {k}: {v}" for k, v in _provenance(spec, analysis).items()),
        "",
        "The figures (front, parallel coordinates, hypervolume, learning curves) are in report.html.\n",
    ]
    return "\n".join(parts)
