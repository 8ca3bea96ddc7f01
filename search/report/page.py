"""The study report: one self-contained HTML file (plotly's JavaScript inside, so it opens with no
network) and a Markdown summary next to it, both from the Parquet store alone.

The HTML holds, in order: the study's counts, targets and reference point; the front in 2-D
projections of each objective pair (targets as dashed lines, each trial's own `pred_corr` as the
ceiling of its mastery correlation, feasible and infeasible trials marked, the front circled) and
in 3-D; parallel coordinates from parameters to objectives; each parameter's importance per
objective (PED-ANOVA); the hypervolume over trials; the
learning curves of the front's trials; a table of the front (parameters, objective and
constraint values, selected epoch, checkpoint); the trials meeting the targets, or the closest
ones; the epoch-level front; the excluded trials; and the provenance (spec, data fingerprint,
package version, dates).

A large study's page stays small (under 10 MB at 10,000 trials) and quick to open. Above
`WEBGL_ABOVE` usable trials the objective pairs are drawn with WebGL (every trial still shown),
an off-front point's hover says only its trial and the pair's values, each ceiling is an error bar
instead of a dotted line, and the hypervolume is marked only where it rises. Beyond
`SAMPLE_OFF_FRONT` off-front trials, the parallel coordinates and the 3-D chart draw the front and
a fixed-seed sample of the others, and say so. Tables that grow with the trials (the excluded and
unfinished ones) list at most `MAX_LISTED` rows, and say how many there are. Every count the page
states is of all the trials. Smaller studies are drawn as before (SVG scatters, every hover in full).
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
from search.analysis import pareto
from search.analysis.importance import MAX_TRIALS, param_importances, target_quantile
from search.analysis.pareto import load_analysis
from search.analysis.statistics import confirmed_split
from search.report.confirmation import confirmation_html, confirmation_markdown
from search.report.terminal import front_columns, status_counts
from search.schema import (
    BELOW_BASELINE,
    CHECKPOINT,
    DEGENERATE,
    FEASIBLE,
    GUARANTEED,
    PARAM,
    TRIAL_KEY,
    VIOLATION,
    WANDB_RUN,
    TrialStatus,
    param_column,
    short_label,
)
from search.spec import SweepSpec
from search.store.segments import Store
from search.store.study import Study

FEASIBLE_COLOUR, INFEASIBLE_COLOUR, BASELINE_COLOUR = "#1b9e77", "#9e9e9e", "#1f4e9e"
WEIGHTS = param_column("weights.")  # the loss weights: log axes, 0 shown as "off"
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
WEBGL_ABOVE = 1_000  # usable trials; above this the objective pairs are WebGL, off-front hovers short
SAMPLE_OFF_FRONT = 2_000  # off-front trials drawn in the parallel coordinates and in 3-D, at most
SAMPLE_SEED = 0  # the same trials give the same sample, so a report is reproducible
MAX_LISTED = 100  # rows of a table that grows with the trials (excluded, not completed)
# Positions no hover reads (error bars, the baseline crosses) of a large study: single precision,
# half the bytes, far finer than a pixel.
UNREAD = np.float32


@dataclass(frozen=True)
class Written:
    html: str
    markdown: str


# ---------------------------------------------------------------------------- entry points


def write_report(study: Study, out: str | None = None) -> Written:
    """Write report.html and report.md into the study folder, or FILE and FILE's .md next to it
    (a study in object storage gets them in its folder either way)."""
    if out is not None:
        _check_output(Path(out))
    spec, analysis = load_analysis(study)
    confirmed = Store(study).confirm()
    page, summary = render_html(spec, analysis, confirmed), render_markdown(spec, analysis, confirmed)
    if out is None or not study.local:  # a remote study's report always goes into its folder too
        study.write_atomic(f"{study.root}/report.html", page.encode())
        study.write_atomic(f"{study.root}/report.md", summary.encode())
        if out is None:
            return Written(f"{study.display()}/report.html", f"{study.display()}/report.md")
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
        ("Front: objective pairs", pairs_note(analysis) + _figure(pairs_figure(analysis))),
        (
            "Front in 3-D",
            sample_note(analysis) + _figure(front_3d_figure(analysis))
            if len(analysis.objectives) >= 3
            else "<p>Fewer than three objectives: no 3-D view.</p>",
        ),
        ("Parameters and objectives", sample_note(analysis) + _figure(parallel_figure(analysis))),
        ("Parameter importance", importance_html(analysis)),
        ("Hypervolume over trials", hypervolume_note(analysis) + _figure(hypervolume_figure(analysis))),
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
table {{ border-collapse: collapse; font-size: 0.8em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 4px; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; white-space: normal; }}
td.text {{ text-align: left; white-space: normal; overflow-wrap: anywhere; }}
td.id {{ text-align: left; }} td .note {{ white-space: normal; }}
tr.details td {{ border-top: none; color: #444; font-size: 0.9em; }}
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


def _short_hover(frame: pd.DataFrame, axes: dict[str, str], name: str) -> dict:
    """A point's hover as a template over its trial id and the plotted `axes` (axis -> metric), its
    group in the side box: a few bytes a point, where the full text is a hundred or more."""
    lines = "".join(f"<br>{metric} %{{{axis}:.4f}}" for axis, metric in axes.items())
    return {
        "text": frame[TRIAL_KEY].astype(str).tolist(),
        "hovertemplate": f"trial %{{text}}{lines}<extra>{html.escape(name)}</extra>",
    }


def _point_hover(
    frame: pd.DataFrame, analysis: pareto.Analysis, axes: dict[str, str], name: str, short: bool
) -> dict:
    """The hover arguments of a group's points: in full (`_hover`), or `_short_hover` when `short`."""
    if short:
        return _short_hover(frame, axes, name)
    return {"text": _hover(frame, analysis), "hoverinfo": "text"}


def _large(analysis: pareto.Analysis) -> bool:
    """Whether the study has so many usable trials that its scatters are WebGL with short hovers."""
    return len(analysis.candidates) > WEBGL_ABOVE


def _on_front(candidates: pd.DataFrame) -> np.ndarray:
    return candidates["front"].to_numpy(dtype=bool) if len(candidates) else np.zeros(0, dtype=bool)


def shown_candidates(analysis: pareto.Analysis) -> pd.DataFrame:
    """The candidates the parallel coordinates and the 3-D chart draw, in their order: all of them,
    or beyond `SAMPLE_OFF_FRONT` off-front ones, the front and a fixed-seed sample of the others."""
    c = analysis.candidates
    on_front = _on_front(c)
    others = np.flatnonzero(~on_front)
    if len(others) <= SAMPLE_OFF_FRONT:
        return c
    # Drawn from the others in trial-id order, so the sample depends on the trials, not on row order.
    others = others[np.argsort(c[TRIAL_KEY].to_numpy(dtype=str)[others], kind="stable")]
    picked = np.random.default_rng(SAMPLE_SEED).choice(others, SAMPLE_OFF_FRONT, replace=False)
    keep = on_front.copy()
    keep[picked] = True
    return c[keep]


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def sample_note(analysis: pareto.Analysis) -> str:
    """The caption of a chart drawn from `shown_candidates`: what it leaves out, or nothing."""
    on_front = _on_front(analysis.candidates)
    others = int((~on_front).sum())
    if others <= SAMPLE_OFF_FRONT:
        return ""
    return (
        f"<p class=note>Showing the {_counted(int(on_front.sum()), 'front trial')} and a random sample "
        f"(fixed seed) of {SAMPLE_OFF_FRONT:,} of the {_counted(others, 'other')}; every trial is in "
        "the study's Parquet store.</p>"
    )


def _large_note(analysis: pareto.Analysis, text: str) -> str:
    """A chart's caption that only a large study needs."""
    return f"<p class=note>{text}</p>" if _large(analysis) else ""


def pairs_note(analysis: pareto.Analysis) -> str:
    """The objective pairs' caption for a large study, whose points hover and show ceilings in short."""
    return _large_note(
        analysis,
        f"Every one of the {len(analysis.candidates):,} usable trials, drawn in WebGL: an off-front "
        "point's hover names its trial and the pair's values, a front point's says all; each "
        "ceiling mark's bar runs to its trial's value.",
    )


def _groups(analysis: pareto.Analysis, candidates: pd.DataFrame | None = None):
    """(name, rows, colour, on the front) for the four kinds of candidate (of `candidates`, by default
    all of the analysis's)."""
    c = analysis.candidates if candidates is None else candidates
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
    webgl = _large(analysis)
    scatter = go.Scattergl if webgl else go.Scatter
    for i, (x, y) in enumerate(pairs):
        row, col = divmod(i, cols)
        # Drawn first, so the trials' points lie over the ceiling marks at any width.
        _ceiling(fig, analysis, x.metric, y.metric, row + 1, col + 1, first=i == 0)
        for name, frame, colour, on_front in _groups(analysis):
            axes = {"x": x.metric, "y": y.metric}
            fig.add_trace(
                scatter(
                    x=frame[x.metric],
                    y=frame[y.metric],
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=i == 0,
                    marker=_marker(colour, on_front),
                    **_point_hover(frame, analysis, axes, name, short=webgl and not on_front),
                ),
                row=row + 1,
                col=col + 1,
            )
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
    if _large(analysis):
        _ceiling_bars(fig, c, metric, x if on_y else y, on_y, row, col, first)
        return
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
            **_ceiling_marks(metric, on_y, first),
            text=[f"trial {t}<br>{CEILINGS[metric]} {v:.4f}" for t, v in zip(c[TRIAL_KEY], ceiling)],
            hoverinfo="text",
        ),
        row=row,
        col=col,
    )


def _ceiling_marks(metric: str, on_y: bool, first: bool) -> dict:
    """What the ceiling's markers look like, whichever trace draws them: a short tick across the axis."""
    return {
        "mode": "markers",
        "name": f"{CEILINGS[metric]} ({metric} ceiling)",
        "legendgroup": "ceiling",
        "showlegend": first,
        "marker": {
            "symbol": "line-ew-open" if on_y else "line-ns-open",
            "size": 12,
            "color": "#555555",
            "line": {"width": 2},
        },
    }


def _ceiling_bars(
    fig: go.Figure, c: pd.DataFrame, metric: str, other: str, on_y: bool, row: int, col: int, first: bool
) -> None:
    """`_ceiling` for a large study, in WebGL: a mark at each trial's ceiling with an error bar down
    (or up) to its value; about a tenth of the bytes of the dotted lines, which need three points a trial."""
    value, ceiling = c[metric].to_numpy(dtype=float), c[CEILINGS[metric]].to_numpy(dtype=float)
    gap = ceiling - value
    bar = {
        "type": "data",
        "symmetric": False,
        "array": np.maximum(-gap, 0.0).astype(UNREAD),  # the value above its ceiling
        "arrayminus": np.maximum(gap, 0.0).astype(UNREAD),
        "color": "#bbbbbb",
        "thickness": 1,
        "width": 0,
    }
    axis = "y" if on_y else "x"
    fig.add_trace(
        go.Scattergl(
            x=c[other] if on_y else ceiling,
            y=ceiling if on_y else c[other],
            **_ceiling_marks(metric, on_y, first),
            **{f"error_{axis}": bar},
            text=c[TRIAL_KEY].astype(str).tolist(),
            hovertemplate=f"trial %{{text}}<br>{CEILINGS[metric]} %{{{axis}:.4f}}<extra></extra>",
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
        webgl = _large(analysis)
        fig.add_trace(
            (go.Scattergl if webgl else go.Scatter)(
                x=worse[x].astype(UNREAD) if webgl else worse[x],
                y=worse[y].astype(UNREAD) if webgl else worse[y],
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
    """The first three objectives in 3-D, feasible and infeasible marked, the front outlined (of a
    large study, the front and a sample of the others: `shown_candidates`)."""
    x, y, z = (o.metric for o in analysis.objectives[:3])
    fig = go.Figure()
    plotted = {"x": x, "y": y, "z": z}
    for name, frame, colour, on_front in _groups(analysis, shown_candidates(analysis)):
        marker = _marker(colour, on_front) | {"size": 6 if on_front else 3}
        fig.add_trace(
            go.Scatter3d(
                x=frame[x],
                y=frame[y],
                z=frame[z],
                mode="markers",
                name=name,
                marker=marker,
                **_point_hover(frame, analysis, plotted, name, short=_large(analysis) and not on_front),
            )
        )
    axes = zip("xyz", analysis.objectives)
    titles = {f"{axis}axis_title": _arrow(o.metric, o.direction) for axis, o in axes}
    fig.update_layout(
        height=640,
        margin={"t": 30, "l": 0, "r": 0, "b": 0},
        # Seen from further out than plotly's default, so no corner of the box is cut off.
        scene={**titles, "aspectmode": "cube", "camera": {"eye": {"x": 1.6, "y": 1.6, "z": 1.1}}},
        legend={"orientation": "h", "y": 0},
    )
    return fig


def _axis(series: pd.Series, label: str, log: bool = False) -> dict:
    """A parallel-coordinates dimension: categories as codes; on log10 with 0 as "off" at the bottom
    when `log` (every loss weight) or when the positive values span more than two decades."""
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
    spans_decades = len(positive) and positive.max() / positive.min() > 100
    if len(positive) and (values >= 0).all() and (log or spans_decades):
        floor = math.floor(math.log10(positive.min())) - 1
        top = max(math.ceil(math.log10(positive.max())), floor + 1)
        logs = np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), floor)
        ticks = list(range(floor, top + 1))
        return {
            "label": label,
            "values": logs,
            "range": [floor, top],  # the ticks' span, so every log axis ends at a tick
            "tickvals": ticks,
            "ticktext": ["off" if t == floor else f"1e{t}" for t in ticks],
        }
    return {"label": label, "values": values}


def parallel_figure(analysis: pareto.Analysis) -> go.Figure:
    """Each usable trial (of a large study, those of `shown_candidates`) a line from its parameters
    to its objectives, coloured by the first objective."""
    c = shown_candidates(analysis)
    if not len(c):
        return _empty("no completed trial with every objective defined")
    params = [p for p in c.columns if p.startswith(PARAM) and c[p].notna().all() and c[p].nunique() > 0]
    dims = [_axis(c[p], short_label(p), log=p.startswith(WEIGHTS)) for p in params]
    dims += [_axis(c[o.metric], _arrow(o.metric, o.direction)) for o in analysis.objectives]
    first = analysis.objectives[0]
    line = {
        "color": c[first.metric].to_numpy(dtype=float),
        "colorscale": "Viridis",
        "showscale": True,
        "colorbar": {"title": {"text": first.metric}},
        "reversescale": first.direction == "min",
    }
    # Labels at an angle never run into each other, however many axes share the width.
    # The extent numbers plotly prints past each axis's ends repeat its ticks and crowd the labels.
    hidden = {"size": 1, "color": "rgba(0,0,0,0)"}
    parcoords = go.Parcoords(dimensions=dims, line=line, labelangle=-30, labelside="top", rangefont=hidden)
    return go.Figure(parcoords).update_layout(height=520, margin={"t": 110, "l": 60, "r": 80, "b": 30})


def _arrow(metric: str, direction: str) -> str:
    """An objective's axis title: its name and which way is better."""
    return f"{metric} {'↑' if direction == 'max' else '↓'} ({direction})"


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
                name=_arrow(objective.metric, objective.direction),
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
    return note + _figure(fig)


def hypervolume_figure(analysis: pareto.Analysis) -> go.Figure:
    """Hypervolume of all usable trials, and of the feasible ones, after each trial in order of completion."""
    history = analysis.history
    if not len(history):
        return _empty("no completed trial with every objective defined")
    fig = go.Figure()
    columns: dict[str, tuple[str, dict[str, str]]] = {"hypervolume": ("all trials", {})}
    if analysis.constraints:
        columns["feasible_hypervolume"] = ("feasible trials", {"color": FEASIBLE_COLOUR})
    for column, (name, line) in columns.items():
        values = history[column].to_numpy(dtype=float)
        at = _steps(values) if _large(analysis) else np.arange(len(values))
        fig.add_trace(
            go.Scatter(
                x=at + 1,
                y=values[at],
                mode="lines+markers",
                name=name,
                line_shape="hv",
                line=line,
                text=[f"trial {t}" for t in history["trial_id"].to_numpy()[at]],
            )
        )
    fig.update_layout(
        height=380,
        margin={"t": 30},
        xaxis_title="completed trials (in order of completion)",
        yaxis_title="hypervolume",
    )
    return fig


def _steps(values: np.ndarray) -> np.ndarray:
    """The positions where a step line (`line_shape="hv"`) turns: the first, every change of value
    and the last; drawn through these alone it is the same line."""
    keep = np.ones(len(values), dtype=bool)
    keep[1:-1] = values[1:-1] != values[:-2]
    return np.flatnonzero(keep)


def hypervolume_note(analysis: pareto.Analysis) -> str:
    """The hypervolume chart's caption for a large study, whose points mark only where it rises."""
    return _large_note(
        analysis,
        f"With over {WEBGL_ABOVE:,} usable trials, a point marks each trial that raised the "
        "hypervolume (and the first and last); between them it stays level.",
    )


def learning_curves_figure(analysis: pareto.Analysis) -> go.Figure:
    """Validation AUC and mastery correlation per epoch of each front trial (pred_corr dotted)."""
    chosen = list(analysis.front[TRIAL_KEY]) if len(analysis.front) else []
    epochs = analysis.epochs
    # The front's rows only: the epochs table may hold every trial's, or the front's alone.
    epochs = epochs[epochs[TRIAL_KEY].isin(chosen)] if len(epochs) else epochs
    if not len(epochs):
        return _empty("no front trial has epoch rows yet")
    by_trial = dict(iter(epochs.groupby(TRIAL_KEY, sort=False, observed=True)))
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("validation AUC", "mastery correlation (pred_corr dotted)")
    )
    for i, trial_id in enumerate(chosen):
        own = by_trial.get(trial_id, epochs.iloc[0:0]).sort_values("epoch")
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
    fig.update_xaxes(title_text="epoch", tickmode="linear", dtick=1, tickformat="d")
    fig.update_yaxes(title_text="validation AUC", row=1, col=1)
    fig.update_yaxes(title_text="mastery_corr, pred_corr", row=1, col=2)
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


def _breakable(label: str) -> str:
    """A column title that may wrap after its underscores and dots (never inside a word)."""
    return html.escape(label).replace("_", "_<wbr>").replace(".", ".<wbr>")


def _link(where: object) -> str:
    """A W&B run as a link: its URL, or its offline folder as a file URL."""
    if not isinstance(where, str) or not where:
        return "-"
    href = Path(where).as_uri() if where.startswith("/") else where  # a URL, or a folder's absolute path
    return f'<a href="{html.escape(href)}">run</a>'


def _td(record: dict, column: str, fixed: set[str]) -> str:
    value = record[column]
    text = isinstance(value, str) or not isinstance(value, (int, float, np.number))
    if column == WANDB_RUN:
        return f"<td class=text>{_link(value)}</td>"
    if column == TRIAL_KEY:  # an id never breaks
        return f"<td class=id>{html.escape(_cell(value))}</td>"
    shown = html.escape(_cell(value).replace(",", ", "))  # lists of names wrap after their commas
    # On a line of its own, so that a column of numbers stays narrow.
    fixed_note = "<br><span class=note>(by construction)</span>" if column in fixed else ""
    return f"<td{' class=text' if text else ''}>{shown}{fixed_note}</td>"


def _details_row(record: dict, columns: Sequence[str], span: int) -> str:
    """A row under a trial's row, spanning the table: its other columns as `name value` pairs that
    wrap with the page, folded until opened."""
    pairs = ", ".join(f"{html.escape(short_label(c))} {html.escape(_cell(record[c]))}" for c in columns)
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
        fixed = set(str(record.get(GUARANTEED) or "").split(","))
        cells = "".join(_td(record, c, fixed) for c in columns)
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
    DEGENERATE: "degenerate",
    BELOW_BASELINE: "below the best baseline on",
    GUARANTEED: "fixed by construction",
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
    flags = [c for c in (DEGENERATE, BELOW_BASELINE, GUARANTEED) if c in every]
    main = [c for c in every if c not in detail and c not in flags]
    if flags:  # one column of words that wraps, instead of three narrow ones
        frame = frame.assign(**{NOTES: [_notes(record, flags) for record in frame.to_dict("records")]})
        main.insert(main.index("selected_epoch") if "selected_epoch" in main else len(main), NOTES)
    if WANDB_RUN in frame.columns and frame[WANDB_RUN].notna().any():
        main.append(WANDB_RUN)
    note = (
        "<p class=note>Non-dominated completed trials, best first on the first objective; "
        "the feasible ones are marked on the left. Under each, its settings, constraint violations and "
        "checkpoint (click to open).</p>"
    )
    return note + html_table(frame, main, "front-table", details=detail)


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
    text += listed_table(analysis.excluded, ["trial_id", "reason"], "excluded-table")
    if len(other):
        text += "<p class=note>Trials not completed (not candidates):</p>"
        text += listed_table(
            other, [c for c in ("trial_id", "status", "error") if c in other.columns], "unfinished-table"
        )
    return text


def _listed_note(shown: int, total: int) -> str:
    return f"the first {shown} of {total:,}; every trial is in the study's Parquet store"


def listed_table(frame: pd.DataFrame, columns: Sequence[str], table_id: str) -> str:
    """`html_table` of at most `MAX_LISTED` rows, saying how many there are when it holds fewer."""
    if len(frame) <= MAX_LISTED:
        return html_table(frame, columns, table_id)
    note = f"<p class=note>Listed: {_listed_note(MAX_LISTED, len(frame))}.</p>"
    return note + html_table(frame.head(MAX_LISTED), columns, table_id)


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
        excluded = analysis.excluded
        many = len(excluded) > MAX_LISTED
        listed = [f"Listed: {_listed_note(MAX_LISTED, len(excluded))}.\n"] if many else []
        parts += [
            "## Excluded (missing or NaN objective)\n",
            *listed,
            markdown_table(excluded.head(MAX_LISTED), ["trial_id", "reason"]),
        ]
    parts += [
        "## Provenance\n",
        *(f"- {k}: {v}" for k, v in _provenance(spec, analysis).items()),
        "",
        "The figures (front, parallel coordinates, hypervolume, learning curves) are in report.html.\n",
    ]
    return "\n".join(parts)
