"""The report's plotly figures: the front's objective pairs (with targets, ceilings and baselines)
and its 3-D view, parallel coordinates, the hypervolume over trials and the front's learning curves.

A large study's figures stay small: above `WEBGL_ABOVE` usable trials the objective pairs are drawn
with WebGL and an off-front point's hover is short, each ceiling is an error bar, and the hypervolume
is marked only where it rises; beyond `SAMPLE_OFF_FRONT` off-front trials, the parallel coordinates
and the 3-D chart draw the front and a fixed-seed sample of the others, and say so.
"""

from __future__ import annotations

import html
import itertools
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gainakt.schema import CEILINGS
from search.analysis import pareto
from search.analysis.pareto import CURVE_METRICS
from search.schema import BELOW_BASELINE, DEGENERATE, PARAM, TRIAL_KEY, param_column, short_label

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
# Positions no hover reads (error bars, the baseline crosses) of a large study: single precision,
# half the bytes, far finer than a pixel.
UNREAD = np.float32


def embed(fig: go.Figure) -> str:
    return fig.to_html(
        full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True}
    )


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


def is_large(analysis: pareto.Analysis) -> bool:
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
    return f"<p class=note>{text}</p>" if is_large(analysis) else ""


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
    webgl = is_large(analysis)
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
    if is_large(analysis):
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
            "annotation_text": constraint.shown(),
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
        webgl = is_large(analysis)
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
                **_point_hover(frame, analysis, plotted, name, short=is_large(analysis) and not on_front),
            )
        )
    axes = zip("xyz", analysis.objectives)
    titles = {f"{axis}axis_title": arrow(o.metric, o.direction) for axis, o in axes}
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
        return empty_figure("no completed trial with every objective defined")
    params = [p for p in c.columns if p.startswith(PARAM) and c[p].notna().all() and c[p].nunique() > 0]
    dims = [_axis(c[p], short_label(p), log=p.startswith(WEIGHTS)) for p in params]
    dims += [_axis(c[o.metric], arrow(o.metric, o.direction)) for o in analysis.objectives]
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


def arrow(metric: str, direction: str) -> str:
    """An objective's axis title: its name and which way is better."""
    return f"{metric} {'↑' if direction == 'max' else '↓'} ({direction})"


def hypervolume_figure(analysis: pareto.Analysis) -> go.Figure:
    """Hypervolume of all usable trials, and of the feasible ones, after each trial in order of completion."""
    history = analysis.history
    if not len(history):
        return empty_figure("no completed trial with every objective defined")
    fig = go.Figure()
    columns: dict[str, tuple[str, dict[str, str]]] = {"hypervolume": ("all trials", {})}
    if analysis.constraints:
        columns["feasible_hypervolume"] = ("feasible trials", {"color": FEASIBLE_COLOUR})
    for column, (name, line) in columns.items():
        values = history[column].to_numpy(dtype=float)
        at = _steps(values) if is_large(analysis) else np.arange(len(values))
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
    """Each of `CURVE_METRICS` per validation epoch of each front trial, its ceiling dotted."""
    chosen = list(analysis.front[TRIAL_KEY]) if len(analysis.front) else []
    epochs = analysis.epochs
    # The front's rows only: the epochs table may hold every trial's, or the front's alone.
    epochs = epochs[epochs[TRIAL_KEY].isin(chosen)] if len(epochs) else epochs
    if not len(epochs):
        return empty_figure("no front trial has epoch rows yet")
    by_trial = dict(iter(epochs.groupby(TRIAL_KEY, sort=False, observed=True)))
    titles = [m + (f" ({CEILINGS[m]} dotted)" if m in CEILINGS else "") for m in CURVE_METRICS]
    fig = make_subplots(rows=1, cols=len(CURVE_METRICS), subplot_titles=titles)
    for i, trial_id in enumerate(chosen):
        own = by_trial.get(trial_id, epochs.iloc[0:0]).sort_values("epoch")
        colour = PALETTE[i % len(PALETTE)]
        for col, metric in enumerate(CURVE_METRICS, 1):
            lines = [(metric, "lines+markers", {"color": colour})]
            if metric in CEILINGS:
                lines.append((CEILINGS[metric], "lines", {"color": colour, "dash": "dot"}))
            for shown, mode, line in lines:
                if shown in own.columns:
                    fig.add_trace(
                        go.Scatter(
                            x=own["epoch"],
                            y=own[shown],
                            mode=mode,
                            name=f"trial {trial_id}" + ("" if shown == metric else f" {shown}"),
                            legendgroup=trial_id,
                            showlegend=col == 1 and shown == metric,
                            line=line,
                        ),
                        row=1,
                        col=col,
                    )
    fig.update_xaxes(title_text="epoch", tickmode="linear", dtick=1, tickformat="d")
    for col, metric in enumerate(CURVE_METRICS, 1):
        ceiling = f", {CEILINGS[metric]}" if metric in CEILINGS else ""
        fig.update_yaxes(title_text=f"validation {metric}{ceiling}", row=1, col=col)
    fig.update_layout(height=420, margin={"t": 40})
    return fig


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig.update_layout(height=200, xaxis_visible=False, yaxis_visible=False)
