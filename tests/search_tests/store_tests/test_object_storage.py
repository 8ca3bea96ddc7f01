"""Studies in S3-compatible object storage, against a real local S3 server (moto's, over HTTP):
the store, spec and report in the bucket, the reading commands reading from it alone."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from study_helpers import fake_study
from sweep_helpers import interrupt_when, sweep_argv, tune_trial, wait_until_idle

from search.cli import main
from search.run.confirm import CONFIRM_SEED
from search.run.lease import read_lease
from search.run.recorder import open_optuna_study
from search.store.segments import Store
from search.store.study import Study


def _bucket_files(storage: str) -> list[str]:
    fs, root = pafs.FileSystem.from_uri(storage)
    return sorted(
        i.path.removeprefix(f"{root}/") for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
    )


def test_a_study_in_a_bucket_is_read_from_the_bucket_alone_and_its_report_is_written_there(
    s3_storage, tmp_path, monkeypatch, capsys
):
    study = fake_study(s3_storage, "remote", 12)
    assert not study.local and study.location.startswith("s3://") and "?" not in study.location
    work = tmp_path / "elsewhere"  # a fresh working folder: nothing local but what -o asks for
    work.mkdir()
    monkeypatch.chdir(work)

    assert main(["status", "remote", "--storage", s3_storage]) == 0
    assert "11 completed, 1 error" in capsys.readouterr().out
    assert main(["pareto", "remote", "--storage", s3_storage, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["checkpoint"].startswith(f"{study.location}/tune/") for r in rows)
    assert main(["report", "remote", "--storage", s3_storage]) == 0
    assert f"report: {study.location}/report.html" in capsys.readouterr().out
    assert main(["report", "remote", "--storage", s3_storage, "-o", "local/report.html"]) == 0

    files = _bucket_files(s3_storage)
    assert {"remote/spec.json", "remote/data.json", "remote/report.html", "remote/report.md"} <= set(files)
    assert sum(f.startswith("remote/store/trials/") for f in files) == 12
    assert sum(f.startswith("remote/store/epochs/") for f in files) == 12 * 3  # a file per trial and epoch
    assert sorted(p.name for p in work.rglob("*")) == ["local", "report.html", "report.md"]
    assert "Pareto report" in (work / "local" / "report.html").read_text()
    # The store reads the same from the bucket as it was written.
    assert len(Store(Study(s3_storage, "remote")).trials()) == 12


@pytest.mark.parametrize(
    "storage, expected",
    [
        ("s3://{bucket_missing}/studies?{options}", "study 'remote' not found"),
        ("foo://bar/studies", "pyarrow cannot open it"),
        ("s3://bucket/studies?endpoint_override=127.0.0.1:1&scheme=http", "cannot be read"),
    ],
    ids=["missing bucket", "unknown scheme", "unreachable endpoint"],
)
def test_bad_storage_is_one_line_and_exit_2(
    s3_storage, s3_server, storage, expected, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    options = f"endpoint_override={s3_server}&scheme=http"
    given = storage.format(bucket_missing="no-such-bucket", options=options)
    assert main(["status", "remote", "--storage", given]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
def test_a_two_node_sweep_into_a_bucket_survives_a_killed_driver_and_resumes_from_the_bucket_alone(
    s3_storage, tmp_path, monkeypatch, capsys
):
    """A worker node beside a head with no CPU for trials, so that every trial runs on a node other
    than the driver's and writes its checkpoints to the bucket from there (Ray Tune persists them
    from the workers); the driver uploads the Optuna journal as it changes, so a driver killed
    mid-sweep loses none of it; a resume with a fresh home and working folder continues from the
    bucket alone."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        worker = cluster.add_node(num_cpus=2).node_id
        cluster.wait_for_nodes()
        argv = sweep_argv(s3_storage, "inbucket", 3, 2, "--address", cluster.address)
        store = Store(Study(s3_storage, "inbucket"))

        def one_ended_one_running() -> bool:
            trials = store.trials() if Study(s3_storage, "inbucket").exists() else []
            return (
                len(trials) > 0
                and (trials["status"] == "COMPLETED").sum() >= 1
                and (trials["status"] == "RUNNING").any()
            )

        # Each driver gets a home of its own (no journal copy survives between them); Ray's token,
        # which a cluster with token authentication needs, is still read from where Ray keeps it.
        token = Path.home() / ".ray" / "auth_token"
        ray_token = {"RAY_AUTH_TOKEN_PATH": str(token)} if token.is_file() else {}
        first_home = tmp_path / "home1"
        interrupt_when(argv, one_ended_one_running, env={"HOME": str(first_home), **ray_token})
        ended = store.trials()
        ended = set(ended.loc[ended["status"] == "COMPLETED", "trial_id"])
        # The bucket's journal already holds every trial that ended before the kill.
        journal = tmp_path / "journal-from-bucket"
        fs, root = pafs.FileSystem.from_uri(s3_storage)
        with fs.open_input_stream(f"{root}/inbucket/optuna.journal") as remote:
            journal.write_bytes(remote.readall())
        told = {
            t.user_attrs.get("tune_trial_id")
            for t in open_optuna_study(str(journal), "inbucket").trials
            if t.state.name == "COMPLETE"
        }
        assert ended and ended <= told

        fresh = tmp_path / "fresh"  # another machine: nothing local of the study
        fresh.mkdir()
        monkeypatch.chdir(fresh)
        monkeypatch.setenv("HOME", str(tmp_path / "home2"))
        for key, value in ray_token.items():
            monkeypatch.setenv(key, value)
        # Ray ends the killed driver's trial once it notices its owner died (seconds, on a busy machine):
        # the resume starts when the cluster's CPUs are free again, as it would on another machine.
        wait_until_idle(cluster.address, cpus=2)
        assert main(["resume", "inbucket", "--storage", s3_storage, "--address", cluster.address]) == 0
        # A confirmation of one trial, from the bucket alone, on the same cluster.
        confirmed = store.trials().query("status == 'COMPLETED'")["trial_id"].iloc[0]
        confirm = ["confirm", "inbucket", "--storage", s3_storage, "--address", cluster.address]
        assert main([*confirm, "--trials", confirmed, "--seeds", "2", "--folds", "1", "--no-dkt"]) == 0
    finally:
        ray.shutdown()  # this process's connection, before the cluster goes
        cluster.shutdown()
    trials, epochs = store.trials(), store.epochs()
    assert (trials["status"] == "COMPLETED").sum() == 3 and set(trials["status"]) <= {"COMPLETED", "LOST"}
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    # Every trial that reported ran on the worker node, none on the driver's.
    assert trials["node_id"].notna().sum() >= 3 and set(trials["node_id"].dropna()) == {worker}
    files = _bucket_files(s3_storage)
    assert any(f.startswith("inbucket/tune/") and "/checkpoint_" in f for f in files)
    assert {"inbucket/spec.json", "inbucket/optuna.journal", "inbucket/report.html"} <= set(files)
    completed = trials[trials["status"] == "COMPLETED"]
    assert completed["checkpoint"].str.startswith(f"{Study(s3_storage, 'inbucket').location}/tune/").all()
    assert list(fresh.iterdir()) == []  # nothing of the study on local disk
    assert not [p for p in (tmp_path / "home2").rglob("*") if p.is_file()]  # the journal copy is gone
    runs = store.confirm()
    runs = runs[runs["kind"] == "trial"]
    assert sorted(runs["seed"]) == [CONFIRM_SEED, CONFIRM_SEED + 1] and set(runs["source"]) == {confirmed}
    assert runs["test.auc"].notna().all() and set(runs["status"]) == {"COMPLETED"}
    assert sum(f.startswith("inbucket/store/confirm/") for f in files) >= 1
    capsys.readouterr()
    assert main(["pareto", "inbucket", "--storage", s3_storage]) == 0
    assert "non-dominated trials" in capsys.readouterr().out
    assert main(["report", "inbucket", "--storage", s3_storage]) == 0
    with fs.open_input_stream(f"{root}/inbucket/report.html") as remote:
        assert "Confirmation (test split)" in remote.readall().decode()  # the confirm rows, from the bucket
    assert list(fresh.iterdir()) == []


@pytest.mark.parametrize("ending", ["complete", "error"])
def test_a_trial_ending_reaches_the_bucket_journal_before_the_store(
    s3_storage, tmp_path, monkeypatch, ending
):
    """Tune's searcher tells Optuna of an ending before the callbacks hear of it: the recorder uploads
    that journal before it writes the ending to the store, so a driver killed right after the store
    row never leaves a bucket whose store knows a trial that its journal does not."""

    from search.run.recorder import StoreRecorder

    monkeypatch.setenv("HOME", str(tmp_path))  # the remote study's local journal copy lives under it
    study = fake_study(s3_storage, "ending", 2)
    journal = Path(study.prepare_journal())
    journal.write_bytes(b'{"op_code": 0, "worker_id": "w", "study_name": "ending", "directions": [1]}\n')
    study.sync_journal()
    recorder = StoreRecorder(study.read_spec(), Store(study), {}, str(journal), echo=lambda _: None)
    trial = tune_trial(tmp_path, "t-new", 2)
    trial.update_last_result({"done": True})
    recorder.on_trial_start(0, [trial], trial)
    told = journal.read_bytes() + b'{"op_code": 6, "worker_id": "w", "trial_id": 0, "state": 1}\n'
    journal.write_bytes(told)  # what the searcher's tell appended
    stored: list[bytes] = []
    original = recorder.store.put_trial
    monkeypatch.setattr(
        recorder.store,
        "put_trial",
        lambda row: (stored.append(study.read_bytes(study._remote_journal)), original(row)),
    )
    if ending == "complete":
        recorder.on_trial_complete(0, [trial], trial)
    else:  # the traceback's last line is read from the trial's folder in Ray's session, absent here
        monkeypatch.setattr("search.run.recorder.error_line", lambda _: "RuntimeError: boom")
        recorder.on_trial_error(0, [trial], trial)
    assert stored == [told]  # the store's row was written with the told journal already in the bucket


def test_wrong_credentials_are_one_line_and_exit_2_where_right_ones_reach_the_bucket(
    s3_server_with_auth, tmp_path, monkeypatch, capsys
):
    endpoint, bucket, (key, secret) = s3_server_with_auth
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage = f"s3://{bucket}/studies?endpoint_override={endpoint}&scheme=http"
    for given, expected in (((key, "not-the-secret"), "ACCESS_DENIED"), ((key, secret), "not found")):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", given[0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", given[1])
        assert main(["status", "remote", "--storage", storage]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())  # nothing written
    # The right key found the bucket empty: the wrong secret was refused, not a missing study.
    fs, root = pafs.FileSystem.from_uri(storage)
    assert fs.get_file_info(pafs.FileSelector(bucket, recursive=True)) == []


def test_drivers_racing_for_a_study_in_a_bucket_leave_exactly_one_holder(s3_storage, monkeypatch):
    """Object storage has no locks: each driver writes the lease, reads it back once the other's
    write can have landed, and the one whose write was overwritten gives way. Then a live lease
    refuses a newcomer, a released one is taken quietly, a stale one with a takeover said."""
    import dataclasses
    import threading
    import time

    from gainakt.errors import ConfigError
    from search.run import lease as leases

    monkeypatch.setattr(leases, "SETTLE_SECONDS", 0.5)  # far above a local server's write time
    fake_study(s3_storage, "leased", 1)
    study = Study(s3_storage, "leased")
    said: list[str] = []
    racers = [leases.DriverLease(Study(s3_storage, "leased"), f"driver {i}", said.append) for i in (0, 1)]
    start = threading.Barrier(2)
    outcomes: dict[int, str] = {}

    def race(i: int) -> None:
        start.wait()
        try:
            racers[i].acquire()
            outcomes[i] = "held"
        except ConfigError as err:
            outcomes[i] = str(err)

    threads = [threading.Thread(target=race, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winner = next(i for i, outcome in outcomes.items() if outcome == "held")
    loser = 1 - winner
    assert f"being driven by 'driver {winner}'" in outcomes[loser], outcomes
    assert read_lease(study).token == racers[winner].info.token and read_lease(study).live()

    late = leases.DriverLease(Study(s3_storage, "leased"), "late", said.append)
    with pytest.raises(ConfigError, match=f"being driven by 'driver {winner}'"):
        leases.refuse_if_held(study)
    with pytest.raises(ConfigError, match=f"being driven by 'driver {winner}'"):
        late.acquire()
    racers[winner].release()
    assert read_lease(study).released_at is not None
    late.acquire()  # a released lease: taken without a word
    assert read_lease(study).token == late.info.token and said == []
    late.release()

    # A driver on another host that died: its heartbeat stopped long ago.
    beat = time.time() - leases.STALE_SECONDS - 1
    dead = dataclasses.replace(late.info, token="dead", host="elsewhere", heartbeat_at=beat, released_at=None)
    study.write_atomic(leases.lease_path(study), json.dumps(dataclasses.asdict(dead)).encode())
    with leases.held(Study(s3_storage, "leased"), "heir", said.append):
        assert read_lease(study).command == "heir"
    assert len(said) == 1 and "taking over the study from 'late' (pid" in said[0] and "elsewhere" in said[0]
