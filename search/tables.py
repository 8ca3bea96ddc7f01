"""Plain-text tables for the terminal."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from .spec import SweepSpec


def text_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """Columns aligned, numbers to 4 decimals, NaN as '-'."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.4f}"
        return "-" if value is None else str(value)

    rows = [[cell(v) for v in record] for record in frame[list(columns)].itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def front_columns(spec: SweepSpec, frame: pd.DataFrame) -> list[str]:
    """Trial id, objectives, constraint metrics not already shown, feasibility, selected epoch, the weights."""
    columns = ["trial_id", *spec.metric_names]
    columns += [c.metric for c in spec.constraints if c.metric not in columns]
    columns += ["pred_corr", "feasible", "selected_epoch"]
    columns += [c for c in frame.columns if c.startswith("param.weights.")]
    return [c for c in dict.fromkeys(columns) if c in frame.columns]


def short_headers(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=lambda c: c.removeprefix("param.weights.").removeprefix("param."))
