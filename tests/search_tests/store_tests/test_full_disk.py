"""A full disk, for real: a small tmpfs filled to its last byte. Each write that finds no room ends
the command with one line naming the file, exit code 1, no temporary file and no half-written one,
and the work continues once space is freed."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fake_study import fake_study
from sweep_helpers import act_when, sweep_argv, tables

from gainakt.errors import StorageFull
from search.cli import main
from search.store import layout
from search.store.segments import Store
from search.store.study import Study


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a small filesystem of its own: mount said {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


# Epochs of a second or so (four times the students), so that the disk fills mid-sweep.
SLOWER = ("--data", "synthetic:students=1200,concepts=10,seed=3")


def _fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; its path."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as out:
        block = b"\0" * 65536
        while True:
            try:
                out.write(block)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                block = block[: len(block) // 2]
                if not block:
                    return ballast


def _temporary_files(disk: Path) -> list[Path]:
    return [p for p in disk.rglob("*") if p.name.endswith(".tmp") or ".link-" in p.name]


def _tables(study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The store as a plain reader sees it."""
    trials = pd.read_parquet(study.trials_dir).sort_values("trial_id", ignore_index=True)
    epochs = pd.read_parquet(study.epochs_dir).sort_values(["trial_id", "epoch"], ignore_index=True)
    return trials, epochs


def test_a_full_disk_ends_a_command_in_one_line_with_nothing_half_written_and_it_succeeds_once_space_is_freed(
    small_disk, capsys
):
    study = fake_study(small_disk, "full", trials=6)  # each trial's own files: a compaction has work
    before = _tables(study)
    ballast = _fill(small_disk)

    # A compaction (the store's largest write) that finds no room changes nothing a reader sees.
    store = Store(Study(str(small_disk), "full"))
    with pytest.raises(StorageFull) as raised:
        store.compact(min_trials=1)
    assert f"{study.store_dir}/" in str(raised.value) and "no space left on the device" in str(raised.value)
    for seen, expected in zip(_tables(study), before, strict=True):
        pd.testing.assert_frame_equal(seen, expected)
    assert not _temporary_files(small_disk)

    # A command: one line naming the file it could not write, exit 1, no report left behind.
    capsys.readouterr()
    assert main(["report", "full", "--storage", str(small_disk)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    report = f"{study.root}/{layout.REPORT_HTML}"
    assert err == [
        f"gainakt-search: error: {report}: could not be written (no space left on the device); "
        "nothing was half-written; free space, then run the command again"
    ]
    assert not Path(report).exists() and not _temporary_files(small_disk)

    ballast.unlink()
    assert main(["report", "full", "--storage", str(small_disk)]) == 0
    assert Path(report).stat().st_size > 0
    assert Store(Study(str(small_disk), "full")).compact(min_trials=1) > 0
    for seen, expected in zip(_tables(study), before, strict=True):
        pd.testing.assert_frame_equal(seen, expected, check_like=True)


@pytest.mark.slow
def test_a_sweep_whose_disk_fills_stops_in_one_line_and_resumes_once_space_is_freed(small_disk, shared_ray):
    argv = sweep_argv(small_disk, "filling", 2, 3, "--address", shared_ray, "--concurrent", "1", *SLOWER)
    ballast: list[Path] = []

    def first_epoch_stored() -> bool:
        return Study(str(small_disk), "filling").exists() and len(tables(small_disk, "filling")[1]) > 0

    code, _, err = act_when(argv, first_epoch_stored, lambda driver: ballast.append(_fill(small_disk)))
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"gainakt-search: error: {small_disk}/filling/"), last
    assert last.endswith(
        "(no space left on the device); nothing was half-written; free space, then "
        f"'gainakt-search resume filling --storage {small_disk}' continues the study"
    ), last
    assert not _temporary_files(small_disk)

    ballast[0].unlink()
    assert main(["resume", "filling", "--storage", str(small_disk)]) == 0
    trials, epochs = tables(small_disk, "filling")
    assert len(trials) == 2 and set(trials["status"]) == {"COMPLETED"}
    assert (
        not epochs.duplicated(["trial_id", "epoch"]).any() and (epochs.groupby("trial_id").size() == 3).all()
    )
