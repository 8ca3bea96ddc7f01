"""Real local Ray sweeps on the simulator: the store, the Optuna study, failures, resume, clusters."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler
from replay import Feed, trial_result
from store_helpers import Cut, Killed
from sweep_helpers import (
    TINY_DATA,
    TINY_TRAIN,
    interrupt_when,
    most_at_once,
    optuna_trials,
    sweep_argv,
    tables,
    wandb_run_record,
)

from gainakt.guarantees import guarantees, untrained_metrics
from search.cli import main
from search.spec import SweepSpec
from search.store.segments import Store
from search.store.study import Study

# Real local Ray clusters: run by .ci/run, skipped by `pytest -m "not slow"`; the in-process sweeps
# share one local Ray (the GPU-scheduling test, last, stops it to use a cluster of its own; the CUDA
# test is in test_gpu.py, with a Ray of the CPUs it asks for).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray")]

OBJECTIVES = ["auc", "mastery_corr", "neg_gain_rate"]


START = {"use_sparsity": False, "model.gains": "softplus", "warmup_epochs": 2}


def test_sweep_fills_the_store_and_the_optuna_study(tmp_path, capsys):
    spec = tmp_path / "start.toml"
    spec.write_text('[[start]]\nuse_sparsity = false\n"model.gains" = "softplus"\nwarmup_epochs = 2\n')
    # --num-cpus 4 beside the connected Ray of 2: used as it is, and said
    assert main(sweep_argv(tmp_path, "basic", 6, 2, "--num-cpus", "4", str(spec))) == 0
    out, err = capsys.readouterr()
    assert "--num-cpus 4: this process is already connected to a Ray of 2 CPUs" in err
    assert "at most 2 trials at once at 1 CPU each" in err
    assert "non-dominated trials" in out and str(tmp_path / "basic") in out
    progress = [line for line in out.splitlines() if line.startswith("progress: ")]
    assert len(progress) == 6 and progress[0].startswith("progress: 1 of 6 trials ended (0 failed)")
    assert progress[-1].startswith("progress: 6 of 6 trials ended (0 failed), 0 running")
    assert not (tmp_path / "basic" / "wandb").exists()  # W&B off: not even its folder

    trials, epochs = tables(tmp_path, "basic")
    assert len(trials) == 6 and set(trials["status"]) == {"COMPLETED"}
    assert len(epochs) == 6 * 2
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert trials[OBJECTIVES].notna().all().all()

    studied = {t.number: t for t in optuna_trials(tmp_path, "basic")}
    assert len(studied) == 6 and all(t.state == TrialState.COMPLETE for t in studied.values())
    # The start point ran first, with its values and the rest sampled.
    assert {k: studied[0].params[k] for k in START} == START and "use_consistency" in studied[0].params
    first = trials[trials["number"] == 0].iloc[0]
    assert first["param.model.gains"] == "softplus" and first["param.weights.sparsity"] == 0.0
    for row in trials.to_dict("records"):
        ot = studied[row["number"]]
        assert ot.values == pytest.approx([row[m] for m in OBJECTIVES])
        # The stored parameters are the ones the trial trained with (the config inside its checkpoint) ...
        trained = torch.load(Path(row["checkpoint"]) / "best.pt", weights_only=False)["config"]
        for column, value in row.items():
            if column.startswith("param."):
                section, _, key = column.removeprefix("param.").rpartition(".")
                assert (trained[section][key] if section else trained[key]) == value, column
        # ... and the ones Optuna sampled for it.
        for name, value in ot.params.items():
            if f"param.{name}" in row:
                assert row[f"param.{name}"] == value
        assert trained["seed"] == row["seed"]
        # What no loss of its setting trains: nothing, since the default objectives judge the gains.
        model, weights = trained["model"], trained["weights"]
        modes = (model["attention"], model["mastery"], model["head"], model["gains"])
        assert row["untrained"] == ",".join(
            untrained_metrics(*modes, [n for n, w in weights.items() if w > 0])
        )
        assert row["untrained"] == "" and row["guaranteed"] == ",".join(
            g.metric for g in guarantees(model["gains"], model["mastery"], model["head"])
        )
        # The Optuna trial says which Tune trial it is, how it ended and its curve (optuna-dashboard).
        assert ot.user_attrs["tune_trial_id"] == row["trial_id"] and ot.user_attrs["status"] == "COMPLETED"
        assert ot.user_attrs["selected_epoch"] == row["selected_epoch"]
        assert sorted(ot.user_attrs["epoch_values"]) == ["1", "2"]
        # The trial reports the epoch it would deploy: its best validation AUC.
        own = epochs[epochs["trial_id"] == row["trial_id"]]
        assert row["auc"] == own["auc"].max()
        assert row["selected_epoch"] == int(own.loc[own["auc"].idxmax(), "epoch"])
    # The Ray Tune lines of docs/study-folder.md open the study's tune/ folder and find the store's trials.
    readme = (REPO / "docs" / "study-folder.md").read_text()
    block = readme.split("<!-- tune-readers -->\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "quickstart").symlink_to(tmp_path / "basic")
    names: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path.parent)
    try:
        exec(compile(block.replace("runs/", f"{tmp_path.name}/"), "docs/study-folder.md", "exec"), names)
    finally:
        os.chdir(cwd)
    assert {t.trial_id for t in names["analysis"].trials} == set(trials["trial_id"])
    assert len(names["grid"]) == 6
    assert Path(names["best"].path).name == trials.loc[trials["auc"].idxmax(), "trial_id"]


NAN_SPACE = """
from spaces.aux_weights import aux_weights

def space(trial):
    settings = aux_weights(trial)
    if trial.number == 1:
        settings["lr"] = 1e30  # the loss is NaN by the second step
    return settings
"""


def test_a_failing_trial_is_stored_as_error_and_the_rest_complete(tmp_path, capsys, monkeypatch):
    (tmp_path / "nan_space.py").write_text(NAN_SPACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = sweep_argv(tmp_path, "failing", 3, 1, "--space", "nan_space:space", "--num-cpus", "2")
    assert main(argv) == 1
    out, err = capsys.readouterr()
    trials, _ = tables(tmp_path, "failing")
    failed = trials[trials["status"] == "ERROR"]
    assert len(failed) == 1 and failed["number"].item() == 1
    assert "loss is nan" in failed["error"].item()
    # Retried once (it had no checkpoint: from the start), it fails the same way; the run says so last.
    assert f"trial {failed['trial_id'].item()} failed: FloatingPointError: loss is nan" in out
    assert "; retry 1 of 1: it starts again" in out
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "gainakt-search: 1 of 3 trials failed; the first error: FloatingPointError: loss is nan"
    )
    # docs/study-folder.md's line reads a store with an errored trial (a null error beside text stopped it).
    assert len(pd.read_parquet(tmp_path / "failing" / "store" / "trials")) == 3
    assert (trials["status"] == "COMPLETED").sum() == 2
    assert "1 error" in out and f"trial {failed['trial_id'].item()} failed: " in out
    states = {t.number: t.state for t in optuna_trials(tmp_path, "failing")}
    assert states[1] == TrialState.FAIL and states[0] == states[2] == TrialState.COMPLETE


STALLED_SPACE = """
from spaces.aux_weights import aux_weights

def space(trial):
    settings = aux_weights(trial)
    if trial.number > 0:
        settings["lr"] = 1e-9  # learns nothing: the same figures at every epoch
    return settings
"""


def replayed_stops(epochs: pd.DataFrame, spec: SweepSpec, max_epochs: int) -> dict[str, int]:
    """The stops the replay (`benchmarks/replay.py`) decides, fed the store's epoch rows in the order
    the driver heard them: trial -> the epoch it was stopped at."""
    feed, heard, stops = Feed("mo-asha", spec, max_epochs), {}, {}
    for row in epochs.sort_values(["reported_at", "epoch"], kind="stable").to_dict("records"):
        if row["trial_id"] not in heard:
            feed.add(row["trial_id"])
        rows = heard.setdefault(row["trial_id"], [])
        rows.append(row)
        if feed.decide(row["trial_id"], trial_result(rows)) == TrialScheduler.STOP:
            stops.setdefault(row["trial_id"], int(row["epoch"]))
    return stops


# The driver dies by its own hand at its scheduler's second stop, in the one window a kill from
# outside could only hit by chance: the stopped trial's epoch row is stored, the stop not yet carried
# out. The test's process imports the space too, where the variable is unset.
DYING_SPACE = """
import os
import signal

from search.run.recorder import StoreRecorder
from search.schema import epoch_row_of
from stalled_space import space

if os.environ.get("DIE_AT_STOP"):
    stops = []
    heard = StoreRecorder.on_trial_result

    def on_trial_result(self, iteration, trials, trial, result, **info):
        heard(self, iteration, trials, trial, result, **info)
        if result.get("done") and epoch_row_of(result)["epoch"] < 3:  # the scheduler stopped it here
            stops.append(trial.trial_id)
            if len(stops) == int(os.environ["DIE_AT_STOP"]):
                os.kill(os.getpid(), signal.SIGKILL)

    StoreRecorder.on_trial_result = on_trial_result
"""


def test_mo_asha_stops_trials_at_a_rung_keeps_its_records_over_a_kill_and_the_replay_agrees(
    tmp_path, capsys, monkeypatch, shared_ray
):
    """Five trials one after another, rungs at epochs 1 and 2 of 3 (`grace_period` 1, factor 2);
    the later four cannot learn and report identical figures, so they compete for the places kept
    at each rung (ties go to the earlier trial), and whether trials stop does not hang on what the
    sampler draws. The driver dies just after the scheduler stops the third trial at its first
    epoch, before the stop is carried out; the resumed scheduler hears the store's rows again, ends
    that trial where it was stopped without training it further, and the whole sweep's decisions
    are those the replay makes of its results in the order heard."""
    (tmp_path / "stalled_space.py").write_text(STALLED_SPACE)
    (tmp_path / "dying_space.py").write_text(DYING_SPACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    extra = ["--address", shared_ray, "--concurrent", "1", "--scheduler", "mo-asha"]
    argv = sweep_argv(tmp_path, "halved", 5, 3, *extra, "--space", "dying_space:space", "--no-constraints")
    pythonpath = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    driver = subprocess.run(
        [sys.executable, "-m", "search.cli", *argv],
        env={**os.environ, "PYTHONPATH": pythonpath, "DIE_AT_STOP": "2"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        start_new_session=True,
    )
    assert driver.returncode == -signal.SIGKILL, driver.stderr[-2000:]
    before, _ = tables(tmp_path, "halved")
    assert list(before.sort_values("number")["status"]) == ["COMPLETED", "STOPPED", "RUNNING"]
    dying = before.loc[before["status"] == "RUNNING", "trial_id"].item()

    assert main(["resume", "halved", "--storage", str(tmp_path), "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "mo-asha: the rungs' records rebuilt from 3 trial(s)' epoch rows (2 stopped)" in out
    assert f"trial {dying} stopped (epoch 1 selected)" in out and f"trial {dying} epoch" not in out
    trials, epochs = tables(tmp_path, "halved")
    assert len(trials) == 5 and set(trials["status"]) <= {"COMPLETED", "STOPPED"}
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    stopped = trials[trials["status"] == "STOPPED"]
    assert dying in set(stopped["trial_id"]) and set(stopped["epochs"]) <= {1, 2}
    assert (trials.loc[trials["status"] == "COMPLETED", "epochs"] == 3).all()
    last_epoch = epochs.groupby("trial_id")["epoch"].max()
    assert (last_epoch[stopped["trial_id"]].to_numpy() == stopped["epochs"].to_numpy()).all()
    # Every stop and every continue the sweep made, before and after the kill, the replay makes.
    spec = Study(str(tmp_path), "halved").read_spec()
    assert replayed_stops(epochs, spec, 3) == dict(zip(stopped["trial_id"], stopped["epochs"], strict=True))
    # Optuna is told a stopped trial's values at the epoch it selected among those it ran, and
    # that it was stopped.
    studied = {t.number: t for t in optuna_trials(tmp_path, "halved")}
    for row in stopped.to_dict("records"):
        assert studied[row["number"]].state == TrialState.COMPLETE
        assert studied[row["number"]].user_attrs["status"] == "STOPPED"
        assert studied[row["number"]].values == pytest.approx([row[m] for m in OBJECTIVES])


def test_a_trial_tunes_saved_state_knows_without_checkpoints_continues_from_the_studys_latest(
    tmp_path, capsys, shared_ray
):
    """Tune saves its state once, at the start, with the first trial in it and no checkpoint of
    it; the driver is killed once that trial has checkpoints, and the resume starts it from the
    latest of them in the study instead of from the beginning."""
    store = Store(Study(str(tmp_path), "stale"))

    def running_with_an_epoch() -> bool:
        trials = store.trials()
        return bool(len(trials)) and (trials["status"] == "RUNNING").all() and len(store.epochs()) >= 1

    argv = sweep_argv(tmp_path, "stale", 1, 4, "--address", shared_ray)
    interrupt_when(argv, running_with_an_epoch, env={"TUNE_GLOBAL_CHECKPOINT_S": "100000"})
    ((trial_id, reached),) = store.epochs().groupby("trial_id")["epoch"].max().items()
    capsys.readouterr()
    assert main(["resume", "stale", "--storage", str(tmp_path), "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    assert f"trial {trial_id} continues from its epoch {reached} checkpoint" in out
    heard = [
        int(line.split(":")[0].rsplit(" ", 1)[1])
        for line in out.splitlines()
        if line.startswith(f"trial {trial_id} epoch ")
    ]
    # The first epoch it reports is the next one (its last again, if it had run them all).
    assert heard[0] == min(reached + 1, 4) and heard[-1] == 4
    trials, epochs = tables(tmp_path, "stale")
    assert trials["status"].item() == "COMPLETED" and sorted(epochs["epoch"]) == [1, 2, 3, 4]


def _rows(store: Store, trial_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials' rows and epoch rows, wherever the store keeps them (live files or segments)."""
    trials = store.trials(trial_ids=trial_ids).set_index("trial_id").sort_index()
    return trials.reindex(sorted(trials.columns), axis=1), store.epochs(trial_ids=trial_ids)


# Tune saves its state once, at the start, so three trials end after its last save: the restored
# Tuner has never heard of them, as when a kill falls between two saves, and the store alone knows
# they count. (The default saving, where the restored Tuner knows the ended trials, is what the
# copy-and-move and random-kill tests of tests/search_tests/run_tests/test_drivers.py resume.)
@pytest.mark.parametrize("tune_save_seconds, ended_at_kill", [("100000", 3)], ids=["stale"])
def test_sigkill_then_resume_finishes_exactly_the_trials_asked(
    tmp_path, tune_save_seconds, ended_at_kill, capsys, shared_ray
):
    store = Store(Study(str(tmp_path), "killed"))

    def some_done_one_running() -> bool:
        trials = store.trials()
        done = (trials["status"] == "COMPLETED").sum() if len(trials) else 0
        return done >= ended_at_kill and (trials["status"] == "RUNNING").any()

    argv = sweep_argv(tmp_path, "killed", 6, 3, "--address", shared_ray)
    pid = interrupt_when(argv, some_done_one_running, env={"TUNE_GLOBAL_CHECKPOINT_S": tune_save_seconds})
    before_trials = store.trials()
    done_before = list(before_trials[before_trials["status"] == "COMPLETED"]["trial_id"])
    rows_before = _rows(store, done_before)
    # The next driver starts by moving the settled trials into a segment; it dies while it builds
    # the trial table's next generation (it has kept the running trial's file, at least one), and
    # the resume after it discards that generation and moves them again.
    compacting = Store(Study(str(tmp_path), "killed"))
    with Cut(compacting, kill_at=2), pytest.raises(Killed):
        compacting.compact(min_trials=1)
    assert list((tmp_path / "killed" / "store").glob(".trials.g*"))[1:]  # one the link does not name

    assert main(["resume", "killed", "--storage", str(tmp_path), "--num-cpus", "2"]) == 0
    # The killed driver's lease had no release and a dead pid: taken over, and said.
    taken = f"taking over the study from 'gainakt-search run killed' (pid {pid} on "
    assert taken in capsys.readouterr().out
    trials, epochs = store.trials(), store.epochs()
    assert (trials["status"] == "COMPLETED").sum() == 6
    assert set(trials["status"]) <= {"COMPLETED", "LOST"}
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    # Trials that had completed before the kill were not run again: their rows are unchanged.
    assert done_before and not (tmp_path / "killed" / "store" / "_compaction.json").exists()
    rows_after = _rows(store, done_before)
    pd.testing.assert_frame_equal(rows_before[0], rows_after[0])
    pd.testing.assert_frame_equal(rows_before[1], rows_after[1])
    assert any(p.name.startswith("segment-") for p in (tmp_path / "killed" / "store" / "trials").iterdir())
    # Lost trials stay in the table, never count as completed, and are failed in the Optuna study.
    states = {t.number: t.state for t in optuna_trials(tmp_path, "killed")}
    for number in trials[trials["status"] == "LOST"]["number"]:
        assert states[number] == TrialState.FAIL
    completed_numbers = trials[trials["status"] == "COMPLETED"]["number"]
    assert all(states[n] == TrialState.COMPLETE for n in completed_numbers)
    assert sum(s == TrialState.COMPLETE for s in states.values()) == 6
    assert sum(s == TrialState.RUNNING for s in states.values()) == 0


def test_status_reads_the_store_and_wandb_logs_each_trial_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert (
        main(sweep_argv(tmp_path, "shown", 2, 1, "--num-cpus", "2", "--no-constraints", "--wandb", "offline"))
        == 0
    )
    capsys.readouterr()
    assert len(list((tmp_path / "shown" / "wandb").glob("wandb/offline-run-*"))) == 2
    # Each run is named by its trial id, grouped by study, tagged, and linked from the trial table.
    for row in tables(tmp_path, "shown")[0].to_dict("records"):
        folder = Path(row["wandb_run"])
        assert folder.is_dir() and folder.parent == tmp_path / "shown" / "wandb" / "wandb"
        run = wandb_run_record(folder)
        assert run.display_name == row["trial_id"] and run.run_group == "shown"
        assert set(run.tags) == {"space:aux_weights_deep", "sampler:tpe"}
        config = {item.key: json.loads(item.value_json) for item in run.config.update}
        assert config["trial_id"] == row["trial_id"] and config["number"] == row["number"]
        assert config["seed"] == row["seed"]
        assert config["out"] == f"{tmp_path / 'shown'}/tune/{row['trial_id']}"  # not Ray's working folder
        assert config["weights"]["sparsity"] == row["param.weights.sparsity"]
    assert main(["status", "shown", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    trials, _ = tables(tmp_path, "shown")
    best = trials["auc"].max()
    assert "2 completed" in out and f"best auc (max): {best:.4f}" in out
    assert "time left: none" in out
    # Running the same study again finds it finished and trains nothing.
    assert main(sweep_argv(tmp_path, "shown", 2, 1, "--num-cpus", "2", "--no-constraints")) == 0
    assert "already has all its 2 trials" in capsys.readouterr().out
    assert Store(Study(str(tmp_path), "shown")).trials().equals(trials)
    assert math.isfinite(best)


def test_a_trial_continued_from_the_checkpoint_of_its_last_epoch_reports_that_epoch(tmp_path):
    """The driver died after a trial's last epoch but before it heard the trial end: the trial
    continues from that checkpoint with nothing left to train, and must still report its figures
    (a bare return fails Tune's check that every result carries the searched metrics)."""
    from ray import tune

    from gainakt.config import nest
    from gainakt.data import load_dataset
    from gainakt.train import train
    from search.run.trainable import TrialSetup, run_trial, trial_config
    from search.schema import CONTINUES, RESUME_FROM

    settings = {key: int(value) for key, value in (a.split("=") for a in TINY_TRAIN)}
    setup = TrialSetup("continued", TINY_DATA, "cpu-small", fixed=nest(settings | {"epochs": 2}))
    dataset = load_dataset(TINY_DATA)
    finished = tmp_path / "finished"  # what the lost trial's last checkpoint holds
    train(trial_config(setup, {}, seed=0, out=str(finished)), dataset)
    last = pd.read_csv(finished / "metrics_epoch.csv").iloc[-1]

    tuner = tune.Tuner(
        tune.with_parameters(run_trial, setup=setup, dataset=dataset),
        param_space={
            "settings": {},
            "seed": 0,
            "number": 0,
            CONTINUES: "lost0001",
            RESUME_FROM: str(finished),
        },
        tune_config=tune.TuneConfig(metric="auc", mode="max", num_samples=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="continued", verbose=0),
    )
    [result] = tuner.fit()
    assert result.error is None
    assert result.metrics["epoch_row"]["epoch"] == 2
    assert result.metrics["epoch_row"]["auc"] == pytest.approx(last["auc"])
    assert result.checkpoint is not None


def test_most_at_once_counts_overlapping_intervals():
    import pandas as pd

    t = pd.Timestamp("2026-01-01", tz="UTC")
    s = pd.Timedelta(seconds=1)
    frame = pd.DataFrame(
        {"started_at": [t, t, t + 2 * s, t + 5 * s], "ended_at": [t + 3 * s, t + 2 * s, t + 6 * s, t + 7 * s]}
    )
    assert most_at_once(frame) == 2  # the second ends as the third starts; the third and fourth overlap
    assert most_at_once(frame.iloc[:1]) == 1


def test_resume_with_more_trials_grows_the_study_and_keeps_its_rows(tmp_path, capsys):
    assert main(sweep_argv(tmp_path, "grown", 4, 1, "--num-cpus", "2")) == 0
    first, _ = tables(tmp_path, "grown")
    assert (first["status"] == "COMPLETED").sum() == 4
    grown = Store(Study(str(tmp_path), "grown"))
    rows_before = _rows(grown, list(first["trial_id"]))
    capsys.readouterr()

    # `run` with another total keeps refusing, and names the way to grow; shrinking is refused.
    assert main(sweep_argv(tmp_path, "grown", 6, 1, "--num-cpus", "2")) == 2
    assert "'gainakt-search resume grown --trials 6'" in capsys.readouterr().err
    assert main(["resume", "grown", "--storage", str(tmp_path), "--trials", "3"]) == 2
    assert "never shrinks" in capsys.readouterr().err

    assert main(["resume", "grown", "--storage", str(tmp_path), "--trials", "6", "--num-cpus", "2"]) == 0
    assert "grows from 4 to 6 trials" in capsys.readouterr().out
    trials, epochs = tables(tmp_path, "grown")
    assert (trials["status"] == "COMPLETED").sum() == 6 and len(trials) == 6
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    for before, after in zip(rows_before, _rows(grown, list(first["trial_id"]))):
        pd.testing.assert_frame_equal(before, after)  # the first four trials' rows untouched
    states = [t.state for t in optuna_trials(tmp_path, "grown")]
    assert states.count(TrialState.COMPLETE) == 6 and len(states) == 6
    study = Study(str(tmp_path), "grown")
    assert study.read_spec().trials == 6
    assert [entry["trials"] for entry in study.read_history()] == [4, 6]
    # A plain resume now finds it finished.
    assert main(["resume", "grown", "--storage", str(tmp_path), "--num-cpus", "2"]) == 0
    assert "already has all its 6 trials" in capsys.readouterr().out


def _most_at_once_per_gpu(trials) -> dict[tuple[str, str], int]:
    """For each (node, GPU) Ray assigned, the most trials that held it at once."""
    return {key: most_at_once(group) for key, group in trials.groupby(["node_id", "gpu_ids"])}


def test_gpu_scheduling_on_a_two_node_cluster_follows_rays_accounting_without_a_gpu(tmp_path, capsys):
    """Nodes that declare 1 and 2 GPUs to Ray (none exists); trials of half a GPU that train on the CPU."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # disconnected from the session's Ray: this test's sweeps run on the cluster below
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    try:
        cluster.add_node(num_cpus=4, num_gpus=2)
        cluster.wait_for_nodes()
        gpu = ["--address", cluster.address, "--gpus", "0.5", "--concurrent", "6"]
        argv = sweep_argv(tmp_path, "gpus", 6, 1, *gpu, "--set", "device=cpu", "--no-constraints")
        assert main(argv) == 0
        # The same request with device = "auto" on nodes without CUDA: the trial fails with one line.
        capsys.readouterr()
        assert main(sweep_argv(tmp_path, "nocuda", 1, 1, *gpu, "--no-constraints", "--retries", "0")) == 1
        # Every trial failed: the sweep says so in one line with the first error, and exits 1.
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("gainakt-search: every trial failed (1 of 1); the first error: ")
        assert "torch finds no CUDA device there" in last
    finally:
        cluster.shutdown()
    trials, _ = tables(tmp_path, "gpus")
    assert (trials["status"] == "COMPLETED").sum() == 6 and set(trials["device"]) == {"cpu"}
    assert trials["node_id"].nunique() == 2  # trials ran on both nodes
    assert trials["gpu_ids"].str.fullmatch(r"\d+").all()  # each was given one GPU
    per_gpu = _most_at_once_per_gpu(trials)
    assert len(per_gpu) == 3  # every one of the three GPUs was used
    assert max(per_gpu.values()) <= 2  # never more than two half-GPU trials on one GPU
    assert most_at_once(trials) == 6  # at the busiest moment every trial ran, on the GPUs of both nodes

    failed, _ = tables(tmp_path, "nocuda")
    error = failed["error"].item()
    assert failed["status"].item() == "ERROR" and "torch finds no CUDA device there" in error
    assert 'set device = "cpu"' in error and "\n" not in error
