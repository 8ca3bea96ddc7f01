"""Damaged study files: named in one line, isolated from the rest of the study, checked before a
resume changes anything, and repaired by `doctor --repair`."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from study_helpers import fake_study

from search.cli import main
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
