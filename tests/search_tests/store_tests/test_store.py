"""The Parquet store while a study runs: rows of running trials next to finished ones."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, replace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from study_helpers import fake_study, put_trial_like

from search.cli import main
from search.report.terminal import status_lines
from search.run.lease import STALE_SECONDS, LeaseInfo, held, lease_path, read_lease
from search.store.segments import Store


def _start_running_trial(study, trial_id: str) -> None:
    """A row as the recorder writes it when a trial starts (no end time yet), in a study of 6 trials."""
    study.write_spec(replace(study.read_spec(), trials=6))
    put_trial_like(study, trial_id, status="RUNNING", ended_at=pd.NaT, started_at=pd.Timestamp.now(tz="UTC"))


def test_a_running_trial_keeps_the_time_columns_typed(tmp_path):
    study = fake_study(tmp_path, "running", 4)
    _start_running_trial(study, "run00001")
    schema = pq.read_schema(f"{study.trials_dir}/run00001.parquet")
    assert schema.field("ended_at").type == pa.timestamp("us", tz="UTC")  # not `null`
    trials = Store(study).trials()
    assert str(trials["ended_at"].dtype) == "datetime64[us, UTC]"
    assert trials.loc[trials["trial_id"] == "run00001", "ended_at"].isna().all()


def test_status_of_a_running_study(tmp_path, capsys):
    study = fake_study(tmp_path, "running", 4)
    _start_running_trial(study, "run00001")
    with held(study, "gainakt-search run running", echo=lambda line: None):  # a driver at work
        lines = status_lines(study.read_spec(), Store(study).trials(), study.display(), read_lease(study))
        assert main(["status", "running", "--storage", str(tmp_path)]) == 0
    assert "trials: 1 running, 3 completed, 1 error, 0 stopped, 0 lost" in lines
    assert any(line.startswith("driver: 'gainakt-search run running' (pid ") for line in lines)
    assert any(line.startswith("elapsed: ") and line.endswith("(first start to now)") for line in lines)
    # 2 of 6 trials left: the estimate needs the finished trials' durations (end minus start).
    assert any(
        line.startswith("time left: about ") and "(2 trials of about 0m04s, 2 at a time)" in line
        for line in lines
    )
    assert "1 running" in capsys.readouterr().out


def test_status_of_a_study_whose_driver_died_says_interrupted_and_estimates_nothing(tmp_path):
    study = fake_study(tmp_path, "orphan", 4)
    _start_running_trial(study, "run00001")
    beat = time.time() - STALE_SECONDS - 1  # the lease a killed driver leaves: not released, no heartbeat
    dead = LeaseInfo("t", socket.gethostname(), 2**22 + 1, "gainakt-search run orphan", beat - 60, beat)
    study.write_atomic(lease_path(study), json.dumps(asdict(dead)).encode())
    lines = status_lines(study.read_spec(), Store(study).trials(), study.display(), read_lease(study))
    seen = time.strftime("%H:%M", time.localtime(beat))
    assert any(
        line.startswith(f"interrupted (no driver since {seen}): continue with 'gainakt-search resume orphan")
        for line in lines
    ), lines
    assert not any(line.startswith("time left") for line in lines)


def test_a_store_written_with_an_untyped_end_time_reads_typed(tmp_path):
    """Stores written before the time columns were typed hold a running trial's `ended_at` as `null`."""
    study = fake_study(tmp_path, "old", 3)
    row = {
        **next(iter(Store(study).trial_rows().values())),
        "trial_id": "run00001",
        "status": "RUNNING",
        "ended_at": None,
        "error": None,  # as the recorder wrote it (a row read back holds NaN there)
    }
    table = pa.Table.from_pandas(pd.DataFrame([row]), preserve_index=False)
    assert table.schema.field("ended_at").type == pa.null()
    pq.write_table(table, f"{study.trials_dir}/run00001.parquet")
    trials = Store(study).trials()
    assert str(trials["ended_at"].dtype) == "datetime64[us, UTC]"
    study.write_spec(replace(study.read_spec(), trials=6))
    with held(study, "gainakt-search resume old", echo=lambda line: None):
        lines = status_lines(study.read_spec(), Store(study).trials(), study.display(), read_lease(study))
    assert lines[2].startswith("trials: 1 running") and any(line.startswith("time left: ") for line in lines)


def test_baselines_json_is_strict_json_and_reads_back_nan_where_a_figure_is_undefined(tmp_path):
    import math

    from gainakt import strict_json
    from search.store.study import Study

    study = Study(str(tmp_path), "strict")
    (tmp_path / "strict").mkdir()
    study.write_baselines({"pfa": {"mastery_corr": 0.3, "neg_gain_rate": math.nan, "auc": math.inf}})
    stored = strict_json.loads(study.read_bytes(study.baselines_path))
    assert stored == {"pfa": {"mastery_corr": 0.3, "neg_gain_rate": None, "auc": None}}
    back = study.read_baselines()["pfa"]
    assert back["mastery_corr"] == 0.3 and math.isnan(back["neg_gain_rate"]) and math.isnan(back["auc"])


def test_a_copied_studys_hints_name_the_folder_it_is_in_now(tmp_path, capsys):
    import shutil

    study = fake_study(tmp_path / "first", "roamer", 4)
    _start_running_trial(study, "run00001")  # no driver: interrupted
    shutil.copytree(tmp_path / "first", tmp_path / "second")
    assert main(["status", "roamer", "--storage", str(tmp_path / "second")]) == 0
    out = capsys.readouterr().out
    assert f"continue with 'gainakt-search resume roamer --storage {tmp_path / 'second'}'" in out
    assert str(tmp_path / "first") not in out


def test_a_study_another_host_drives_is_refused_before_anything_is_said_of_it(tmp_path, capsys):
    study = fake_study(tmp_path, "busy", 4)
    now = time.time()
    driving = LeaseInfo("t", "another-host", 4242, "gainakt-search run busy", now - 60, now)
    study.write_atomic(lease_path(study), json.dumps(asdict(driving)).encode())
    assert main(["resume", "busy", "--storage", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert "is being driven by" in err and "another-host" in err
    assert "continuing study" not in out and "starting study" not in out
