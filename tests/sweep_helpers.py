"""Shared pieces of the sweep tests: a tiny, fast sweep and readers of what it leaves behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from conftest import REPO

from search.run.recorder import open_optuna_study
from search.store.segments import Store
from search.store.study import Study

# Small enough that a trial is a few seconds on one core, large enough to learn something.
TINY_DATA = "synthetic:students=300,concepts=10,seed=3"
TINY_TRAIN = ["model.d_model=16", "model.heads=2", "model.d_ff=32", "model.blocks=1", "batch_size=32"]


def sweep_argv(storage: Path, name: str, trials: int, epochs: int = 2, *extra: str) -> list[str]:
    argv = [
        "run",
        "--name",
        name,
        "--storage",
        str(storage),
        "--data",
        TINY_DATA,
        "--trials",
        str(trials),
        "--concurrent",
        "2",
        "--cpus",
        "1",
        "--set",
        f"epochs={epochs}",
    ]
    for assignment in TINY_TRAIN:
        argv += ["--set", assignment]
    return argv + list(extra)


def tables(storage: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    store = Store(Study(str(storage), name))
    return store.trials(), store.epochs()


def optuna_trials(storage: Path, name: str, created_as: str | None = None) -> list:
    """The trials of study `name`'s Optuna study, which has the name the study was created under."""
    return open_optuna_study(os.path.join(storage, name, "optuna.journal"), created_as or name).get_trials()


def relu_only_space(trial) -> dict:
    """A space whose every point has relu gains and cumulative mastery: neg_gain_rate is always 0."""
    return {"weights.sparsity": trial.suggest_float("weights.sparsity", 1e-3, 1.0, log=True)}


def kill_group(pid: int) -> None:
    """SIGKILL a driver and every process it started (its own process group: Ray's included)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def _driver_when(argv: list[str], ready, env: dict | None, timeout: float, out) -> Iterator[tuple]:
    """`gainakt-search ARGV` as a driver of its own session (its output to `out`, its errors to a
    file: a full pipe would stall it), handed over once `ready()` holds, with its errors' file, and
    SIGKILLed with all it started at the end; fails if it ends by itself first."""
    with tempfile.TemporaryFile() as errors:
        driver = subprocess.Popen(
            [sys.executable, "-m", "search.cli", *argv],
            stdout=out,
            stderr=errors,
            cwd=REPO,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and driver.poll() is None and not ready():
                time.sleep(0.2)
            if driver.poll() is not None:
                errors.seek(0)
                tail = errors.read().decode(errors="replace")[-2000:]
                raise AssertionError(
                    f"the driver ended (exit {driver.returncode}) before it could be interrupted: {tail}"
                )
            yield driver, errors
        finally:
            kill_group(driver.pid)
            driver.wait()


def interrupt_when(argv: list[str], ready, env: dict | None = None, timeout: float = 240) -> int:
    """Run `gainakt-search ARGV` as a driver of its own session, SIGKILL it (and Ray) as soon as
    `ready()` holds, and return its pid; fails if it ends by itself first."""
    with _driver_when(argv, ready, env, timeout, subprocess.DEVNULL) as (driver, _):
        pass
    return driver.pid


def signal_when(
    argv: list[str], ready, signum: int, env: dict | None = None, timeout: float = 240
) -> tuple[int, str, str]:
    """Run `gainakt-search ARGV` as a driver of its own session, send it `signum` as soon as
    `ready()` holds (SIGINT to its whole process group, as a terminal's Ctrl-C; any other to the
    driver alone, as `timeout` or a scheduler does), wait for it to end, and return its exit code,
    output and errors; fails if it ends by itself first or does not end after the signal."""

    def send(driver: subprocess.Popen) -> None:
        if signum == signal.SIGINT:
            os.killpg(driver.pid, signum)
        else:
            os.kill(driver.pid, signum)

    return act_when(argv, ready, send, env, timeout)


def act_when(
    argv: list[str], ready, act, env: dict | None = None, timeout: float = 240
) -> tuple[int, str, str]:
    """Run `gainakt-search ARGV` as a driver of its own session, call `act(driver)` as soon as
    `ready()` holds, wait for the driver to end, and return its exit code, output and errors; fails
    if it ends by itself first or does not end in `timeout` seconds."""
    with tempfile.TemporaryFile() as out, _driver_when(argv, ready, env, timeout, out) as (driver, errors):
        act(driver)
        driver.wait(timeout=timeout)
        out.seek(0)
        errors.seek(0)
        return driver.returncode, out.read().decode(errors="replace"), errors.read().decode(errors="replace")


def wandb_run_record(run_folder: Path):
    """The `run` record of an offline W&B run (its name, group, tags, config), read from the run's
    `.wandb` file: W&B's record log (a 7-byte header, then 32 KiB blocks of chunks, each with a
    4-byte checksum, a 2-byte length and a type: 1 whole, 2 first, 3 middle, 4 last), each record
    a `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2

    (log,) = run_folder.glob("run-*.wandb")
    data, block, records, pending = log.read_bytes(), 32768, [], b""
    position = 7
    assert data[:4] == b":W&B", log
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            records.append(pending)
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "run":
            return record.run
    raise AssertionError(f"{log}: no run record")


def tune_trial(folder: Path, trial_id: str, number: int):
    """A Ray Tune trial object as the recorder's events receive it (no Ray running), its folder
    under `folder`."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    storage = StorageContext(str(folder / "tune"), "experiment")
    storage.trial_dir_name = trial_id
    config = {"number": number, "seed": 0, "settings": {}}
    return Trial("run_trial", config=config, trial_id=trial_id, stub=True, storage=storage)


def wait_until_idle(address: str, cpus: float, timeout: float = 60) -> None:
    """Connect this process to the cluster at `address` and wait until `cpus` CPUs are free there
    (a killed driver's trials gone); the CLI then runs on this connection."""
    import logging

    import ray

    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0.0) < cpus:
        assert time.monotonic() < deadline, f"the cluster's CPUs stayed busy: {ray.available_resources()}"
        time.sleep(0.2)


def most_at_once(trials) -> int:
    """The largest number of trials whose [started_at, ended_at] intervals overlap."""
    events = sorted(
        [(t, 1) for t in trials["started_at"]] + [(t, -1) for t in trials["ended_at"]],
        key=lambda e: (e[0], e[1]),
    )
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most
