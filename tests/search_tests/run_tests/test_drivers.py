"""One driver per study, and requests no cluster can serve refused at once: real drivers in
subprocesses on a real local Ray."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from pandas.testing import assert_frame_equal
from sweep_helpers import interrupt_when, kill_group, optuna_trials, sweep_argv, tables

from search.cli import main
from search.run.lease import read_lease
from search.store.study import Study

pytestmark = pytest.mark.slow  # real local Ray clusters: run by .ci/run, skipped by `pytest -m "not slow"`

GUARD_SECONDS = 240  # far beyond any of these; a hang fails the test instead of the suite


def _driver(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "search.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )


def _finish(driver: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = driver.communicate(timeout=GUARD_SECONDS)
    finally:
        kill_group(driver.pid)
    return driver.returncode, out, err


def test_two_drivers_started_together_and_one_started_later_leave_exactly_the_trials_asked(
    tmp_path, shared_ray
):
    argv = sweep_argv(tmp_path, "shared", 2, 2, "--address", shared_ray, "--concurrent", "1")
    first, second = _driver(argv), _driver(argv)
    study = Study(str(tmp_path), "shared")
    deadline = time.monotonic() + GUARD_SECONDS
    while time.monotonic() < deadline and (read_lease(study) is None or not read_lease(study).live()):
        if first.poll() is not None and second.poll() is not None:
            break
        time.sleep(0.2)
    late = _driver(argv)  # started while the winner holds the lease
    results = [_finish(d) for d in (first, second, late)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2, 2], results
    for code, _, err in results:
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err
            assert "study 'shared' is being driven by 'gainakt-search run shared' (pid " in err, err
    trials, epochs = tables(tmp_path, "shared")
    assert len(trials) == 2 and set(trials["status"]) == {"COMPLETED"}
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert len(optuna_trials(tmp_path, "shared")) == 2
    assert read_lease(study).released_at is not None


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    # lstat: a killed driver may leave Optuna's journal lock, a link to the journal's first path.
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


# Both resumes run in one Ray session, where Tune stages a restored run's state in a folder named
# by the time the run first started, the same for the copy and the moved study: the second resume
# must restore its own state, not the one the copy's resume left there (it did, and ran a trial
# short: StudySearchGenerator.restore_from_dir). The moved study is also renamed, and repaired
# under its new name before it resumes (the journal keeps its Optuna study under the old name).
@pytest.mark.usefixtures("shared_ray")
def test_a_killed_study_copied_and_moved_resumes_in_each_new_place_and_never_touches_the_old(
    tmp_path, shared_ray, capsys
):
    origin = tmp_path / "origin"
    study = Study(str(origin), "roaming")

    def one_done_one_running() -> bool:
        trials, _ = tables(origin, "roaming")
        return (
            len(trials) > 0
            and (trials["status"] == "COMPLETED").any()
            and (trials["status"] == "RUNNING").any()
        )

    interrupt_when(sweep_argv(origin, "roaming", 3, 2, "--address", shared_ray), one_done_one_running)
    assert study.exists()
    copied, moved = tmp_path / "copied", tmp_path / "moved"
    copied.mkdir()
    subprocess.run(["cp", "-a", str(origin / "roaming"), str(copied)], check=True)
    moved.mkdir()
    (origin / "roaming").rename(moved / "renamed")
    places = {copied: "roaming", moved: "renamed"}
    # The moved study's journal ends in a torn line, which doctor --repair drops, and it loses a
    # completed trial's row, which doctor --repair rebuilds from the trial's checkpoint (Tune had
    # not yet written the trial's params.json) as completed, as the journal says under the old name.
    journal = moved / "renamed" / "optuna.journal"
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 6, "worker_id": "w", "trial_id": 9, "va')
    trials, _ = tables(moved, "renamed")
    lost = trials.loc[trials["status"] == "COMPLETED", "trial_id"].iloc[0]
    (Path(Study(str(moved), "renamed").trials_dir) / f"{lost}.parquet").unlink()
    untouched = _listing(moved / "renamed")

    assert main(["resume", "roaming", "--storage", str(copied), "--num-cpus", "2"]) == 0
    assert _listing(moved / "renamed") == untouched, "the copy's resume wrote into the moved study"
    assert not (origin / "roaming").exists(), "the copy's resume wrote into the study's first place"
    copy_saved = {p.name for p in (copied / "roaming" / "tune").iterdir() if p.is_file()}
    copy_saved -= {p.name for p in (moved / "renamed" / "tune").iterdir() if p.is_file()}
    capsys.readouterr()
    main(["doctor", "renamed", "--storage", str(moved), "--repair"])
    out = capsys.readouterr().out
    assert f"dropped the torn last line of {journal}" in out and "OK    journal: " in out, out
    assert "OK    journal vs store: every trial has the same number and ending in both" in out, out
    assert "rebuilt from the trials' checkpoints: 1 trial row(s)" in out, out
    assert tables(moved, "renamed")[0].set_index("trial_id").loc[lost, "status"] == "COMPLETED"
    assert main(["resume", "renamed", "--storage", str(moved), "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    # It answers to its new name, and so do its hints (the lease names the old driver's command).
    assert "continuing study 'renamed'" in out and f"gainakt-search pareto renamed --storage {moved}" in out
    assert not re.search(r"gainakt-search (resume|pareto|confirm|report|status) roaming", out), out
    assert not (origin / "roaming").exists()
    # No state file the copy's resume saved reached the moved study's experiment folder.
    assert copy_saved and not copy_saved & {p.name for p in (moved / "renamed" / "tune").iterdir()}
    for storage, name in places.items():
        trials, epochs = tables(storage, name)
        assert (trials["status"] == "COMPLETED").sum() == 3, trials[["trial_id", "status"]]
        assert not epochs.duplicated(["trial_id", "epoch"]).any()
        assert (
            not pd.read_parquet(storage / name / "store" / "epochs").duplicated(["trial_id", "epoch"]).any()
        )
        assert (
            sum(t.state.name == "COMPLETE" for t in optuna_trials(storage, name, created_as="roaming")) == 3
        )
        here = str(storage / name)
        assert all(str(p).startswith(here) for p in trials["checkpoint"].dropna()), trials["checkpoint"]
        assert all(Path(p).is_dir() for p in trials["checkpoint"].dropna())
    assert main(["doctor", "renamed", "--storage", str(moved)]) == 0, capsys.readouterr().out


@pytest.mark.usefixtures("shared_ray")  # the driver's checks against a running Ray, in this process
@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--cpus", "3"], "each trial asks for 3 CPU, but no node of the Ray cluster"),
        (["--gpus", "1"], "each trial asks for 1 CPU, 1 GPU, but no node"),
    ],
    ids=["cpus", "gpus"],
)
def test_a_request_no_node_can_place_is_one_line_and_writes_nothing(flags, expected, tmp_path, capsys):
    if "--gpus" in flags and _has_gpu():
        pytest.skip("this machine has a GPU, so one GPU per trial can be placed")
    assert main(sweep_argv(tmp_path, "impossible", 2, 1, *flags)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "impossible").exists()


def test_an_address_where_no_ray_answers_is_one_line_and_writes_nothing(tmp_path):
    started = time.monotonic()
    argv = sweep_argv(
        tmp_path, "impossible", 2, 1, "--address", "10.255.255.1:6379", "--connect-timeout", "3"
    )
    code, _, err = _finish(_driver(argv))
    print(f"refused in {time.monotonic() - started:.1f} s")  # the figure the issue asks for, not asserted
    assert (
        code == 2 and len(err.strip().splitlines()) == 1 and "--address 10.255.255.1:6379: no Ray" in err
    ), err
    assert not (tmp_path / "impossible").exists()


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available() or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def _trial_workers(ray_head) -> list[int]:
    """The Ray actor processes that train trials on the session's Ray: children of its raylet."""
    (raylet,) = ray_head.head_node.all_processes["raylet"]
    found = subprocess.run(
        ["pgrep", "-P", str(raylet.process.pid), "-f", "ray::ImplicitFunc"], capture_output=True, text=True
    )
    return [int(pid) for pid in found.stdout.split()]


def _kill_the_first_trials_worker_after_its_first_epoch(tmp_path, ray_head, argv) -> tuple[int, str, str]:
    """Run a driver of a study, one trial at a time, and SIGKILL the first trial's worker
    once it has reported its first epoch of three (so it has a checkpoint), a whole epoch before
    it could end and hand its worker to the next trial; the driver's exit code, output, errors."""
    driver = _driver(argv)
    deadline = time.monotonic() + GUARD_SECONDS
    killed = False
    try:
        while time.monotonic() < deadline and driver.poll() is None and not killed:
            trials, epochs = tables(tmp_path, "crashy")
            running = set(trials.loc[trials["status"] == "RUNNING", "trial_id"]) if len(trials) else set()
            workers = _trial_workers(ray_head)
            if len(trials) == 1 and len(epochs) == 1 and running == set(epochs["trial_id"]) and workers:
                for pid in workers:
                    os.kill(pid, 9)
                killed = True
            time.sleep(0.2)
        assert killed, "no trial worker was found to kill"
        return _finish(driver)
    finally:
        kill_group(driver.pid)


# Epochs of a few seconds (four times the students), so that the kill cannot miss the second.
SLOWER = ("--data", "synthetic:students=1200,concepts=10,seed=3")


def test_a_dead_workers_trial_continues_from_its_last_checkpoint_under_its_own_number(
    tmp_path, shared_ray, ray_head
):
    argv = sweep_argv(tmp_path, "crashy", 1, 3, "--address", shared_ray, "--concurrent", "1", *SLOWER)
    code, out, err = _kill_the_first_trials_worker_after_its_first_epoch(tmp_path, ray_head, argv)
    assert code == 0, err
    trials, epochs = tables(tmp_path, "crashy")
    assert trials["status"].item() == "COMPLETED" and sorted(epochs["epoch"]) == [1, 2, 3]
    first = trials["trial_id"].item()
    said = out[out.index(f"trial {first} failed: ") :].splitlines()
    assert said[0].endswith("; retry 1 of 1: it continues from its epoch 1 checkpoint"), said[0]
    epochs_after = [line for line in said if line.startswith(f"trial {first} epoch ")]
    assert epochs_after[0].startswith(f"trial {first} epoch 2: ")  # not epoch 1 again
    # The Optuna study holds the same trial, under the store's number.
    states = {t.number: t for t in optuna_trials(tmp_path, "crashy")}
    assert sorted(states) == sorted(trials["number"]) and {t.state.name for t in states.values()} == {
        "COMPLETE"
    }
    for row in trials.to_dict("records"):
        assert states[row["number"]].user_attrs["tune_trial_id"] == row["trial_id"]


def _leave_a_stop_pending_in_tunes_state(study_dir: Path, trial_id: str) -> None:
    """What Tune saves when a trial's worker dies during the save of its checkpoint: a STOP
    decision for the trial, waiting on the save."""
    newest = max((study_dir / "tune").glob("experiment_state-*.json"))
    state = json.loads(newest.read_text())
    state["runner_data"]["_cached_trial_decisions"] = {trial_id: "STOP"}
    newest.write_text(json.dumps(state))


def test_a_trial_out_of_retries_fails_the_run_and_its_resume_records_it_under_the_retrys_number(
    tmp_path, shared_ray, ray_head
):
    argv = sweep_argv(
        tmp_path, "crashy", 2, 3, "--address", shared_ray, "--concurrent", "1", "--retries", "0", *SLOWER
    )
    code, _, err = _kill_the_first_trials_worker_after_its_first_epoch(tmp_path, ray_head, argv)
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("gainakt-search: 1 of 2 trials failed; the first error: ") and last.endswith(
        f"; 'gainakt-search resume crashy --storage {tmp_path}' runs them again"
    ), last
    trials, _ = tables(tmp_path, "crashy")
    errored = trials[trials["status"] == "ERROR"]
    assert len(errored) == 1 and len(trials) == 2, trials[["trial_id", "status", "error"]]
    trial_id, number = errored["trial_id"].item(), int(errored["number"].item())
    # The worker may have died while Tune saved its epoch 1 checkpoint: Tune then keeps a STOP
    # for the trial in its saved state, and a resume carried it out after the trial's next epoch.
    # Make that case certain.
    _leave_a_stop_pending_in_tunes_state(tmp_path / "crashy", trial_id)

    assert main(["resume", "crashy", "--storage", str(tmp_path), "--num-cpus", "2"]) == 0
    trials, epochs = tables(tmp_path, "crashy")
    assert len(trials) == 2 and set(trials["status"]) == {"COMPLETED"}
    assert (
        not epochs.duplicated(["trial_id", "epoch"]).any() and (epochs.groupby("trial_id").size() == 3).all()
    )
    states = {t.number: t for t in optuna_trials(tmp_path, "crashy")}
    assert states[number].state.name == "FAIL"
    (retry,) = [t for t in states.values() if t.user_attrs.get("retry_of") == number]
    assert retry.state.name == "COMPLETE"
    # The store's row takes the number of the Optuna trial that records the retry: a join by
    # number pairs each completed row with its complete Optuna trial.
    retried = trials.set_index("trial_id").loc[trial_id]
    assert int(retried["number"]) == retry.number
    assert all(states[n].state.name == "COMPLETE" for n in trials["number"])


@pytest.mark.usefixtures("shared_ray")  # its in-process resumes
def test_doctor_repair_rebuilds_a_damaged_studys_rows_from_its_checkpoints_and_resume_finishes(
    tmp_path, capsys
):
    assert main(sweep_argv(tmp_path, "mended", 3, 2, "--num-cpus", "2")) == 0
    study = Study(str(tmp_path), "mended")
    before_trials, before_epochs = tables(tmp_path, "mended")
    # A finished study keeps its rows in one segment per table: both damaged, both go to quarantine.
    victims = [
        next(Path(folder).glob("segment-*.parquet")) for folder in (study.trials_dir, study.epochs_dir)
    ]
    for victim in victims:
        victim.write_bytes(b"junk")
    journal = Path(study.journal_path)
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 6, "worker_id": "w", "trial_id": 9, "va')
    assert main(["resume", "mended", "--storage", str(tmp_path), "--num-cpus", "2"]) == 2
    capsys.readouterr()
    assert main(["doctor", "mended", "--storage", str(tmp_path)]) == 1
    assert "rows: 3 trial(s) with checkpoints lack rows" in capsys.readouterr().out
    assert main(["doctor", "mended", "--storage", str(tmp_path), "--repair"]) == 0
    assert (
        "rebuilt from the trials' checkpoints: 3 trial row(s) and 6 epoch row(s)" in capsys.readouterr().out
    )
    for victim in victims:
        assert (
            Path(study.root) / "quarantine" / "store" / victim.parent.name / victim.name
        ).read_bytes() == b"junk"

    # Every figure the checkpoints keep is back, as the driver wrote it; what no file keeps is empty.
    trials, epochs = tables(tmp_path, "mended")

    def same(after: pd.DataFrame, before: pd.DataFrame, keys: list[str], unkept: set[str]) -> None:
        def ordered(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.drop(columns=list(unkept)).sort_values(keys, ignore_index=True)

        assert set(after.columns) == set(before.columns)
        assert_frame_equal(ordered(after), ordered(before), check_like=True)

    same(epochs, before_epochs, ["trial_id", "epoch"], {"reported_at"})
    unkept = {"node_id", "hostname", "device", "gpu_ids", "train_seconds", "started_at", "ended_at"}
    same(trials, before_trials, ["trial_id"], unkept)
    assert trials["ended_at"].notna().all() and trials["train_seconds"].isna().all()
    assert main(["doctor", "mended", "--storage", str(tmp_path)]) == 0
    assert main(["resume", "mended", "--storage", str(tmp_path), "--num-cpus", "2"]) == 0
    assert "already has all its 3 trials" in capsys.readouterr().out
    assert main(["status", "mended", "--storage", str(tmp_path)]) == 0


def test_random_kills_over_run_and_resumes_keep_every_invariant(tmp_path):
    """The repeated-kill benchmark's loop, with a fixed seed and fewer kills."""
    import importlib.util

    path = REPO / "benchmarks" / "repeated_kills.py"
    loader = importlib.util.spec_from_file_location("repeated_kills", path)
    module = importlib.util.module_from_spec(loader)
    sys.modules["repeated_kills"] = module  # its dataclasses look their module up while being made
    loader.loader.exec_module(module)
    outcome = module.kill_and_resume(tmp_path, kills=2, trials=2, epochs=2, seed=7, window=(1.0, 10.0))
    assert outcome.violations == [], "\n".join(outcome.rounds + outcome.violations)
    assert outcome.kills >= 2, outcome.rounds  # the loop did kill, not just wait for the sweep


@pytest.mark.usefixtures("shared_ray")  # its in-process resumes
def test_a_trial_unknown_to_the_restored_tuner_continues_from_its_checkpoint_and_counts_once(
    tmp_path, shared_ray
):
    def later_trial_with_two_epochs() -> bool:
        trials, epochs = tables(tmp_path, "unsaved")
        later = trials[(trials["number"] >= 1) & (trials["status"] == "RUNNING")] if len(trials) else trials
        return bool(len(later)) and (epochs["trial_id"] == later["trial_id"].iloc[0]).sum() >= 2

    argv = sweep_argv(tmp_path, "unsaved", 3, 4, "--address", shared_ray, "--concurrent", "1")
    # Tune saves its state once, at the start: every later trial is unknown to the restored Tuner.
    interrupt_when(argv, later_trial_with_two_epochs, env={"TUNE_GLOBAL_CHECKPOINT_S": "100000"})
    trials, epochs = tables(tmp_path, "unsaved")
    unsaved = trials[(trials["number"] >= 1) & (trials["status"] == "RUNNING")]["trial_id"].iloc[0]
    before = epochs[epochs["trial_id"] == unsaved].reset_index(drop=True)

    assert main(["resume", "unsaved", "--storage", str(tmp_path), "--num-cpus", "2"]) == 0
    trials, epochs = tables(tmp_path, "unsaved")
    assert len(trials) == 3 and set(trials["status"]) == {"COMPLETED"}, trials[["trial_id", "status"]]
    after = epochs[epochs["trial_id"] == unsaved].reset_index(drop=True)
    assert list(after["epoch"]) == [1, 2, 3, 4]
    kept = after.iloc[: len(before)].drop(columns=["checkpoint"])
    assert kept.equals(before.drop(columns=["checkpoint"])), "the epochs before the kill were changed"
    states = [t.state.name for t in optuna_trials(tmp_path, "unsaved")]
    assert states.count("COMPLETE") == 3 and "FAIL" not in states, states


def test_a_sweep_without_an_address_starts_its_own_ray_beside_a_running_one(tmp_path, ray_head):
    """`run` with no --address starts a local Ray even where another runs on the machine (the
    session's, which ray.init() with no address would join, and refuse when given --num-cpus)."""
    code, _, err = _finish(_driver(sweep_argv(tmp_path, "apart", 1, 1, "--num-cpus", "1")))
    assert code == 0, err
    trials, _ = tables(tmp_path, "apart")
    assert trials["status"].item() == "COMPLETED"
    assert trials["node_id"].item() != ray_head.head_node.node_id
