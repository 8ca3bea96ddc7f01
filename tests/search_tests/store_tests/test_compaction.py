"""Compaction of the store: settled trials move into segments, readers open few files, and a
driver killed at any moment of a compaction leaves a store that reads every row exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import REPO
from store_helpers import Cut, Killed

from search.schema import TrialStatus
from search.spec import SweepSpec
from search.store import segments as store_module
from search.store.segments import Store, segment_name
from search.store.study import Study
from search.store.tables import epoch_schema, to_table

EPOCHS = 3


def trial_row(number: int, status: TrialStatus) -> dict:
    start = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(seconds=number)
    return {
        "trial_id": f"t{number:05d}",
        "number": number,
        "status": status.value,
        "auc": 0.6 + number / 10_000,
        "param.weights.sparsity": 10.0 ** -(number % 4),
        "started_at": start,
        "ended_at": pd.NaT if status == TrialStatus.RUNNING else start + pd.Timedelta(seconds=5),
    }


def epoch_rows(number: int, epochs: int = EPOCHS) -> list[dict]:
    return [
        {"trial_id": f"t{number:05d}", "epoch": e, "auc": 0.5 + number / 10_000 + e / 100, "seconds": 1.0}
        for e in range(1, epochs + 1)
    ]


def status_of(number: int) -> TrialStatus:
    """Every 10th trial errored (stays live: a resume retries it), the rest settled."""
    return (
        TrialStatus.ERROR
        if number % 10 == 9
        else (TrialStatus.LOST if number % 17 == 16 else TrialStatus.COMPLETED)
    )


def write_study(root: Path, trials: int, running: int = 2) -> Study:
    """A study whose driver recorded `trials` ended trials and `running` running ones, epoch by
    epoch, as the recorder does."""
    study = Study(str(root), "compacted")
    store = Store(study)
    for number in range(trials + running):
        rows = epoch_rows(number)
        running_now = number >= trials
        store.put_trial(trial_row(number, TrialStatus.RUNNING))
        for epoch in range(1, EPOCHS + 1):
            store.put_epochs(f"t{number:05d}", rows[:epoch])
        if not running_now:
            store.put_trial(trial_row(number, status_of(number)))
    return study


def expected_trials(trials: int, running: int = 2) -> set[tuple[str, str]]:
    ended = {(f"t{n:05d}", status_of(n).value) for n in range(trials)}
    return ended | {(f"t{n:05d}", "RUNNING") for n in range(trials, trials + running)}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.parquet"))


def plain(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder)


def test_settled_trials_move_into_segments_that_merge_by_level(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "SEGMENT_TRIALS", 4)
    monkeypatch.setattr(store_module, "FAN_IN", 3)
    study = write_study(tmp_path, trials=60)
    trials_dir, epochs_dir = Path(study.trials_dir), Path(study.epochs_dir)
    segments = [n for n in names(trials_dir) if n.startswith("segment-")]
    live = [n for n in names(trials_dir) if not n.startswith("segment-")]
    # Errored and running trials stay live; fewer than SEGMENT_TRIALS settled ones may wait.
    errored = {f"t{n:05d}.parquet" for n in range(60) if status_of(n) == TrialStatus.ERROR}
    assert errored | {"t00060.parquet", "t00061.parquet"} <= set(live)
    assert len(live) < len(errored) + 2 + 4
    # Levels: never FAN_IN segments at one level, and merges happened.
    levels = [int(n.split("-")[1][1:]) for n in segments]
    assert max(levels) >= 2 and all(levels.count(level) < 3 for level in set(levels))
    # Each segment is named by its level and its digest, the same levels in both folders; epoch
    # files only for live trials.
    epoch_segments = [n for n in names(epochs_dir) if n.startswith("segment-")]
    for folder, found in ((trials_dir, segments), (epochs_dir, epoch_segments)):
        for name in found:
            assert name == segment_name(int(name.split("-")[1][1:]), (folder / name).read_bytes())
    assert sorted(levels) == sorted(int(n.split("-")[1][1:]) for n in epoch_segments)
    live_epochs = {n.split(".")[0] for n in names(epochs_dir) if not n.startswith("segment-")}
    assert live_epochs == {n.removesuffix(".parquet") for n in live}
    # Every trial and epoch exactly once, to the Store and to pandas alike.
    store = Store(study)
    assert set(zip(store.trials()["trial_id"], store.trials()["status"])) == expected_trials(60)
    for frame in (store.epochs(), plain(epochs_dir)):
        assert len(frame) == 62 * EPOCHS and not frame.duplicated(["trial_id", "epoch"]).any()
    assert len(plain(trials_dir)) == 62
    # Segments are sorted by trial, so a reader of a few trials skips the rest by their statistics.
    first = pq.read_table(trials_dir / segments[0])["trial_id"].to_pylist()
    assert first == sorted(first)


def test_a_trials_epochs_are_appended_one_file_each_and_a_stale_later_epoch_loses_its_file(tmp_path):
    study = Study(str(tmp_path), "appended")
    store = Store(study)
    rows = epoch_rows(1, epochs=4)
    for epoch in range(1, 5):
        store.put_epochs("t00001", rows[:epoch])
    folder = Path(study.epochs_dir)
    files = {n: (folder / n).stat().st_mtime_ns for n in names(folder)}
    assert sorted(files) == [f"t00001.e{e:04d}.parquet" for e in range(1, 5)]
    # A resumed trial re-reports epoch 2 from its checkpoint: epochs 3 and 4 go, 1 is not rewritten.
    again = {**rows[1], "auc": 0.99}
    store.put_epochs("t00001", [rows[0], again])
    assert names(folder) == ["t00001.e0001.parquet", "t00001.e0002.parquet"]
    assert (folder / "t00001.e0001.parquet").stat().st_mtime_ns == files["t00001.e0001.parquet"]
    assert Store(study).epochs()["auc"].tolist() == [rows[0]["auc"], 0.99]


def test_a_store_from_before_segments_migrates_and_reads_the_same(tmp_path):
    """Old layout: one epoch file a trial, rewritten whole. The driver's start compacts it."""
    study = Study(str(tmp_path), "old")
    store = Store(study)
    for number in range(30):
        store.put_trial(trial_row(number, status_of(number)))
        table = to_table(epoch_rows(number), epoch_schema())
        Path(study.epochs_dir).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, f"{study.epochs_dir}/t{number:05d}.parquet")
    # A live trial in the old layout keeps it (one file, rewritten) until it settles.
    store.put_epochs("t00009", epoch_rows(9, epochs=4))
    assert "t00009.parquet" in names(Path(study.epochs_dir))
    assert "t00009.e0004.parquet" not in names(Path(study.epochs_dir))
    before = (Store(study).trials(), Store(study).epochs())
    assert len(before[1]) == 30 * EPOCHS + 1
    moved = Store(study).compact(min_trials=1)
    assert moved == sum(status_of(n).settled for n in range(30))
    after = (Store(study).trials(), Store(study).epochs())
    for old, new in zip(before, after):
        pd.testing.assert_frame_equal(old.reset_index(drop=True), new, check_like=True)


class Counting(pafs.FileSystemHandler):
    """The local filesystem, noting every file opened for reading."""

    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()
        self.opened: list[str] = []

    def get_type_name(self):
        return "counting"

    def equals(self, other):
        return other is self

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise NotImplementedError

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        self.local.copy_file(src, dest)

    def open_input_stream(self, path):
        self.opened.append(path)
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        self.opened.append(path)
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.local.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path, metadata=metadata)


def test_readers_read_only_the_columns_and_trials_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "SEGMENT_TRIALS", 8)
    study = write_study(tmp_path, trials=40)
    counting = Counting()
    study.fs = pafs.PyFileSystem(counting)
    store = Store(study)
    trials = store.trials(columns=["status", "auc"])
    assert list(trials.columns) == ["trial_id", "started_at", "status", "auc"] and len(trials) == 42
    assert counting.opened and not any("/epochs/" in p for p in counting.opened)
    counting.opened.clear()
    wanted = ["t00003", "t00041"]  # one in a segment, one running
    epochs = store.epochs(trial_ids=wanted)
    assert sorted(set(epochs["trial_id"])) == wanted and len(epochs) == 2 * EPOCHS
    live_opened = {Path(p).name for p in counting.opened if p.endswith(".parquet") and "segment-" not in p}
    assert live_opened == {f"t00041.e{e:04d}.parquet" for e in range(1, EPOCHS + 1)}


def steps_of_one_compaction(root: Path, swaps: bool) -> int:
    """How many steps (writes, links, removes, swaps) one compaction of the test store makes."""
    store = Store(write_study(root, trials=CUT_TRIALS))
    store.swaps = swaps
    with Cut(store) as cut:
        store.compact(min_trials=1)
    return cut.done


# Four settled trials and two running. On local disk the two tables' swaps take 12 steps: for the
# trials, 2 running trials' files kept, the segment, the swap; for the epochs, 6 files kept, the
# segment, the swap. In a bucket, 20: the intent, 2 segments, 16 removes, the intent.
CUT_TRIALS = 4
CUTS = [("swap", step) for step in range(12)] + [("intent", step) for step in range(20)]


def assert_every_row_once(trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    assert len(trials) == CUT_TRIALS + 2
    assert set(zip(trials["trial_id"], trials["status"], strict=True)) == expected_trials(CUT_TRIALS)
    assert len(epochs) == (CUT_TRIALS + 2) * EPOCHS and not epochs.duplicated(["trial_id", "epoch"]).any()


def duckdb_counts(folder: str) -> tuple[int, int]:
    query = "SELECT count(*), count(DISTINCT (trial_id, epoch)) FROM read_parquet('{}/*.parquet')"
    (counted,) = duckdb.sql(query.format(folder)).fetchall()
    return counted


@pytest.mark.parametrize("mode, kill_at", CUTS, ids=[f"{mode}-{step}" for mode, step in CUTS])
def test_a_compaction_cut_at_any_step_reads_every_row_once_and_recovers(tmp_path, mode, kill_at):
    swaps = mode == "swap"
    if kill_at == 0:  # the parametrization cuts before every step there is
        assert steps_of_one_compaction(tmp_path / "count", swaps) == len([c for c in CUTS if c[0] == mode])
    study = write_study(tmp_path, trials=CUT_TRIALS)
    store = Store(study)
    store.swaps = swaps
    with Cut(store, kill_at), pytest.raises(Killed):
        store.compact(min_trials=1)
    rows = (CUT_TRIALS + 2) * EPOCHS
    # While the compaction is cut, the Store's readers show every row once; on local disk plain
    # pandas and DuckDB do too, with no repair.
    reader = Store(Study(str(tmp_path), "compacted"))
    assert_every_row_once(reader.trials(), reader.epochs())
    if swaps:
        assert_every_row_once(plain(Path(study.trials_dir)), plain(Path(study.epochs_dir)))
        assert duckdb_counts(study.epochs_dir) == (rows, rows)
    # The next driver finishes or undoes it: plain pandas and DuckDB read each row once either way.
    Store(Study(str(tmp_path), "compacted")).compact(min_trials=1)
    assert not Path(reader.intent_path).exists()
    assert_every_row_once(plain(Path(study.trials_dir)), plain(Path(study.epochs_dir)))
    assert duckdb_counts(study.epochs_dir) == (rows, rows)
    # Of the generations, the linked one and at most the one before it remain.
    assert len(list(Path(study.store_dir).glob(".epochs.g*"))) <= 2


KILLED_COMPACTION = """
import sys, time
from search.store.segments import Store
from search.store.study import Study
store = Store(Study(sys.argv[1], "compacted"))
print("ready", flush=True)
started = time.perf_counter()
store.compact(min_trials=1)
print(time.perf_counter() - started, flush=True)
"""


def compact_in_process(root: Path, kill_after: float | None) -> float | None:
    """Compact the study at `root` in a new process; SIGKILL it `kill_after` seconds after it is
    ready. The compaction's seconds when it ran to the end, else None."""
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_COMPACTION, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    try:
        process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return None
    assert process.returncode == 0
    return float(process.stdout.read())


def test_sigkill_during_a_compaction_never_shows_a_row_twice_or_loses_one(tmp_path):
    """Real kills at random moments of a compaction (reading its files, writing the segments,
    swapping the folders); after each the Store, plain pandas and DuckDB read every row once, and
    again once the next driver has compacted."""
    trials = 80
    expected = expected_trials(trials, running=0)
    seconds = compact_in_process(write_study(tmp_path / "timed", trials=trials, running=0).storage, None)
    assert seconds is not None
    rng = np.random.default_rng(0)
    killed = 0
    for attempt in range(3):
        study = write_study(tmp_path / f"kill{attempt}", trials=trials, running=0)
        if compact_in_process(Path(study.storage), float(rng.uniform(0.1, 0.9)) * seconds) is None:
            killed += 1
        reader = Store(Study(study.storage, "compacted"))
        assert set(zip(reader.trials()["trial_id"], reader.trials()["status"])) == expected
        epochs = reader.epochs()
        assert len(epochs) == trials * EPOCHS and not epochs.duplicated(["trial_id", "epoch"]).any()
        # Plain readers too, before any other driver comes.
        frame = plain(Path(study.epochs_dir))
        assert len(frame) == trials * EPOCHS and not frame.duplicated(["trial_id", "epoch"]).any()
        assert duckdb_counts(study.epochs_dir) == (trials * EPOCHS, trials * EPOCHS)
        assert compact_in_process(Path(study.storage), None) is not None  # the next driver
        assert not Path(reader.intent_path).exists()
        frame = plain(Path(study.epochs_dir))
        assert len(frame) == trials * EPOCHS and not frame.duplicated(["trial_id", "epoch"]).any()
    assert killed >= 2


@pytest.mark.parametrize(
    "mode, kill_at, left, outcome",
    [
        ("intent", 8, "{store}/_compaction.json", "finished"),
        ("swap", 10, "{store}/.epochs.g000001", "undone"),
    ],
    ids=["intent", "swap"],
)
def test_doctor_names_a_cut_compaction_and_repair_finishes_it(tmp_path, mode, kill_at, left, outcome):
    from search.repair.doctor import examine, repair

    study = write_study(tmp_path, trials=CUT_TRIALS)
    study.write_spec(SweepSpec(name=study.name, storage=str(tmp_path), trials=CUT_TRIALS))
    store = Store(study)
    store.swaps = mode == "swap"
    # Half-way through removing what the segments replace; or writing the epochs' new generation.
    with Cut(store, kill_at), pytest.raises(Killed):
        store.compact(min_trials=1)
    left = left.format(store=study.store_dir)
    (finding,) = [f for f in examine(study) if f.check == "compaction"]
    assert not finding.ok and finding.repairable and left in finding.detail
    said: list[str] = []
    assert repair(study, said.append) == 1
    assert said == [f"{outcome} the compaction a killed driver left ({left})"]
    assert [f.ok for f in examine(study) if f.check == "compaction"] == [True]
    frame = plain(Path(study.epochs_dir))
    assert len(frame) == (CUT_TRIALS + 2) * EPOCHS and not frame.duplicated(["trial_id", "epoch"]).any()


def test_pareto_without_the_epoch_level_opens_no_epoch_file_and_prints_the_same_front(tmp_path):
    from fake_study import fake_study

    from search.analysis.pareto import load_analysis
    from search.report.terminal import pareto_output

    study = fake_study(tmp_path, "front", 150, segments=True)
    full = load_analysis(study)[1]
    counting = Counting()
    study.fs = pafs.PyFileSystem(counting)
    light = load_analysis(study, epochs=False, every_setting=False)[1]
    assert counting.opened and not any("/epochs/" in p for p in counting.opened)
    assert len(light.front) > 1 and any(c.startswith("param.") for c in light.front.columns)
    for output in ("table", "json", "csv"):
        assert pareto_output(light, output=output) == pareto_output(full, output=output)
        assert pareto_output(light, feasible_only=True, output=output) == pareto_output(
            full, feasible_only=True, output=output
        )


def test_status_and_pareto_never_open_the_epoch_table(tmp_path, capsys, caplog):
    """Every epoch file replaced by junk: `status` and `pareto` answer without a word about them,
    `pareto --epoch-level`, which needs them, names them."""
    from fake_study import fake_study

    from search.cli import main

    study = fake_study(tmp_path, "junk", 80, segments=True)
    for path in Path(study.epochs_dir).glob("*.parquet"):
        path.write_bytes(b"not parquet")
    where = ["junk", "--storage", str(tmp_path)]
    assert main(["status", *where]) == 0 and main(["pareto", *where]) == 0
    assert "cannot be read" not in caplog.text + capsys.readouterr().err
    assert main(["pareto", *where, "--epoch-level"]) == 0
    assert "cannot be read" in caplog.text + capsys.readouterr().err
