"""The data layer on the real ASSIST2015 files, checked against figures computed independently here."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from gainakt.batching import BatchPlan
from gainakt.sequences import Dataset


def pykt_window_count(length: int, maxlen: int = 200, min_len: int = 3) -> int:
    """pyKT's generate_sequences: full windows of `maxlen`, then the rest if it has at least `min_len`."""
    full, rest = divmod(length, maxlen)
    return full + (1 if rest >= min_len else 0)


@pytest.fixture(scope="module")
def rows(assist_dir) -> list[dict]:
    with open(assist_dir / "train_valid.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_sizes_match_the_published_figures(assist: Dataset) -> None:
    summary = assist.summary()
    assert summary["students"] == 15_275
    assert summary["interactions"] == 544_339
    assert assist.num_concepts == 100
    assert summary["length_min"] == 3 and summary["length_max"] == 618


def test_window_count_follows_pykt_rule(assist: Dataset, rows: list[dict]) -> None:
    expected = sum(pykt_window_count(len(row["concepts"].split(","))) for row in rows)
    windows = assist.train_valid.windows()
    assert len(windows) == expected
    assert windows.lengths.max() == 200 and windows.lengths.min() >= 3
    per_fold = {
        f: sum(pykt_window_count(len(r["concepts"].split(","))) for r in rows if int(r["fold"]) == f)
        for f in range(5)
    }
    assert {f: int((windows.folds == f).sum()) for f in range(5)} == per_fold


def test_fold_sizes_and_split(assist: Dataset) -> None:
    assert assist.summary()["folds"] == {f: 3_055 for f in range(5)}
    train, valid = assist.split(0)
    assert set(np.unique(valid.folds)) == {0}
    assert 0 not in set(np.unique(train.folds))
    assert len(train) + len(valid) == len(assist.train_valid.windows())
    assert len(np.unique(valid.students)) == 3_055


def test_bucketed_padding_share_on_training_folds(assist: Dataset) -> None:
    train, _ = assist.split(0)
    bucketed = BatchPlan(train, batch_size=64, padding="bucketed", seed=0)
    fixed = BatchPlan(train, batch_size=64, padding="fixed", seed=0)
    assert bucketed.padding_share() <= 0.10
    assert 0.80 <= fixed.padding_share() <= 0.85
    # The plan's figure is what the batches really hold.
    real = total = 0
    for batch in bucketed.batches(epoch=0):
        real += batch.num_real
        total += batch.mask.numel()
    assert real == train.num_interactions - len(train)
    assert 1 - real / total == pytest.approx(bucketed.padding_share(), abs=1e-12)


def pykt_sequences_rows(row: dict, maxlen: int = 200, min_len: int = 3) -> list[str]:
    """One student as pyKT's train_valid_sequences.csv writes it: 200-long windows padded with -1."""
    concepts, responses = row["concepts"].split(","), row["responses"].split(",")
    out = []
    for start in range(0, len(concepts), maxlen):
        c, r = concepts[start : start + maxlen], responses[start : start + maxlen]
        if len(c) < maxlen and len(c) < min_len:
            break
        pad = ["-1"] * (maxlen - len(c))
        mask = ["1"] * len(c) + pad
        out.append(
            f'{row["fold"]},{row["uid"]},"{",".join(c + pad)}","{",".join(r + pad)}","{",".join(mask)}"'
        )
    return out


def test_windowed_file_reads_as_the_same_windows(assist: Dataset, rows: list[dict], tmp_path) -> None:
    sample = rows[:2000]
    lines = ["fold,uid,concepts,responses,selectmasks"] + [
        line for row in sample for line in pykt_sequences_rows(row)
    ]
    (tmp_path / "train_valid_sequences.csv").write_text("\n".join(lines) + "\n")
    from gainakt.data import load_dataset

    windowed = load_dataset(tmp_path).train_valid.windows()
    ours = assist.train_valid.subset(np.arange(len(assist.train_valid)) < 2000).windows()

    def as_tuples(w):
        return sorted(
            (int(f), tuple(w.concepts[s : s + n]), tuple(w.responses[s : s + n]))
            for f, s, n in zip(w.folds, w.starts, w.lengths)
        )

    assert len(windowed) == len(ours) > 2000
    assert as_tuples(windowed) == as_tuples(ours)
    assert len(windowed.student_lengths()) == 2000
