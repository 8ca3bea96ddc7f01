"""Resampling students (`Observations.resample`) and the student-level bootstrap of `eval --bootstrap`."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from gainakt.baselines import baseline_observations
from gainakt.batching import BatchPlan
from gainakt.bootstrap import bootstrap_intervals
from gainakt.data import load_dataset
from gainakt.evaluate import Observations, eval_metrics, observe
from gainakt.schema import EvalMetrics
from gainakt.train import make_config, train
from search.cli import main

DATA = "synthetic:students=1000,concepts=10,seed=4"
SETTINGS = [
    "model.d_model=16",
    "model.heads=2",
    "model.d_ff=32",
    "model.head=mastery",
    "model.mastery=direct",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A model trained for one epoch: fixed weights to evaluate."""
    out = tmp_path_factory.mktemp("boot") / "run"
    config = make_config(assignments=SETTINGS, data=DATA, out=str(out), epochs=1, threads=1)
    train(config)
    return out


@pytest.fixture(scope="module")
def observed(run: Path) -> tuple[Observations, dict[str, Observations]]:
    from gainakt.run_folder import load_run

    model, config, _ = load_run(run)
    dataset = load_dataset(DATA)
    train, valid = dataset.split(config.fold)
    return observe(model, BatchPlan(valid, 128, shuffle=False)), baseline_observations(train, valid, 10)


def test_drawing_every_student_once_changes_no_metric(observed) -> None:
    model, _ = observed
    students = np.unique(model.student)
    again = eval_metrics(model.resample(students[::-1]))  # the order of the draws does not matter
    whole = eval_metrics(model)
    for f in fields(EvalMetrics):
        a, b = getattr(again, f.name), getattr(whole, f.name)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9), f.name


def test_a_student_drawn_twice_counts_as_two(observed) -> None:
    model, _ = observed
    student = int(model.student[0])
    own = model.student == student
    twice = model.resample(np.array([student, student]))
    assert twice.prob.size == 2 * own.sum()
    np.testing.assert_array_equal(np.sort(twice.prob), np.sort(np.tile(model.prob[own], 2)))
    windows = np.unique(model.window[own])
    assert twice.mastery_before.size == 2 * np.isin(model.pair_window, windows).sum()
    assert set(twice.student.tolist()) == {0, 1}  # two copies, renumbered apart
    assert twice.gain_entries.sum() == 2 * model.gain_entries[own].sum()


def test_intervals_contain_the_estimate_and_shrink_with_more_students(observed) -> None:
    model, lookups = observed
    students = np.unique(model.student)
    few = students[: students.size // 4]
    whole = eval_metrics(model, max(eval_metrics(o).mastery_corr for o in lookups.values()))
    wide = bootstrap_intervals(model.resample(few), {k: o.resample(few) for k, o in lookups.items()}, 60)
    narrow = bootstrap_intervals(model, lookups, 60)
    for name in ("auc", "mastery_corr", "mastery_lift", "mastery_recovery_within", "faithfulness"):
        value = getattr(whole, name)
        assert value in narrow[name], (name, value, narrow[name])
        width = lambda i: i.high - i.low  # noqa: E731
        assert 0 < width(narrow[name]) < width(wide[name]), name


def test_eval_bootstrap_prints_and_stores_an_interval_per_metric(run: Path, capsys) -> None:
    assert main(["eval", str(run), "--json", "--bootstrap", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bootstrap"] == 20
    for name in ("auc", "mastery_corr", "mastery_lift"):
        low, high = out["intervals"][name]
        assert low <= out[name] <= high, name
    assert main(["eval", str(run), "--bootstrap", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--bootstrap 1" in err
