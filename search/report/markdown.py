"""The Markdown summary written beside the HTML page: the same sections in text, without figures."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from search.analysis import pareto
from search.report.confirmation import confirmation_markdown
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
from search.schema import GUARANTEED, UNTRAINED, fixed_metrics, short_label
from search.spec import SweepSpec


def _marked(record: dict, column: str) -> str:
    """A cell as text, marked when the trial's model fixes that metric by construction, or when it
    describes a part no loss of the trial's setting trains."""
    fixed = column in fixed_metrics(record.get(GUARANTEED))
    untrained = column in fixed_metrics(record.get(UNTRAINED))
    return cell(record[column]) + (" (untrained)" if untrained else " (by construction)" if fixed else "")


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
        *([f"**{said}**", ""] if (said := pareto.verdict(analysis)) else []),
        *recommendation_lines(spec, analysis),
        "",
        *(f"- {line}" for line in summary_lines(spec, analysis)),
        "",
        *([confirmation_markdown(confirmed, spec)] if confirmed is not None and len(confirmed) else []),
        "## Front\n",
        markdown_table(front, columns),
    ]
    section = targets(analysis)
    if section is not None:
        parts += ["## Meeting the targets\n", section.lead + "\n"]
        if section.columns:
            parts.append(markdown_table(section.frame, section.columns))
    if len(analysis.excluded):
        excluded = analysis.excluded
        many = len(excluded) > MAX_LISTED
        listed = [f"Listed: {listed_note(MAX_LISTED, len(excluded))}.\n"] if many else []
        parts += [
            "## Excluded (missing or NaN objective)\n",
            *listed,
            markdown_table(excluded.head(MAX_LISTED), ["trial_id", "reason"]),
        ]
    parts += [
        "## Provenance\n",
        *(f"- {k}: {v}" for k, v in provenance(spec, analysis).items()),
        "",
        "The figures (front, parallel coordinates, hypervolume, learning curves) are in report.html.\n",
    ]
    return "\n".join(parts)
