"""Repeated kills: a sweep SIGKILLed at random moments, resumed each time, must end with exactly
the trials asked and a store that never held an epoch twice or changed a finished trial.

Runs `gainakt-search run` on the simulator with a tiny model, kills the driver and every process
of its session (Ray's included) after a random 5-30 s (`--window`), resumes, and so on for `--kills` rounds;
then resumes once more without a kill. After every round it checks the invariants and prints
them; at the end, how many kills the study survived.

    .venv/bin/python benchmarks/repeated_kills.py [--kills 12] [--trials 6] [--seed 0] [--keep]

tests/search_tests/run_tests/test_drivers.py runs the same loop with a fixed seed and fewer kills.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from optuna.trial import TrialState

from search.run.recorder import open_optuna_study
from search.schema import TrialStatus
from search.store.segments import Store
from search.store.study import Study

REPO = Path(__file__).resolve().parents[1]
DATA = "synthetic:students=300,concepts=10,seed=3"
TINY = ["model.d_model=16", "model.heads=2", "model.d_ff=32", "model.blocks=1", "batch_size=32"]
NAME = "killed"


@dataclass
class Outcome:
    kills: int = 0  # rounds that ended with a SIGKILL (the others ended by themselves)
    rounds: list[str] = field(default_factory=list)  # one line per round
    violations: list[str] = field(default_factory=list)  # invariants that failed, with the round


def _argv(storage: Path, trials: int, epochs: int, first: bool) -> list[str]:
    """`run` until the study exists (a kill may come before it is written), then `resume`."""
    if not first:
        return ["resume", NAME, "--storage", str(storage), "--num-cpus", "2"]
    argv = ["run", "--name", NAME, "--storage", str(storage), "--data", DATA, "--trials", str(trials)]
    argv += ["--concurrent", "2", "--set", f"epochs={epochs}", "--num-cpus", "2"]
    for setting in TINY:
        argv += ["--set", setting]
    return argv


def _kill_session(driver: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process of the driver's session (Ray's workers have process groups of their
    own) and wait until none is left. The driver is reaped first: pgrep counts a zombie too."""
    session = driver.pid
    subprocess.run(["pkill", "-9", "-s", str(session)], capture_output=True)
    driver.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-s", str(session)], capture_output=True).returncode != 0:
            return
        time.sleep(0.1)


def _finished_files(study: Study) -> pd.DataFrame:
    """The rows of completed trials, which no later round may change (wherever the store keeps
    them: their own files, or a segment once compacted), by trial id."""
    trials = Store(study).trials()
    if not len(trials):
        return pd.DataFrame()
    return trials[trials["status"] == TrialStatus.COMPLETED].set_index("trial_id").sort_index()


def kill_and_resume(
    storage: Path, kills: int, trials: int, epochs: int, seed: int, window: tuple[float, float] = (5.0, 30.0)
) -> Outcome:
    """The loop described above; never raises for a failed invariant (it is recorded)."""
    rng = random.Random(seed)
    study = Study(str(storage), NAME)
    outcome = Outcome()
    finished = pd.DataFrame()
    for round_number in range(kills + 1):
        last = round_number == kills
        driver = subprocess.Popen(
            [sys.executable, "-m", "search.cli", *_argv(storage, trials, epochs, first=not study.exists())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=REPO,
            start_new_session=True,
        )
        delay = rng.uniform(*window)
        try:
            code = driver.wait(timeout=600 if last else delay)
            killed = False
        except subprocess.TimeoutExpired:
            _kill_session(driver)
            code, killed = driver.returncode, True
        _kill_session(driver)  # what the driver left behind, if anything
        outcome.kills += killed
        stderr = driver.stderr.read().decode() if driver.stderr else ""
        if not killed and code != 0:
            outcome.violations.append(f"round {round_number}: exit {code}: {stderr.strip()[-300:]}")
        check = _check(study, finished) if study.exists() else []
        outcome.violations += [f"round {round_number}: {v}" for v in check]
        latest = _finished_files(study) if study.exists() else pd.DataFrame()
        finished = (
            pd.concat([finished, latest[~latest.index.isin(finished.index)]]) if len(latest) else finished
        )
        rows = Store(study).trials() if study.exists() else None
        counts = rows["status"].value_counts().to_dict() if rows is not None and len(rows) else {}
        how = f"killed after {delay:.1f} s" if killed else f"ended (exit {code})"
        outcome.rounds.append(f"round {round_number}: {how}; trials {counts or 'none yet'}")
    if not study.exists():
        outcome.violations.append("end: no study was written")
        return outcome
    final = Store(study).trials()
    completed = int((final["status"] == TrialStatus.COMPLETED).sum()) if len(final) else 0
    if completed != trials:
        outcome.violations.append(f"end: {completed} completed trials, {trials} asked")
    states = [t.state for t in open_optuna_study(study.journal_path, NAME).get_trials()]
    if states.count(TrialState.COMPLETE) != trials or TrialState.RUNNING in states:
        outcome.violations.append(f"end: the Optuna study holds {[s.name for s in states]}")
    return outcome


def _check(study: Study, finished: pd.DataFrame) -> list[str]:
    store = Store(study)
    epochs = store.epochs()
    problems = []
    if len(epochs) and epochs.duplicated(["trial_id", "epoch"]).any():
        problems.append("an epoch is stored twice")
    if not len(finished):
        return problems
    now = store.trials(trial_ids=list(finished.index)).set_index("trial_id")
    for trial_id, row in finished.iterrows():
        if trial_id not in now.index or not now.loc[trial_id, finished.columns].equals(row):
            problems.append(f"completed trial {trial_id} changed")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=12, help="rounds that may end in a kill (default 12)")
    parser.add_argument("--trials", type=int, default=6, help="trials of the sweep (default 6)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=(5.0, 30.0),
        metavar=("FROM", "TO"),
        help="a kill comes a uniform FROM-TO seconds after a round starts (default 5 30; Ray and the data "
        "take about 10 s to start on two cores)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the study folder and print where")
    args = parser.parse_args()
    storage = Path(tempfile.mkdtemp(prefix="repeated-kills-"))
    started = time.time()
    outcome = kill_and_resume(storage, args.kills, args.trials, args.epochs, args.seed, tuple(args.window))
    print(f"command: {' '.join(sys.argv)}")
    print("\n".join(outcome.rounds))
    if outcome.violations:
        print(f"the study did not survive: {len(outcome.violations)} invariant violation(s)")
        print("\n".join(f"  {v}" for v in outcome.violations))
    else:
        print(f"kills survived: {outcome.kills} of {outcome.kills}, every invariant held after each")
    print(f"wall time: {time.time() - started:.0f} s")
    if args.keep:
        print(f"study folder: {storage / NAME}")
    else:
        shutil.rmtree(storage, ignore_errors=True)
    return 1 if outcome.violations else 0


if __name__ == "__main__":
    sys.exit(main())
