"""The simulator: deterministic, truthful mastery, round trip through pyKT CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from gainakt.data import REQUIRED_COLUMNS, Dataset, Sequences, load_dataset
from gainakt.errors import DataError
from gainakt.metrics import roc_auc
from gainakt.synthetic import SyntheticConfig
from search.cli import main


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = load_dataset("synthetic:students=200,seed=7")
    b = load_dataset("synthetic:students=200,seed=7")
    c = load_dataset("synthetic:students=200,seed=8")
    for field in ("concepts", "responses", "true_mastery", "true_prob"):
        assert np.array_equal(getattr(a.train_valid, field), getattr(b.train_valid, field))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_true_mastery_in_unit_interval_and_never_drops(small_synthetic: Dataset) -> None:
    seqs = small_synthetic.train_valid
    assert seqs.true_mastery.min() >= 0 and seqs.true_mastery.max() <= 1
    for start, length in zip(seqs.starts, seqs.lengths):
        concepts = seqs.concepts[start : start + length]
        mastery = seqs.true_mastery[start : start + length]
        for concept in np.unique(concepts):
            assert (np.diff(mastery[concepts == concept]) >= 0).all()
    # practice raises mastery: the mean over repeated attempts strictly grows somewhere
    assert (np.diff(seqs.true_mastery) > 0).any()


def test_true_probability_follows_guess_and_slip(small_synthetic: Dataset) -> None:
    seqs = small_synthetic.train_valid
    config = SyntheticConfig.parse(small_synthetic.source)
    expected = config.guess + (1 - config.guess - config.slip) * seqs.true_mastery
    np.testing.assert_allclose(seqs.true_prob, expected)
    # responses are drawn from it: the Bayes-optimal AUC is well above chance
    assert roc_auc(seqs.responses, seqs.true_prob) > 0.65


def test_shape_is_configurable_and_lengths_have_a_long_tail() -> None:
    data = load_dataset("synthetic:students=500,concepts=12,test=40,length=30,seed=1")
    assert data.num_concepts == 12 and data.train_valid.concepts.max() < 12
    assert len(data.train_valid) == 500 and len(data.test) == 40
    lengths = data.train_valid.lengths
    assert lengths.min() >= 3 and np.median(lengths) == pytest.approx(30, rel=0.25)
    assert lengths.max() > 3 * np.median(lengths)
    assert np.bincount(data.train_valid.folds).tolist() == [100] * 5


def write_pykt_csv(seqs: Sequences, path: Path) -> None:
    """Per-student sequences as a pyKT `fold,uid,concepts,responses` CSV."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REQUIRED_COLUMNS)
        for start, length, fold, student in zip(seqs.starts, seqs.lengths, seqs.folds, seqs.students):
            span = slice(start, start + length)
            joined = (",".join(map(str, seqs.concepts[span])), ",".join(map(str, seqs.responses[span])))
            writer.writerow((fold, seqs.uids[student], *joined))


def test_written_csv_reads_back_identically(small_synthetic: Dataset, tmp_path) -> None:
    write_pykt_csv(small_synthetic.train_valid, tmp_path / "train_valid.csv")
    write_pykt_csv(small_synthetic.test, tmp_path / "test.csv")
    back = load_dataset(tmp_path)
    for split in ("train_valid", "test"):
        ours, theirs = getattr(small_synthetic, split), getattr(back, split)
        assert np.array_equal(ours.lengths, theirs.lengths)
        for field in ("concepts", "responses"):
            assert np.array_equal(
                getattr(ours, field)[ours.positions()], getattr(theirs, field)[theirs.positions()]
            )
        assert [ours.uids[s] for s in ours.students] == [theirs.uids[s] for s in theirs.students]
    assert np.array_equal(small_synthetic.train_valid.folds, back.train_valid.folds)
    assert back.num_concepts == small_synthetic.num_concepts
    assert back.fingerprint == small_synthetic.fingerprint


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        ("synthetic:pupils=3", "unknown setting 'pupils=3'"),
        ("synthetic:students=many", "students='many' is not an integer"),
        ("synthetic:students=2", "'students' must be at least 5"),
        ("synthetic:guess=0.6,slip=0.5", "guess + slip < 1"),
    ],
)
def test_bad_simulator_spec(spec: str, phrase: str) -> None:
    with pytest.raises(DataError, match=None) as err:
        load_dataset(spec)
    assert phrase in str(err.value) and spec.split(":")[0] in str(err.value)


def test_data_check_prints_bayes_optimal_auc(capsys) -> None:
    assert main(["data", "check", "synthetic:students=200,seed=2"]) == 0
    text = capsys.readouterr().out
    assert "Bayes-optimal AUC" in text and "fingerprint" in text
    assert main(["data", "check", "synthetic:students=200,seed=2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    data = load_dataset("synthetic:students=200,seed=2")
    _, valid = data.split(0)
    inner = np.concatenate([np.arange(s + 1, s + n) for s, n in zip(valid.starts, valid.lengths)])
    assert summary["bayes_auc"] == pytest.approx(roc_auc(valid.responses[inner], valid.true_prob[inner]))
    assert 0.6 < summary["bayes_auc"] < 0.95
    assert summary["students"] == 200 and summary["fingerprint"] == data.fingerprint
