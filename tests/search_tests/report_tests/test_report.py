"""The study report (search/report/page.py) and the `pareto` and `report` commands."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chromium import CHROMIUM, PageVisit, png_pixels, visit
from plotly.offline import get_plotlyjs
from study_helpers import fake_study
from sweep_helpers import sweep_argv, tables

from search.analysis import pareto
from search.analysis.pareto import load_analysis
from search.cli import main
from search.report import figures as drawn
from search.report.page import render_html, write_report
from search.report.sections import MAX_LISTED, recommendation_lines
from search.schema import BASELINE_PREFIX, TrialStatus, param_column
from search.spec import SweepSpec
from search.store.study import Study

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)",
)


class _TableIds(HTMLParser):
    """The data-trial-id of every row of one table of the page."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.ids = table_id, False, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.inside = attrs.get("id") == self.table_id
        elif tag == "tr" and self.inside and "data-trial-id" in attrs:
            self.ids.append(attrs["data-trial-id"])

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False


def table_ids(page: str, table_id: str = "front-table") -> list[str]:
    parser = _TableIds(table_id)
    parser.feed(page)
    return parser.ids


def terminal_ids(output: str, header: str) -> list[str]:
    """The first column of the table printed under `header`."""
    lines = output[output.index(header) :].splitlines()[1:]
    assert lines[0].startswith("trial_id")
    ids = []
    for line in lines[1:]:
        first = line.split(" ", 1)[0]
        lookup = first.startswith(BASELINE_PREFIX)  # a lookup on the front: baseline:pfa
        if not re.fullmatch(r"[0-9a-z_:]+", first) or (":" in line.split("  ", 1)[0] and not lookup):
            break
        ids.append(first)
    return ids


def assert_opens_cleanly(path: Path, expected_ids: list[str], **visiting) -> PageVisit:
    page = visit(path, **visiting)
    assert page.errors == [], f"JavaScript errors in {path}: {page.errors}"
    pixels = png_pixels(page.screenshot)
    colours = np.unique(pixels.reshape(-1, pixels.shape[2])[:, :3], axis=0)
    assert len(colours) > 50 and (pixels[..., :3] < 128).any(axis=2).mean() > 0.005, "the screenshot is blank"
    for trial_id in expected_ids:
        assert trial_id in page.text
    return page


# ---------------------------------------------------------------------------- the page in a browser


@needs_chromium
def test_the_browser_check_sees_a_javascript_error(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>t1</p><script>console.error('boom'); notDefined();</script></body></html>")
    errors = visit(bad, settle=0.2).errors
    assert any("boom" in e for e in errors) and any("notDefined" in e for e in errors)


# ---------------------------------------------------------------------------- contents


def test_report_holds_every_part_and_a_markdown_summary(tmp_path, capsys):
    study = fake_study(tmp_path, "parts", 25)
    assert main(["report", "parts", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    html_path, md_path = tmp_path / "parts" / "report.html", tmp_path / "parts" / "report.md"
    assert f"report: {html_path}" in out and f"summary: {md_path}" in out
    page, summary = html_path.read_text(), md_path.read_text()
    trials, _ = tables(tmp_path, "parts")
    spec = study.read_spec()
    expected = pareto.front(trials, spec.objectives)
    assert table_ids(page) == list(expected["trial_id"])
    assert "parcoords" in page and "scatter3d" in page and "pred_corr (mastery_corr ceiling)" in page
    for part in (
        "Hypervolume over trials",
        "Learning curves of the front",
        "Epoch-level front",
        "Provenance",
        "0123456789abcdef",
        "mastery_lift &gt; 0",
        "copy_corr &lt; 0.9",
        "checkpoint_0000",
        "baseline: running_accuracy",  # the best baseline drawn on the mastery_corr axis
    ):
        assert part in page, part
    assert "best baselines on the same split: auc 0.6800 (running_accuracy), mastery_corr 0.2800" in summary
    # What to pick comes first, in the page and in the summary: the recommendation or its absence.
    [first] = [line for line in recommendation_lines(spec, pareto.load_analysis(study)[1])][:1]
    assert page.index("<h2>What to pick</h2>") < page.index("<h2>Summary</h2>")
    assert html.escape(first) in page and summary.splitlines()[2] == first
    # The NaN trial is listed as excluded, the errored one as not completed.
    assert table_ids(page, "excluded-table") == ["t00023"] and "no value for mastery_corr" in page
    assert table_ids(page, "unfinished-table") == ["t00024"]
    for trial_id in expected["trial_id"]:
        assert f"| {trial_id} |" in summary
    assert len(page) < 10_000_000
    # -o writes elsewhere, the summary next to it.
    assert main(["report", "parts", "--storage", str(tmp_path), "-o", str(tmp_path / "out" / "r.html")]) == 0
    assert (tmp_path / "out" / "r.html").is_file() and (tmp_path / "out" / "r.md").is_file()


def test_pareto_command_formats(tmp_path, capsys):
    fake_study(tmp_path, "fmt", 20)
    trials, epochs = tables(tmp_path, "fmt")
    spec = SweepSpec()
    expected = list(pareto.front(trials, spec.objectives)["trial_id"])
    assert main(["pareto", "fmt", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert terminal_ids(out, "non-dominated trials") == expected
    assert "hypervolume:" in out and "excluded: trial t00018, no value for mastery_corr" in out
    assert main(["pareto", "fmt", "--storage", str(tmp_path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["trial_id"] for r in rows] == expected and all("checkpoint" in r for r in rows)
    assert main(["pareto", "fmt", "--storage", str(tmp_path), "--format", "csv", "--epoch-level"]) == 0
    csv_lines = capsys.readouterr().out.splitlines()
    assert csv_lines[0].startswith("trial_id,epoch,auc,mastery_corr,neg_gain_rate")
    assert len(csv_lines) - 1 == len(pareto.epoch_front(epochs, trials, spec.objectives))
    two = [pareto.Objective("auc", "max"), pareto.Objective("neg_gain_rate", "min")]
    assert (
        main(
            [
                "pareto",
                "fmt",
                "--storage",
                str(tmp_path),
                "--objectives",
                "auc,neg_gain_rate:min",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert [r["trial_id"] for r in json.loads(capsys.readouterr().out)] == list(
        pareto.front(trials, two)["trial_id"]
    )
    assert main(["pareto", "fmt", "--storage", str(tmp_path), "--feasible", "--format", "json"]) == 0
    assert all(r["feasible"] for r in json.loads(capsys.readouterr().out))


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pareto", "missing"], "study 'missing' not found"),
        (["report", "missing"], "study 'missing' not found"),
        (["pareto", "empty"], "has no trials in its store"),
        (["report", "empty"], "has no trials in its store"),
        (["pareto", "some", "--objectives", "auc:max,nope:min"], "unknown metric 'nope'"),
        (["pareto", "some", "--objectives", "acc"], "not an objective of the study"),
        (["pareto", "some", "--objectives", "auc:sideways"], "expected metric:max or metric:min"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    Study(str(tmp_path), "empty").write_spec(SweepSpec(name="empty", storage=str(tmp_path)))
    fake_study(tmp_path, "some", 4)
    assert main([*argv, "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("gainakt-search: error: ")


# ---------------------------------------------------------------------------- a real sweep


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_a_real_sweep_ends_with_a_report_that_agrees_with_the_terminal(tmp_path, capsys):
    assert main(sweep_argv(tmp_path, "reported", 4, 2, "--num-cpus", "2")) == 0
    out = capsys.readouterr().out
    html_path = tmp_path / "reported" / "report.html"
    assert f"report: {html_path}" in out
    printed = terminal_ids(out, "non-dominated trials")
    page = html_path.read_text()
    assert printed and table_ids(page) == printed
    assert main(["pareto", "reported", "--storage", str(tmp_path)]) == 0
    assert terminal_ids(capsys.readouterr().out, "non-dominated trials") == printed
    trials, _ = tables(tmp_path, "reported")
    for row in trials[trials["trial_id"].isin(printed)].itertuples():
        assert row.checkpoint in page  # the front table names each trial's selected checkpoint
    if CHROMIUM is not None:
        assert_opens_cleanly(html_path, printed)


# ---------------------------------------------------------------------------- confirmation


PFA_TEST = {"auc": 0.70, "mastery_corr": 0.31, "neg_gain_rate": 0.0, "faithfulness": 0.1, "copy_corr": 0.6}


def put_confirmation(study: Study, sources: dict[str, tuple[float, float]], seeds: int = 3) -> None:
    """Confirm rows as `confirm` writes them: per source a test AUC and mastery_corr around the pair
    given (its mastery_lift against PFA's), the other figures of the default constraints met; and
    PFA, whose validation figures are a little lower than its test ones."""
    from search.store.segments import Store

    store, rng = Store(study), np.random.default_rng(0)
    for source, (auc, corr) in sources.items():
        for seed in range(1000, 1000 + seeds):
            figures = {"auc": auc + rng.normal(0, 0.002), "mastery_corr": corr + rng.normal(0, 0.002)}
            figures["mastery_lift"] = figures["mastery_corr"] - PFA_TEST["mastery_corr"]
            figures |= {"neg_gain_rate": 0.0, "faithfulness": 0.08, "residual_share": 0.1}
            figures |= {"copy_corr": 0.5, "mastery_saturation": 0.1}
            store.put_confirm(
                {
                    "key": f"{source}-seed{seed}-fold0",
                    "source": source,
                    "seed": seed,
                    "fold": 0,
                    "kind": "trial",
                    "status": "COMPLETED",
                    **{f"{split}.{m}": v for split in ("valid", "test") for m, v in figures.items()},
                }
            )
    store.put_confirm(
        {
            "key": "baseline:pfa-fold0",
            "source": "baseline:pfa",
            "seed": -1,
            "fold": 0,
            "kind": "baseline",
            "status": "COMPLETED",
            **{f"valid.{m}": v - 0.01 if m in ("auc", "mastery_corr") else v for m, v in PFA_TEST.items()},
            **{f"test.{m}": v for m, v in PFA_TEST.items()},
        }
    )


def test_a_confirmed_study_reports_its_test_figures_with_intervals_and_the_robust_front(tmp_path):
    study = fake_study(tmp_path, "confirmed", 12)
    # t00001 beats PFA on every objective, PFA dominates t00002, DKT trades AUC for mastery_corr
    put_confirmation(study, {"t00001": (0.72, 0.35), "t00002": (0.69, 0.2), "dkt": (0.71, 0.2)})
    written = write_report(study)
    page, summary = Path(written.html).read_text(), Path(written.markdown).read_text()
    assert "Confirmation (test split)" in page and 'id="robust-front"' in page and 'id="confirmed"' in page
    assert "error_y" in page or '"error_y"' in page  # the objective pair with its intervals
    assert page.index("Confirmation (test split)") < page.index("Front: objective pairs")
    assert "## Confirmation (test split" in summary and "baseline:pfa" in summary and "dkt" in summary
    # every source with its runs and its interval; the baseline, deterministic, without one
    assert re.search(r"\| t00001 \| 3 \| 0\.7\d{3} \[0\.7\d{3}, 0\.7\d{3}\] \|", summary)
    assert "| baseline:pfa | 1 | 0.7000 | 0.3100 |" in summary
    # the robust front: constraints applied (auc >= PFA's test AUC), PFA and DKT beside the trials
    robust = page[page.index('id="robust-front"') : page.index('id="confirmed"')]
    assert "auc &gt;= best_lookup (0.7000)" in page
    assert ">t00001<" in robust and ">t00002<" not in robust  # a cell of the front table
    assert "t00002 (dominated by pfa)" in robust
    assert "Confirmation" not in Path(write_report(fake_study(tmp_path, "plain", 12)).html).read_text()


# What the page looks like at two widths, measured in its DOM: each parallel-coordinates label as the
# four corners of its (rotated) box, and whether two boxes overlap by the separating-axis test; the
# right edge of the front table against the page's width.
LAYOUT = """(() => {
  const quads = [...document.querySelectorAll('.parcoords text.axis-title')].map(e => {
    const b = e.getBBox(), m = e.getScreenCTM();
    return [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
      .map(([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]);
  });
  const apart = (p, q) => [p, q].some(poly => poly.some((a, i) => {
    const b = poly[(i + 1) % 4], n = [a[1] - b[1], b[0] - a[0]];
    const span = s => s.map(([x, y]) => x * n[0] + y * n[1]);
    const [sp, sq] = [span(p), span(q)];
    const slack = Math.hypot(n[0], n[1]);  // one pixel of touching is not an overlap
    return Math.max(...sp) <= Math.min(...sq) + slack || Math.max(...sq) <= Math.min(...sp) + slack;
  }));
  const overlapping = [];
  quads.forEach((p, i) => quads.forEach((q, j) => { if (i < j && !apart(p, q)) overlapping.push([i, j]); }));
  const table = document.getElementById('front-table').getBoundingClientRect();
  const pageWidth = document.documentElement.clientWidth;
  return {labels: quads.length, overlapping, tableRight: table.right, pageWidth};
})()"""


@needs_chromium
@pytest.mark.parametrize("width", [1000, 1400])
def test_a_confirmed_report_opens_cleanly_its_labels_never_overlap_and_its_front_table_fits(tmp_path, width):
    study = fake_study(tmp_path, "layout", 40)  # 10 parameters and 3 objectives: 13 axes
    put_confirmation(study, {"t00001": (0.72, 0.35), "t00002": (0.69, 0.2)})  # with its confirmation section
    written = Path(write_report(study).html)
    ids = table_ids(written.read_text()) + ["t00001", "t00002"]
    assert ids and "<script src=" not in written.read_text()  # plotly.js is inside the file
    page = assert_opens_cleanly(written, ids, width=width, evaluate=LAYOUT, settle=1.0)
    layout = page.value
    assert layout["labels"] == 13
    assert layout["overlapping"] == []
    assert layout["tableRight"] <= layout["pageWidth"]


@needs_chromium
def test_the_label_check_sees_overlapping_labels(tmp_path):
    """The same measurement on labels drawn flat and crowded into a narrow figure finds overlaps."""
    study = fake_study(tmp_path, "crowded", 40)
    _, analysis = load_analysis(study)
    crowded = drawn.parallel_figure(analysis).update_traces(labelangle=0).update_layout(width=500)
    path = tmp_path / "crowded.html"
    body = crowded.to_html(full_html=False, include_plotlyjs=True)
    path.write_text(f"<html><body>{body}<table id=front-table></table></body></html>")
    layout = visit(path, width=1000, evaluate=LAYOUT).value
    assert layout["labels"] == 13 and len(layout["overlapping"]) > 0


def test_figures_say_directions_use_integer_epochs_and_log_weights(tmp_path):
    study = fake_study(tmp_path, "figs", 30)
    _, analysis = load_analysis(study)
    curves = drawn.learning_curves_figure(analysis)
    assert curves.layout.xaxis.dtick == 1 and curves.layout.xaxis.tickformat == "d"
    assert curves.layout.yaxis.title.text == "validation auc" and curves.layout.yaxis2.title.text
    scene = drawn.front_3d_figure(analysis).layout.scene
    assert scene.xaxis.title.text == "auc ↑ (max)" and scene.zaxis.title.text == "neg_gain_rate ↓ (min)"
    dims = {d.label: d for d in drawn.parallel_figure(analysis).data[0].dimensions}
    for weight in ("sparsity", "monotonicity", "residual"):  # every loss weight on a log axis, 0 at "off"
        assert dims[weight].ticktext[0] == "off" and list(dims[weight].range) == [
            dims[weight].tickvals[0],
            dims[weight].tickvals[-1],
        ]
    # The ceiling marks are drawn before the trials, so the trials' points lie on top of them.
    names = [t.name for t in drawn.pairs_figure(analysis).data]
    assert names.index("pred_corr (mastery_corr ceiling)") < names.index("front, infeasible")


# ---------------------------------------------------------------------------- a large study

BASELINES = {
    "base_rate": {"auc": 0.64, "mastery_corr": 0.22},
    "running_accuracy": {"auc": 0.68, "mastery_corr": 0.28, "mastery_pred_corr": 1.0},
}
PLOT = re.compile(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"displaylogo"', re.S)


def in_memory_study(
    trials: int, epochs: int = 3, missing: int = 0, seed: int = 1
) -> tuple[SweepSpec, pd.DataFrame, pd.DataFrame]:
    """The spec, trial and epoch tables of a study of `trials` completed trials with made-up values
    (the columns benchmarks/fake_study.py writes, built in memory: through the store this size takes minutes);
    the last `missing` trials without a mastery_corr."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"t{i:05d}" for i in range(trials)])
    rows = trials * epochs
    mastery = rng.uniform(-0.1, 0.7, rows)
    epoch_rows = pd.DataFrame(
        {
            "trial_id": np.repeat(ids, epochs),
            "epoch": np.tile(np.arange(1, epochs + 1), trials),
            "auc": rng.uniform(0.6, 0.75, rows),
            "mastery_corr": mastery,
            "pred_corr": np.minimum(mastery + rng.uniform(0.05, 0.3, rows), 1.0),
            "mastery_pred_corr": rng.uniform(0.2, 0.9, rows),
            "copy_corr": rng.uniform(0.0, 1.0, rows),
            "mastery_saturation": rng.uniform(0.0, 0.6, rows),
            "neg_gain_rate": rng.uniform(0.0, 0.3, rows),
            "mastery_lift": rng.uniform(-0.1, 0.1, rows),
            "faithfulness": rng.uniform(0.0, 0.2, rows),
            "residual_share": rng.uniform(0.0, 0.4, rows),
        }
    )
    epoch_rows["checkpoint"] = epoch_rows["trial_id"] + "/checkpoint_" + epoch_rows["epoch"].astype(str)
    best = epoch_rows.loc[epoch_rows.groupby("trial_id")["auc"].idxmax()].reset_index(drop=True)
    table = best.rename(columns={"epoch": "selected_epoch"}).assign(
        number=np.arange(trials), status=TrialStatus.COMPLETED.value, epochs=epochs
    )
    table.loc[trials - missing :, "mastery_corr"] = np.nan
    for weight in ("sparsity", "consistency", "residual"):
        values = 10 ** rng.uniform(-3, 0, trials)
        table[param_column(f"weights.{weight}")] = np.where(rng.random(trials) < 0.7, values, 0.0)
    table[param_column("warmup_epochs")] = rng.integers(0, 4, trials)
    table[param_column("model.gains")] = rng.choice(["linear", "relu"], trials)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    table["started_at"] = start + pd.to_timedelta(10 * np.arange(trials), unit="s")
    table["ended_at"] = table["started_at"] + pd.Timedelta(seconds=epochs + 1)
    spec = SweepSpec(name="large", storage="/nowhere", trials=trials)
    return spec, table, epoch_rows


def analysed(spec: SweepSpec, trials: pd.DataFrame, epochs: pd.DataFrame) -> pareto.Analysis:
    return pareto.analyse(trials, epochs, spec.objectives, spec.constraints, spec.reference, BASELINES)


def page_figures(page: str) -> list[dict]:
    """Every plotly figure of the page, in order, as {"data": traces, "layout": layout}."""
    return [{"data": json.loads(m[1]), "layout": json.loads(m[2])} for m in PLOT.finditer(page)]


def array(value: object) -> np.ndarray:
    """A trace's array as plotly.js reads it: a list, or base64 bytes of a dtype."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def figure_with(figures: list[dict], test) -> dict:
    (found,) = [f for f in figures if any(test(t) for t in f["data"])]
    return found


def test_a_large_studys_report_stays_small_and_says_what_it_samples():
    trials_count, missing = 4_000, 150
    spec, trials, epochs = in_memory_study(trials_count, missing=missing)
    analysis = analysed(spec, trials, epochs)
    front = list(pareto.front(trials, spec.objectives)["trial_id"])
    usable = pareto.usable(trials, spec.objectives)
    others = len(usable) - len(front)
    assert len(usable) > drawn.WEBGL_ABOVE and others > drawn.SAMPLE_OFF_FRONT and missing > MAX_LISTED
    page = render_html(spec, analysis)

    # At this many bytes a trial past plotly.js, 10,000 trials fit in 10 MB (the sampled charts are a
    # fixed size, so the rate only falls with more trials); embedding every hover text and line takes
    # about 1,300.
    plotly_js = len(get_plotlyjs().encode())
    per_trial = (len(page.encode()) - plotly_js) / trials_count
    assert per_trial < (10_000_000 - plotly_js) / 10_000, per_trial

    figures = page_figures(page)
    # Parallel coordinates: the front and the sample, and a caption that says so.
    (parcoords,) = figure_with(figures, lambda t: t["type"] == "parcoords")["data"]
    lines = {len(array(d["values"])) for d in parcoords["dimensions"]}
    assert lines == {len(front) + drawn.SAMPLE_OFF_FRONT}
    auc = next(d for d in parcoords["dimensions"] if d["label"].startswith("auc"))
    assert set(usable.loc[usable["trial_id"].isin(front), "auc"]) <= set(array(auc["values"]))
    caption = (
        f"Showing the {len(front):,} front trials and a random sample (fixed seed) of "
        f"{drawn.SAMPLE_OFF_FRONT:,} of the {others:,} others"
    )
    assert page.count(caption) == 2  # the parallel coordinates and the 3-D chart
    # 3-D: the front and the same sample.
    scene = figure_with(figures, lambda t: t["type"] == "scatter3d")["data"]
    assert sum(len(array(t["x"])) for t in scene) == len(front) + drawn.SAMPLE_OFF_FRONT
    # The pairs: every usable trial, in WebGL; off the front a hover of its trial id alone.
    pairs = figure_with(figures, lambda t: "ceiling" in t.get("name", ""))["data"]
    first = [
        t
        for t in pairs
        if t.get("xaxis", "x") == "x" and t.get("name", "").startswith(("front", "dominated"))
    ]
    assert {t["type"] for t in pairs} == {"scattergl"}
    assert sum(len(array(t["x"])) for t in first) == len(usable)
    assert f"Every one of the {len(usable):,} usable trials, drawn in WebGL" in page
    off_front = [t for t in first if t["name"].startswith("dominated")]
    assert all(len(text) <= len("t00000") for t in off_front for text in t["text"])
    assert all(len(t["hovertemplate"]) < 100 for t in off_front)
    # Learning curves of the front's trials only, every one of them.
    curves = figure_with(figures, lambda t: t.get("name", "").endswith("pred_corr"))["data"]
    assert {t["legendgroup"] for t in curves} == set(front)
    # Tables: exactly the front; the excluded trials cut to MAX_LISTED rows, with their count.
    assert table_ids(page) == front
    assert len(table_ids(page, "excluded-table")) == MAX_LISTED
    assert f"the first {MAX_LISTED} of {missing}" in page
    # The summary's counts are of every trial.
    assert f"front: {len(front)} of {len(usable)} usable trials" in page
    assert f"excluded for a missing objective: {missing}" in page
    assert f"a fixed-seed sample of 2,000 of the {len(usable):,} completed trials" in page


def test_a_large_studys_hypervolume_is_drawn_at_its_steps_the_same_line():
    spec, trials, epochs = in_memory_study(3_000)
    analysis = analysed(spec, trials, epochs)
    figure = drawn.hypervolume_figure(analysis)
    history = analysis.history
    for trace, column in zip(figure.data, ("hypervolume", "feasible_hypervolume")):
        x, y = np.asarray(trace.x), np.asarray(trace.y)
        assert len(x) < len(history) / 10 and x[0] == 1 and x[-1] == len(history)
        # A step line holds each point's value until the next: read back at every trial, it is the history.
        at_every_trial = y[np.searchsorted(x, np.arange(1, len(history) + 1), side="right") - 1]
        np.testing.assert_array_equal(at_every_trial, history[column].to_numpy())
        assert list(trace.text) == [f"trial {t}" for t in history["trial_id"].to_numpy()[x - 1]]


def test_the_sample_is_fixed_by_the_trials_not_their_order_and_the_curves_need_only_the_fronts_epochs():
    spec, trials, epochs = in_memory_study(3_000)
    analysis = analysed(spec, trials, epochs)
    shown = drawn.shown_candidates(analysis)
    front = set(analysis.front["trial_id"])
    assert front <= set(shown["trial_id"]) and len(shown) == len(front) + drawn.SAMPLE_OFF_FRONT
    assert shown["trial_id"].tolist() == drawn.shown_candidates(analysis)["trial_id"].tolist()
    shuffled = analysed(spec, trials.sample(frac=1.0, random_state=5), epochs)
    assert set(drawn.shown_candidates(shuffled)["trial_id"]) == set(shown["trial_id"])
    # Analysis.epochs may hold the front's epoch rows alone: the same curves.
    only_front = dataclasses.replace(analysis, epochs=epochs[epochs["trial_id"].isin(front)])
    assert drawn.learning_curves_figure(only_front) == drawn.learning_curves_figure(analysis)


def test_a_small_study_is_drawn_in_full_without_webgl_or_samples():
    spec, trials, epochs = in_memory_study(300, missing=3)
    analysis = analysed(spec, trials, epochs)
    page = render_html(spec, analysis)
    kinds = {t["type"] for figure in page_figures(page) for t in figure["data"]}
    assert "scatter" in kinds and "scattergl" not in kinds
    body = page[page.index("<body>") :]  # past plotly.js
    assert "random sample" not in body and "Listed:" not in body and "fixed-seed sample" not in body
    assert len(drawn.shown_candidates(analysis)) == len(analysis.candidates)
    pairs = drawn.pairs_figure(analysis)
    hovers = [t for t in pairs.data if t.name and t.name.startswith("dominated")]
    assert hovers and all(t.hoverinfo == "text" and "<br>" in t.text[0] for t in hovers)


def test_a_figure_of_an_untrained_part_is_marked_so_in_the_page_and_the_summary(tmp_path):
    from search.report.html import html_table
    from search.report.markdown import markdown_table

    frame = pd.DataFrame(
        {
            "trial_id": ["t1", "t2"],
            "neg_gain_rate": [0.31, 0.0],
            "gain_corr": [0.02, 0.4],
            "guaranteed": ["faithfulness", "neg_gain_rate"],
            "untrained": ["gain_corr,neg_gain_rate,gain_recovery", ""],
        }
    )
    page = html_table(frame, ["trial_id", "neg_gain_rate", "gain_corr"], "t")
    first, second = page.split('data-trial-id="t2"')
    assert first.count("(untrained)") == 2 and "(by construction)" not in first
    assert "(untrained)" not in second and second.count("(by construction)") == 1
    table = markdown_table(frame, ["trial_id", "neg_gain_rate", "gain_corr"])
    assert "| t1 | 0.3100 (untrained) | 0.0200 (untrained) |" in table
    assert "| t2 | 0.0000 (by construction) | 0.4000 |" in table
