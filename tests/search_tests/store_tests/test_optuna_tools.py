"""A study's Optuna journal as Optuna's own tools see it: names, trial ids, curves, constraints, the
dashboard. The searcher is driven as Tune drives it (suggest, results, completion), on a real journal."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest
from local_server import local_server
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.visualization import plot_pareto_front

from search.run.searcher import StudySearcher, TrialSpace
from search.spec import Constraint

METRICS = ["auc", "mastery_lift"]
CONSTRAINT = Constraint.parse("copy_corr < 0.9")


def _finished_study(where: Path) -> tuple[str, dict[str, dict]]:
    """Three trials of two epochs: a feasible one, an infeasible one (copy_corr 0.95) with the best
    values, and one that errored. Returns the journal and what each Tune trial reported."""
    journal = str(where / "optuna.journal")
    searcher = StudySearcher(
        space=TrialSpace("aux_weights", 0),
        metric=METRICS,
        mode=["max", "max"],
        study_name="tools",
        storage=JournalStorage(JournalFileBackend(journal)),
        constraints=(CONSTRAINT,),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    outcomes = {"feasib1e": (0.70, 0.02, 0.5), "copying": (0.74, 0.05, 0.95), "broken0": None}
    reported: dict[str, dict] = {}
    for trial_id, outcome in outcomes.items():
        assert isinstance(searcher.suggest(trial_id), dict)
        if outcome is None:
            searcher.on_trial_complete(trial_id, error=True)
            continue
        auc, lift, copy = outcome
        for epoch in (1, 2):
            result = {
                "epoch_row": {
                    "epoch": epoch,
                    "auc": auc - 0.01 * (2 - epoch),
                    "mastery_lift": lift * epoch / 2,
                },
                "selected_epoch": epoch,
                "auc": auc,
                "mastery_lift": lift,
                "copy_corr": copy,
                "done": epoch == 2,
            }
            searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result=result)
        reported[trial_id] = result
    return journal, reported


def test_the_journal_names_objectives_ties_trials_to_tune_and_keeps_curves_and_constraints(tmp_path):
    journal, reported = _finished_study(tmp_path)
    study = optuna.load_study(study_name="tools", storage=JournalStorage(JournalFileBackend(journal)))
    assert study.metric_names == METRICS
    by_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert set(by_id) == {"feasib1e", "copying", "broken0"}
    assert {k: t.user_attrs["status"] for k, t in by_id.items()} == {
        "feasib1e": "COMPLETED",
        "copying": "COMPLETED",
        "broken0": "ERROR",
    }
    feasible = by_id["feasib1e"]
    assert feasible.user_attrs["selected_epoch"] == 2 and feasible.user_attrs["feasible"] is True
    assert by_id["copying"].user_attrs["feasible"] is False
    curve = feasible.user_attrs["epoch_values"]
    assert curve == {
        "1": {"auc": pytest.approx(0.69), "mastery_lift": 0.01},
        "2": {"auc": 0.70, "mastery_lift": 0.02},
    }
    # Optuna's best trials honour the stored constraints: the infeasible trial dominates, yet is out.
    assert by_id["copying"].constraints == {str(CONSTRAINT): pytest.approx(0.05)}
    assert [t.number for t in study.best_trials] == [feasible.number]
    # And Optuna's Pareto plot greys it out as infeasible, from the stored constraints alone.
    figure = plot_pareto_front(study)
    infeasible = [t for t in figure.data if "Infeasible Trial" in (t.hovertemplate or "")]
    assert len(infeasible) == 1 and len(infeasible[0].x) == 1 and infeasible[0].x[0] == pytest.approx(0.74)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  (a local test server)
        return json.loads(response.read())


def test_optuna_dashboard_shows_the_objective_names_and_the_tune_trial_ids(tmp_path):
    journal, _ = _finished_study(tmp_path)
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    if not dashboard.exists():
        pytest.skip(f"optuna-dashboard is not installed next to {sys.executable} (the test extra has it)")

    def argv(port: int) -> list[str]:
        return [str(dashboard), journal, "--host", "127.0.0.1", "--port", str(port), "--quiet"]

    with local_server(argv, "/api/studies") as port:
        studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        (entry,) = studies
        assert entry["study_name"] == "tools"
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{entry['study_id']}")
        assert detail["objective_names"] == METRICS
        ids = {
            attr["value"]
            for trial in detail["trials"]
            for attr in trial["user_attrs"]
            if attr["key"] == "tune_trial_id"
        }
        assert ids == {"feasib1e", "copying", "broken0"}
        copying = next(
            t for t in detail["trials"] if {"key": "tune_trial_id", "value": "copying"} in t["user_attrs"]
        )
        # The dashboard reads only the constraint list of Optuna before 5: feasibility is an attribute.
        assert {"key": "feasible", "value": "False"} in copying["user_attrs"]
