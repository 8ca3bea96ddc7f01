"""One home for every shared name: the schema modules define them, every other module reads them."""

from __future__ import annotations

import ast
from dataclasses import fields

import pytest
from conftest import REPO

from gainakt import schema
from gainakt.presets import PRESETS
from gainakt.schema import LOSS_NAMES, EvalMetrics, LossWeights, improves, loss_shares, select_epoch
from gainakt.train import make_config
from search.schema import FIXED, PARAM, VIOLATION, TrialStatus, short_label

PACKAGES = ("gainakt", "spaces", "search", "benchmarks")


def string_literals(exempt: set[str]) -> list[tuple[str, int, str]]:
    """(file, line, text) of every string constant in the packages, outside the exempt files."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative in exempt:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.append((relative, node.lineno, node.value))
    return found


def test_loss_names_are_written_only_where_losses_are_defined_and_computed():
    # losses.py computes each loss under its name, guarantees.py names the losses a model makes zero
    # (gainakt_tests/test_guarantees.py checks they are losses) and presets.py sets weights as a settings
    # file would (checked below); every other module derives the names from LossWeights.
    exempt = {"gainakt/schema.py", "gainakt/losses.py", "gainakt/guarantees.py", "gainakt/presets.py"}
    stray = [hit for hit in string_literals(exempt) if hit[2] in LOSS_NAMES]
    assert not stray, f"loss names written outside gainakt/schema.py: {stray}"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_a_valid_training_config(preset):
    config = make_config(preset, out="unused")
    for section, values in PRESETS[preset].items():
        if isinstance(values, dict):
            assert {k: getattr(getattr(config, section), k) for k in values} == values
        else:
            assert getattr(config, section) == values


def test_trial_statuses_and_column_prefixes_are_written_only_in_the_study_schema():
    names = {s.value for s in TrialStatus} | {PARAM, FIXED, VIOLATION}
    stray = [hit for hit in string_literals({"search/schema.py"}) if hit[2] in names]
    assert not stray, f"statuses or column prefixes written outside search/schema.py: {stray}"


def test_metric_names_and_directions_come_from_eval_metrics():
    assert set(schema.METRICS) == {
        schema.epoch_name(f.name) for f in fields(EvalMetrics) if f.name != "positions"
    } | {schema.TRAIN_LOSS}
    assert schema.METRIC_DIRECTIONS["auc"] == "max" and schema.METRIC_DIRECTIONS["neg_gain_rate"] == "min"
    assert schema.METRIC_DIRECTIONS["val_loss"] == "min" and "loss" not in schema.METRICS
    assert set(schema.MONITOR_METRICS) <= {f.name for f in fields(EvalMetrics)}
    assert LOSS_NAMES == tuple(name for name, _ in LossWeights().items())


def test_the_best_epoch_is_the_earliest_of_the_highest_auc_and_never_nan():
    rows = [
        {"epoch": 1, "auc": float("nan")},
        {"epoch": 2, "auc": 0.7},
        {"epoch": 3, "auc": 0.72},
        {"epoch": 4, "auc": 0.72},
        {"epoch": 5, "auc": float("nan")},
    ]
    assert select_epoch(rows)["epoch"] == 3
    assert select_epoch(rows[:1])["epoch"] == 1  # nothing better than NaN: the first row
    assert improves(0.5, float("-inf")) and improves(0.5, float("nan")) and not improves(float("nan"), 0.1)
    with pytest.raises(ValueError):
        select_epoch([])


def test_loss_shares_are_non_negative_and_sum_to_one():
    shares = loss_shares({"bce": 0.6, "sparsity": 0.3, "consistency": 0.1})
    assert shares == pytest.approx({"bce": 0.6, "sparsity": 0.3, "consistency": 0.1})
    assert loss_shares({"bce": 0.0, "sparsity": 0.0}) == {"bce": 1.0, "sparsity": 0.0}


def test_short_labels_drop_prefixes_and_setting_sections():
    assert short_label("param.weights.sparsity") == "sparsity"
    assert short_label("param.model.gains") == "gains"
    assert short_label("fixed.epochs") == "epochs"
    assert short_label("auc") == "auc"
    assert TrialStatus("ERROR").ended and not TrialStatus("ERROR").settled
    assert TrialStatus("LOST").settled and not TrialStatus("LOST").ended


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_a_metric_added_to_the_schema_alone_reaches_the_trial_table_pareto_and_report(
    tmp_path, monkeypatch, capsys
):
    """`interactions_per_s` is in every epoch row but is no metric of the schema: adding it there
    (and nowhere else) makes it an objective the sweep stores, `pareto --format json` prints and
    the report shows."""
    import json

    from sweep_helpers import sweep_argv, tables

    from search.cli import main

    extra = ["--objective", "auc:max", "--objective", "interactions_per_s:max", "--no-constraints"]
    assert main(sweep_argv(tmp_path, "before", 2, 1, *extra)) == 2
    assert "unknown metric 'interactions_per_s'" in capsys.readouterr().err

    monkeypatch.setattr(
        schema, "METRIC_DIRECTIONS", {**schema.METRIC_DIRECTIONS, "interactions_per_s": "max"}
    )
    monkeypatch.setattr(schema, "METRICS", (*schema.METRICS, "interactions_per_s"))
    assert main(sweep_argv(tmp_path, "after", 2, 1, *extra)) == 0
    trials, _ = tables(tmp_path, "after")
    assert (trials["interactions_per_s"] > 0).all()
    capsys.readouterr()
    assert main(["pareto", "after", "--storage", str(tmp_path), "--format", "json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front and all(row["interactions_per_s"] > 0 for row in front)
    assert "interactions_per_s" in (tmp_path / "after" / "report.html").read_text()
