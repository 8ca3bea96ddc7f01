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

A large study's page stays small (under 10 MB at 10,000 trials) and quick to open: the figures
thin themselves out (`search.report.figures`), and tables that grow with the trials list at most
`MAX_LISTED` rows and say how many there are. Every count the page states is of all the trials.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from plotly.offline import get_plotlyjs

from gainakt.errors import ConfigError
from search.analysis import pareto
from search.analysis.pareto import load_analysis
from search.analysis.statistics import confirmed_split, source_fixed
from search.report.confirmation import confirmation_html
from search.report.figures import (
    FEASIBLE_COLOUR,
    embed,
    front_3d_figure,
    hypervolume_figure,
    hypervolume_note,
    learning_curves_figure,
    pairs_figure,
    pairs_note,
    parallel_figure,
    sample_note,
)
from search.report.html import (
    epoch_front_html,
    excluded_html,
    front_table_html,
    importance_html,
    provenance_html,
    recommendation_html,
    summary_html,
    targets_html,
)
from search.report.markdown import render_markdown
from search.spec import SweepSpec
from search.store import layout
from search.store.segments import Store
from search.store.study import Study


@dataclass(frozen=True)
class Written:
    html: str
    markdown: str


def write_report(study: Study, out: str | None = None) -> Written:
    """Write report.html and report.md into the study folder, or FILE and FILE's .md next to it
    (a study in object storage gets them in its folder either way)."""
    if out is not None:
        _check_output(Path(out))
    spec, analysis = load_analysis(study)
    confirmed = Store(study).confirm()
    page, summary = render_html(spec, analysis, confirmed), render_markdown(spec, analysis, confirmed)
    if out is None or not study.local:  # a remote study's report always goes into its folder too
        study.write_atomic(f"{study.root}/{layout.REPORT_HTML}", page.encode())
        study.write_atomic(f"{study.root}/{layout.REPORT_MD}", summary.encode())
        if out is None:
            return Written(f"{study.display()}/{layout.REPORT_HTML}", f"{study.display()}/{layout.REPORT_MD}")
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
                f"--output {path}: {target} is a folder; give a file name such as {path}/{layout.REPORT_HTML}"
            )
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"--output {path}: {blocking} is a file, not a folder")


def render_html(spec: SweepSpec, analysis: pareto.Analysis, confirmed: pd.DataFrame | None = None) -> str:
    """The page; with `confirmed` rows (`Store.confirm`), a confirmation section after the summary."""
    confirmation = []
    if confirmed is not None and len(confirmed):
        title = (
            f"Confirmation ({'test split' if confirmed_split(confirmed) == 'test' else 'validation folds'})"
        )
        confirmation = [(title, confirmation_html(confirmed, spec, source_fixed(analysis.trials)))]
    sections = [
        ("What to pick", recommendation_html(spec, analysis)),
        ("Summary", summary_html(spec, analysis)),
        *confirmation,
        ("Front: objective pairs", pairs_note(analysis) + embed(pairs_figure(analysis))),
        (
            "Front in 3-D",
            sample_note(analysis) + embed(front_3d_figure(analysis))
            if len(analysis.objectives) >= 3
            else "<p>Fewer than three objectives: no 3-D view.</p>",
        ),
        ("Parameters and objectives", sample_note(analysis) + embed(parallel_figure(analysis))),
        ("Parameter importance", importance_html(analysis)),
        ("Hypervolume over trials", hypervolume_note(analysis) + embed(hypervolume_figure(analysis))),
        ("Learning curves of the front", embed(learning_curves_figure(analysis))),
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
