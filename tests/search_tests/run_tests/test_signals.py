"""Stopping a sweep by a signal: Ctrl-C (SIGINT, to the driver's process group, as a terminal sends
it) and SIGTERM (to the driver alone, as `timeout` or a scheduler sends it) stop it gracefully,
with exit codes 130 and 143, and the study resumes."""

from __future__ import annotations

import signal

import pytest
from sweep_helpers import signal_when, sweep_argv, tables

from search.cli import main
from search.run.lease import read_lease
from search.store.segments import Store
from search.store.study import Study

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_the_sweep_and_exits_with_128_plus_its_number_and_the_study_resumes(
    tmp_path, signum, capsys, shared_ray
):
    store = Store(Study(str(tmp_path), "stopped"))

    def a_trial_running_with_an_epoch() -> bool:
        trials = store.trials()
        return bool(len(trials) and (trials["status"] == "RUNNING").any() and len(store.epochs()))

    argv = sweep_argv(tmp_path, "stopped", 3, 3, "--address", shared_ray)
    code, out, err = signal_when(argv, a_trial_running_with_an_epoch, signum)
    name = signal.Signals(signum).name
    assert code == 128 + signum, err
    assert f"gainakt-search: stopped by {name}; what was done is saved" in err
    assert "Traceback" not in err and "SIGTERM received" not in err
    assert f"continue with 'gainakt-search resume stopped --storage {tmp_path}'" in out
    lease = read_lease(Study(str(tmp_path), "stopped"))
    assert lease is not None and lease.released_at is not None  # released: the resume takes no study over
    if signum == signal.SIGTERM:  # both stop the same way: one resume is enough to show it
        assert main(["resume", "stopped", "--storage", str(tmp_path), "--num-cpus", "2"]) == 0
        assert "taking over" not in capsys.readouterr().out
        trials, epochs = tables(tmp_path, "stopped")
        assert (trials["status"] == "COMPLETED").sum() == 3 and len(trials) == 3
        assert not epochs.duplicated(["trial_id", "epoch"]).any()
