"""`confirm`: a small real sweep's trials re-trained with new seeds on a real local Ray, their rows in
the confirm table, the robust front, a SIGKILL and the continuation, and bad input."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, connected
from study_helpers import fake_study
from sweep_helpers import kill_group, sweep_argv

from gainakt.errors import ConfigError
from search.cli import main
from search.run.confirm import CONFIRM_SEED
from search.store.segments import Store
from search.store.study import Study


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_head) -> Path:
    """A finished three-trial sweep of three epochs each on the simulator (which has a test split),
    run on the session's Ray."""
    storage = tmp_path_factory.mktemp("confirm")
    connected(ray_head)
    assert main(sweep_argv(storage, "src", 3, 3)) == 0
    return storage


def _confirm_argv(storage: Path, *extra: str) -> list[str]:
    return ["confirm", "src", "--storage", str(storage), "--num-cpus", "2", "--concurrent", "2", *extra]


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")  # the session's Ray for the in-process runs
def test_confirm_stores_a_row_per_trial_seed_and_fold_and_prints_the_robust_front(swept, capsys):
    store = Store(Study(str(swept), "src"))
    swept_trials = store.trials().sort_values("selected_epoch", kind="stable")
    trial, selected = str(swept_trials["trial_id"].iloc[0]), int(swept_trials["selected_epoch"].iloc[0])
    argv = _confirm_argv(swept, "--trials", trial, "--seeds", "2", "--folds", "0,1", "--bootstrap", "3")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "student bootstrap on the test split" in out  # the variation between students, per run
    assert "robust front on the test split" in out and "lookups on the same test split" in out
    assert "constraints on the means: auc >= best_lookup (0." in out  # the lookups of the test split
    table = store.confirm()
    every = table[table["kind"] == "trial"]
    runs = every[every["source"] == trial]
    pairs = [(s, f) for s in (CONFIRM_SEED, CONFIRM_SEED + 1) for f in (0, 1)]
    assert sorted(zip(runs["seed"], runs["fold"])) == pairs
    assert set(every["source"]) == {trial, "dkt"} and not table["key"].duplicated().any()
    dkt = every[every["source"] == "dkt"]  # the standard model on the same seeds and folds
    assert sorted(zip(dkt["seed"], dkt["fold"])) == pairs and (dkt["param.model.kind"] == "dkt").all()
    assert set(runs["status"]) == {"COMPLETED"}
    # No epoch chosen on the reported folds: each run trains the epochs its trial selected on the
    # sweep's fold, never stops early, and is scored at its last epoch; DKT trains the study's 3.
    assert (runs["epochs_run"] == selected).all() and (runs["selected_epoch"] == selected).all()
    assert (dkt["epochs_run"] == 3).all() and (dkt["selected_epoch"] == 3).all()
    for column in ("valid.auc", "test.auc", "valid.mastery_lift", "test.mastery_recovery_within"):
        assert runs[column].map(math.isfinite).all(), column
    assert runs["test.auc"].nunique() == 4  # other seeds and folds: other models
    low, high = runs["test.auc.student_low"], runs["test.auc.student_high"]
    assert (0 < low).all() and (low < high).all() and (high < 1).all()  # a real interval per run
    lookups = table[table["kind"] == "baseline"]
    assert len(lookups) == 4 * 2 and set(lookups["fold"]) == {0, 1}  # four lookups on each fold
    # the settings are the trial's own, as its space gave them
    row = store.trials().set_index("trial_id").loc[trial]
    own = [c for c in runs.columns if c.startswith("param.") and runs[c].notna().any()]
    assert own and set(own) <= set(row.index)
    for column in own:
        assert (runs[column] == row[column]).all(), column
    assert main(["pareto", "src", "--storage", str(swept), "--confirmed"]) == 0
    assert trial in capsys.readouterr().out


@pytest.mark.slow
def test_a_killed_confirmation_continues_with_no_duplicate_and_no_missing_row(swept, shared_ray):
    store = Store(Study(str(swept), "src"))
    trial = str(store.trials()["trial_id"].iloc[-1])
    argv = ["confirm", "src", "--storage", str(swept), "--address", shared_ray, "--concurrent", "1"]
    argv += ["--trials", trial, "--seeds", "3", "--folds", "1", "--no-dkt"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "search.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        start_new_session=True,
        env=dict(os.environ),
    )
    folder = Path(Study(str(swept), "src").confirm_dir)
    mine = lambda: sorted(folder.glob(f"{trial}-seed*.parquet"))  # noqa: E731
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and driver.poll() is None and not mine():
            time.sleep(0.2)
        assert driver.poll() is None and mine(), "the confirmation ended before it could be interrupted"
        before = {path.name: path.read_bytes() for path in mine()}
    finally:
        kill_group(driver.pid)
        driver.wait()
    assert driver.returncode == -signal.SIGKILL
    assert len(before) < 3
    assert main(_confirm_argv(swept, "--trials", trial, "--seeds", "3", "--folds", "1", "--no-dkt")) == 0
    runs = store.confirm()
    runs = runs[runs["source"] == trial]
    assert sorted(runs["seed"]) == [CONFIRM_SEED, CONFIRM_SEED + 1, CONFIRM_SEED + 2]
    assert not runs["key"].duplicated().any() and set(runs["status"]) == {"COMPLETED"}
    for name, data in before.items():  # runs stored before the kill were not trained again
        assert (folder / name).read_bytes() == data


def test_bad_confirm_input_is_one_line_and_exit_2(tmp_path, capsys):
    fake_study(tmp_path, "fake", 6)
    cases = [
        (["ghost"], "study 'ghost' not found"),
        (["fake", "--trials", "t99999"], "--trials t99999: not a completed trial"),
        (["fake", "--seeds", "0"], "--seeds must be at least 1"),
        (["fake", "--folds", "7"], "--folds 7"),
        (["fake", "--bootstrap", "1"], "--bootstrap 1: give 0 (none) or at least 2 resamples"),
    ]
    for args, phrase in cases:
        assert main(["confirm", *args[:1], "--storage", str(tmp_path), *args[1:]]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and phrase in err, (args, err)
    assert not Path(Study(str(tmp_path), "fake").confirm_dir).exists()


def test_confirming_the_front_trains_its_trials_not_the_lookups_that_stand_on_it(tmp_path):
    from search.analysis.pareto import load_analysis
    from search.run.confirm import source_trials

    study = fake_study(tmp_path, "beaten", 6)
    lookups = {"pfa": {"auc": 0.99, "mastery_corr": 0.99, "neg_gain_rate": 0.0}}  # beats every trial
    study.write_baselines(lookups)
    front = list(load_analysis(study, epochs=False)[1].front["trial_id"])
    assert front == ["baseline:pfa"]
    with pytest.raises(ConfigError, match="no trial of study .beaten. qualifies"):
        source_trials(study, ["front"])
    study.write_baselines({"pfa": {**lookups["pfa"], "auc": 0.5}})  # now a trade-off: trials on it too
    chosen = source_trials(study, ["front"])
    assert chosen and not any(t.startswith("baseline:") for t in chosen)


@pytest.mark.slow
def test_a_confirmation_plans_folds_the_sweep_did_not_select_on_and_the_epochs_it_selected(swept):
    from search.run.confirm import plan_confirmation

    study = Study(str(swept), "src")  # swept on fold 0 of simulated data with 5 folds, 3 epochs
    selected = Store(study).trials().set_index("trial_id")["selected_epoch"]
    plan = plan_confirmation(study, list(selected.index), seeds=1, folds=None, split="test")
    assert sorted({run.fold for run in plan.runs}) == [1, 2]
    assert {run.source: run.epochs for run in plan.runs} == {**selected.astype(int).to_dict(), "dkt": 3}
