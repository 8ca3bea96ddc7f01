"""Damaged study files: named in one line, isolated from the rest of the study, checked before a
resume changes anything, and repaired by `doctor --repair`."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from study_helpers import fake_study

from search.cli import main
from search.store import segments
from search.store.journal import check_journal
from search.store.segments import Store


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _with_journal(study) -> Path:
    """An Optuna journal beside the fake study's store, as a sweep leaves one."""
    storage = JournalStorage(JournalFileBackend(study.journal_path))
    optuna_study = optuna.create_study(study_name=study.name, storage=storage, directions=["maximize"])
    for value in (0.6, 0.7, 0.8):
        optuna_study.add_trial(optuna.trial.create_trial(values=[value]))
    return Path(study.journal_path)


@pytest.mark.parametrize("damage", ["junk", "truncated"])
def test_an_unreadable_store_file_is_named_and_left_out_and_the_rest_of_the_study_reads(
    damage, tmp_path, capsys, caplog
):
    study = fake_study(tmp_path, "torn", 6)
    victim = Path(study.trials_dir) / "t00001.parquet"
    data = victim.read_bytes()
    victim.write_bytes(b"not parquet at all" if damage == "junk" else data[: len(data) // 2])
    for command in (["status"], ["pareto"], ["report", "-o", str(tmp_path / "r.html")]):
        assert main([*command[:1], "torn", "--storage", str(tmp_path), *command[1:]]) == 0, command
    trials = Store(study).trials()
    assert "t00001" not in set(trials["trial_id"]) and len(trials) == 5
    named = [r.getMessage() for r in caplog.records if str(victim) in r.getMessage()]
    assert len(named) == 1 and "t00001 is left out" in named[0]  # named once, however often it is read


def test_a_resume_refuses_an_unreadable_store_file_before_changing_anything(tmp_path, capsys):
    study = fake_study(tmp_path, "torn", 6)
    _with_journal(study)
    (Path(study.epochs_dir) / "t00002.parquet").write_bytes(b"PAR1 garbage")
    before = _snapshot(tmp_path)
    assert main(["resume", "torn", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "t00002.parquet: cannot be read" in err
    assert "gainakt-search doctor torn --repair" in err
    assert _snapshot(tmp_path) == before


def test_a_garbled_journal_line_stops_a_resume_naming_the_line_before_anything_changes(tmp_path, capsys):
    study = fake_study(tmp_path, "garbled", 6)
    journal = _with_journal(study)
    lines = journal.read_bytes().split(b"\n")
    lines[2] = b'{"op_code": 4, "worker_id": "x", "study_id"\x00\x00'
    journal.write_bytes(b"\n".join(lines))
    before = _snapshot(tmp_path)
    assert main(["resume", "garbled", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{journal} line 3: not an Optuna journal entry" in err
    assert _snapshot(tmp_path) == before
    assert main(["doctor", "garbled", "--storage", str(tmp_path)]) == 1
    assert "FAIL  journal:" in capsys.readouterr().out


def test_doctor_repair_quarantines_unreadable_files_and_drops_a_torn_journal_line(tmp_path, capsys):
    study = fake_study(tmp_path, "broken", 6)
    journal = _with_journal(study)
    entries = check_journal(journal, "broken").lines
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 5, "trial_id": 2, "sta')  # cut off by a crash
    victim = Path(study.trials_dir) / "t00003.parquet"
    victim.write_bytes(b"junk")
    assert main(["doctor", "broken", "--storage", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  store: 1 unreadable file(s)" in out and "FAIL  journal:" in out and "torn last line" in out
    assert main(["doctor", "broken", "--storage", str(tmp_path), "--repair"]) == 1  # checkpoints stay missing
    out = capsys.readouterr().out
    assert f"moved {victim} to {tmp_path}/broken/quarantine/store/trials/t00003.parquet" in out
    assert "OK    store:" in out and "OK    journal: " in out
    assert (
        tmp_path / "broken" / "quarantine" / "store" / "trials" / "t00003.parquet"
    ).read_bytes() == b"junk"
    assert (
        check_journal(journal, "broken").lines == entries and not check_journal(journal, "broken").torn_tail
    )


def test_a_journal_lock_left_by_a_killed_driver_is_removed_even_when_it_points_at_a_moved_journal(tmp_path):
    """Optuna's lock is a link to the journal's path when it was taken: after a move it dangles,
    and Optuna's own stale-lock check (os.stat through the link) would fail on it."""
    from search.store.journal import drop_stale_lock

    study = fake_study(tmp_path, "locked", 3)
    journal = _with_journal(study)
    lock = Path(f"{journal}.lock")
    lock.symlink_to(tmp_path / "gone" / "optuna.journal")  # where the journal was before a move
    assert drop_stale_lock(journal) and not os.path.lexists(lock)
    assert not drop_stale_lock(journal)


def _segment(folder: str) -> Path:
    (found,) = Path(folder).glob("segment-*.parquet")
    return found


def _replace_double(path: Path, value: float, by: float, occurrence: int) -> None:
    """Overwrite one occurrence (0 the first, -1 the last) of `value`'s eight bytes in the file."""
    data, needle = path.read_bytes(), struct.pack("<d", value)
    places = [i for i in range(len(data) - 7) if data[i : i + 8] == needle]
    assert places, f"{value} not found in {path}"
    at = places[occurrence]
    path.write_bytes(data[:at] + struct.pack("<d", by) + data[at + 8 :])


def test_bit_rot_inside_a_data_page_is_named_by_every_reader_and_never_read_as_data(
    tmp_path, capsys, caplog, monkeypatch
):
    study = fake_study(tmp_path, "rotten", 6, segments=True)
    victim = _segment(study.trials_dir)
    aucs = pq.read_table(victim)["auc"].to_pylist()
    middle = sorted(aucs)[len(aucs) // 2]  # neither the minimum nor the maximum: only in the data page
    _replace_double(victim, middle, 0.987654321, 0)
    # The case is real: without checksums the file parses and shows the changed AUC as data.
    assert 0.987654321 in pq.read_table(victim)["auc"].to_pylist()
    for command in (["status"], ["pareto"], ["report", "-o", str(tmp_path / "r.html")]):
        monkeypatch.setattr(segments, "_warned", set())  # each command names it, not only the first
        caplog.clear()
        assert main([*command[:1], "rotten", "--storage", str(tmp_path), *command[1:]]) == 0, command
        named = [r.getMessage() for r in caplog.records if str(victim) in r.getMessage()]
        assert len(named) == 1 and "CRC checksum verification failed" in named[0], (command, named)
        assert "0.9877" not in capsys.readouterr().out
    assert (tmp_path / "r.html").is_file() and "0.9877" not in (tmp_path / "r.html").read_text()
    assert 0.987654321 not in set(Store(study).trials()["auc"])
    assert main(["doctor", "rotten", "--storage", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  store: 1 unreadable file(s): {victim} (could not verify page integrity" in out, out
    main(["doctor", "rotten", "--storage", str(tmp_path), "--repair"])  # a fake study: no checkpoints
    out = capsys.readouterr().out
    assert f"moved {victim} to " in out and "OK    store: " in out and not victim.exists()


def test_a_changed_byte_outside_the_pages_is_caught_by_the_segments_digest(tmp_path, capsys):
    study = fake_study(tmp_path, "drifted", 6, segments=True)
    victim = _segment(study.epochs_dir)
    highest = max(pq.read_table(victim)["auc"].to_pylist())
    _replace_double(victim, highest, 0.5, -1)  # the column's maximum in the footer's statistics
    assert len(Store(study).epochs()) == 6 * 3  # the pages are intact: the readers read it
    assert main(["doctor", "drifted", "--storage", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  store: 1 unreadable file(s): {victim} (its bytes do not match the digest" in out, out


def test_doctor_verifies_checksums_and_digests_of_an_intact_study(tmp_path, capsys):
    fake_study(tmp_path, "intact", 6, segments=True)
    main(["doctor", "intact", "--storage", str(tmp_path)])  # a fake study: its checkpoints are missing
    out = capsys.readouterr().out
    assert "OK    store: " in out and "page checksums and segment digests verified" in out, out


def _journal_as_a_sweep_leaves_it(study, running: set[str] = frozenset()) -> optuna.Study:
    """The study's Optuna journal as its searcher leaves it: a trial per store row, under the row's
    number with its trial id, told as the row ended, except the trials in `running`."""
    spec = study.read_spec()
    storage = JournalStorage(JournalFileBackend(study.journal_path))
    directions = ["maximize" if o.direction == "max" else "minimize" for o in spec.objectives]
    optuna_study = optuna.create_study(study_name=study.name, storage=storage, directions=directions)
    for row in Store(study).trials().to_dict("records"):
        trial = optuna_study.ask()
        assert trial.number == row["number"]
        trial.set_user_attr("tune_trial_id", row["trial_id"])
        if row["trial_id"] in running:
            continue
        if row["status"] == "ERROR":
            optuna_study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            optuna_study.tell(trial, [row[o.metric] for o in spec.objectives])
    return optuna_study


def test_a_trial_the_cut_journal_left_running_is_named_and_told_what_the_store_says(tmp_path, capsys):
    study = fake_study(tmp_path, "cut", 5, nan_trial=False)
    _journal_as_a_sweep_leaves_it(study, running={"t00002"})
    assert main(["doctor", "cut", "--storage", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert (
        "FAIL  journal vs store: 1 trial(s) disagree: trial t00002 (#2): COMPLETED in the store, RUNNING"
        in out
    )
    main(["doctor", "cut", "--storage", str(tmp_path), "--repair"])  # a fake study: no checkpoints
    out = capsys.readouterr().out
    assert "told the journal that trial t00002 (#2) ended COMPLETED" in out, out
    assert "OK    journal vs store: every trial has the same number and ending in both" in out, out
    row = Store(study).trial_rows()["t00002"]
    told = optuna.load_study(
        study_name="cut", storage=JournalStorage(JournalFileBackend(study.journal_path))
    ).trials[2]
    spec = study.read_spec()
    assert told.state.name == "COMPLETE" and told.values == [row[o.metric] for o in spec.objectives]
    assert (
        told.user_attrs["status"] == "COMPLETED"
        and told.user_attrs["selected_epoch"] == row["selected_epoch"]
    )


def test_a_trial_the_journal_numbers_otherwise_is_named_and_left_for_a_person(tmp_path, capsys):
    study = fake_study(tmp_path, "renumbered", 4, nan_trial=False)
    optuna_study = _journal_as_a_sweep_leaves_it(study)
    trial = optuna_study.ask()  # the journal has the store's trial 1 under another number too
    optuna_study.tell(trial, [0.5] * len(study.read_spec().objectives))
    Store(study).put_trial({**Store(study).trial_rows()["t00001"], "number": 4})
    main(["doctor", "renumbered", "--storage", str(tmp_path), "--repair"])
    out = capsys.readouterr().out
    assert "not mended: trial t00001 (#4): COMPLETED in the store, absent in the journal" in out, out
    assert "FAIL  journal vs store: 1 trial(s) disagree" in out


def test_a_garbled_lease_is_named_and_repair_removes_it(tmp_path, capsys):
    study = fake_study(tmp_path, "leased", 3)
    lease = Path(study.root) / "lease.json"
    lease.write_text('{"token": "ab", "host": ')
    assert main(["doctor", "leased", "--storage", str(tmp_path)]) == 1
    assert f"FAIL  lease: {lease} does not parse as a lease" in capsys.readouterr().out
    main(["doctor", "leased", "--storage", str(tmp_path), "--repair"])
    out = capsys.readouterr().out
    assert f"removed {lease}, which does not parse" in out and "OK    lease: " in out and not lease.exists()


def test_a_completed_trial_whose_epoch_files_were_deleted_is_named(tmp_path, capsys, caplog, monkeypatch):
    study = fake_study(tmp_path, "thinned", 4)
    for path in Path(study.epochs_dir).glob("t00001.e*.parquet"):
        path.unlink()
    for command in (["status"], ["pareto"], ["report", "-o", str(tmp_path / "r.html")]):
        monkeypatch.setattr(segments, "_warned", set())  # each command names it, not only the first
        caplog.clear()
        assert main([*command[:1], "thinned", "--storage", str(tmp_path), *command[1:]]) == 0, command
        named = [r.getMessage() for r in caplog.records if "lack epoch rows" in r.getMessage()]
        assert len(named) == 1 and ": t00001; 'gainakt-search doctor thinned'" in named[0], (command, named)
    assert main(["doctor", "thinned", "--storage", str(tmp_path)]) == 1
    assert "FAIL  epochs: 1 completed trial(s) lack epoch rows: t00001" in capsys.readouterr().out
