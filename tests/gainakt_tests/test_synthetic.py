"""The simulator: deterministic, truthful mastery, round trip through pyKT CSV, and its options."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from gainakt.data import load_dataset
from gainakt.errors import DataError
from gainakt.metrics import roc_auc
from gainakt.pykt import REQUIRED_COLUMNS
from gainakt.sequences import Dataset, Sequences
from gainakt.synthetic import SyntheticConfig
from search.cli import main

TRUTH = ("true_mastery", "true_prob", "true_gain", "true_mastery_all", "true_second_concept")
OPTIONS = "forgetting=0.1,two_concept_share=0.3,students_differ=1"


@pytest.mark.parametrize("options", ["", "," + OPTIONS])
def test_same_seed_same_data_other_seed_other_data(options: str) -> None:
    a = load_dataset("synthetic:students=200,seed=7" + options)
    b = load_dataset("synthetic:students=200,seed=7" + options)
    c = load_dataset("synthetic:students=200,seed=8" + options)
    for field in ("concepts", "responses", *TRUTH):
        assert np.array_equal(getattr(a.train_valid, field), getattr(b.train_valid, field))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def simulator_digest(data: Dataset) -> str:
    """SHA-256 of what the original simulator produced: folds, lengths, concepts, responses exactly,
    true mastery and probability rounded to 10 decimals (robust to the last bit of `exp`), both splits."""
    digest = hashlib.sha256()
    for seqs in (data.train_valid, data.test):
        pos = seqs.positions()
        for array in (seqs.folds, seqs.lengths, seqs.concepts[pos], seqs.responses[pos]):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        for array in (seqs.true_mastery[pos], seqs.true_prob[pos]):
            digest.update(np.ascontiguousarray(np.round(array, 10)).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [  # computed with the simulator as it was before forgetting, spreads and two-concept items existed
        ("synthetic:students=200,seed=7", "a43c3497613dea2756b5508e868d81ade87d52a969b31863776c52ce5f2697c9"),
        ("synthetic", "eaef186516a6fedf498b2afaf5e7b28f985b73623e55e0000deb2dfac897b600"),
        # the options at their defaults, spelled out, change nothing either
        (
            "synthetic:students=200,seed=7,forgetting=0,ability_spread=0.3,difficulty_spread=1.3,"
            "two_concept_share=0,students_differ=0",
            "a43c3497613dea2756b5508e868d81ade87d52a969b31863776c52ce5f2697c9",
        ),
    ],
)
def test_defaults_reproduce_the_original_simulator(spec: str, expected: str) -> None:
    data = load_dataset(spec)
    assert simulator_digest(data) == expected
    assert (data.train_valid.true_second_concept == -1).all()


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


# ---------------------------------------------------------------------------- the truth kept


def per_concept_visits(seqs: Sequences):
    """(first flat index of the student, flat indices of one concept's practices), per student and concept."""
    for start, length in zip(seqs.starts, seqs.lengths):
        concepts = seqs.concepts[start : start + length]
        for concept in np.unique(concepts):
            yield start, start + np.flatnonzero(concepts == concept)


@pytest.mark.parametrize("options", ["", "," + OPTIONS])
def test_full_mastery_matrix_matches_the_answered_concept(options: str) -> None:
    data = load_dataset("synthetic:students=300,concepts=20,seed=3" + options)
    for seqs in (data.train_valid, data.test):
        n = len(seqs.concepts)
        assert seqs.true_mastery_all.shape == (n, 20) and seqs.true_mastery_all.dtype == np.float32
        assert seqs.true_gain.shape == seqs.true_second_concept.shape == (n,)
        at_answered = seqs.true_mastery_all[np.arange(n), seqs.concepts]
        assert np.array_equal(at_answered, seqs.true_mastery.astype(np.float32))
        assert seqs.true_mastery_all.min() >= 0 and seqs.true_mastery_all.max() <= 1


def test_true_gain_is_the_only_change_without_forgetting(small_synthetic: Dataset) -> None:
    seqs = small_synthetic.train_valid
    assert (seqs.true_gain > 0).all()  # every attempt teaches something, never a negative gain
    for _, visits in per_concept_visits(seqs):
        # the rise between consecutive practices of a concept is the gain of the earlier one
        np.testing.assert_allclose(
            np.diff(seqs.true_mastery[visits]), seqs.true_gain[visits[:-1]], rtol=0, atol=1e-12
        )
    # and the full matrix moves only there: row t+1 - row t is true_gain[t] at c[t], 0 elsewhere
    full = seqs.true_mastery_all.astype(np.float64)
    for start, length in zip(seqs.starts, seqs.lengths):
        span = np.arange(start, start + length - 1)
        expected = np.zeros((len(span), full.shape[1]))
        expected[np.arange(len(span)), seqs.concepts[span]] = seqs.true_gain[span]
        np.testing.assert_allclose(full[span + 1] - full[span], expected, rtol=0, atol=1e-6)


def test_forgetting_decays_mastery_towards_its_floor_between_practices() -> None:
    forgetting = 0.1
    seqs = load_dataset(f"synthetic:students=300,concepts=20,seed=3,forgetting={forgetting}").train_valid
    dropped = 0
    for start, visits in per_concept_visits(seqs):
        floor = float(seqs.true_mastery_all[start, seqs.concepts[visits[0]]])  # nothing practised yet
        before, after = visits[:-1], visits[1:]
        between = after - before - 1  # interactions in between
        kept = np.exp(-forgetting * between)
        expected = floor + (seqs.true_mastery[before] + seqs.true_gain[before] - floor) * kept
        np.testing.assert_allclose(seqs.true_mastery[after], expected, rtol=0, atol=1e-6)
        dropped += int((np.diff(seqs.true_mastery[visits]) < -1e-9).sum())
        # consecutive attempts (within a run) lose nothing: the rise is exactly the gain
        next_door = between == 0
        np.testing.assert_allclose(
            seqs.true_mastery[after[next_door]] - seqs.true_mastery[before[next_door]],
            seqs.true_gain[before[next_door]],
            rtol=0,
            atol=1e-12,
        )
    assert dropped > 0  # some student's true mastery of some concept fell between two practices
    # the probability the answer was drawn with is the decayed mastery's
    config = SyntheticConfig.parse(f"synthetic:forgetting={forgetting}")
    np.testing.assert_allclose(
        seqs.true_prob, config.guess + (1 - config.guess - config.slip) * seqs.true_mastery
    )


def test_without_forgetting_mastery_never_drops_even_with_two_concept_items() -> None:
    seqs = load_dataset("synthetic:students=300,concepts=20,seed=3,two_concept_share=0.5").train_valid
    for _, visits in per_concept_visits(seqs):
        assert (np.diff(seqs.true_mastery[visits]) >= 0).all()
    full = seqs.true_mastery_all
    for start, length in zip(seqs.starts, seqs.lengths):
        assert (np.diff(full[start : start + length], axis=0) >= 0).all()


def test_two_concept_items_answer_with_both_and_teach_both() -> None:
    spec = "synthetic:students=300,concepts=20,seed=3,two_concept_share=0.3"
    config = SyntheticConfig.parse(spec)
    seqs = load_dataset(spec).train_valid
    second = seqs.true_second_concept
    two = second >= 0
    assert two.mean() == pytest.approx(0.3, abs=0.02)
    assert (second[two] != seqs.concepts[two]).all()
    partners = {(int(a), int(b)) for a, b in zip(seqs.concepts[two], second[two])}
    assert len(partners) == len({a for a, _ in partners})  # one fixed partner per concept
    n = np.arange(len(seqs.concepts))
    m_b = np.where(two, seqs.true_mastery_all[n, np.maximum(second, 0)], 1.0)
    np.testing.assert_allclose(
        seqs.true_prob, config.guess + (1 - config.guess - config.slip) * seqs.true_mastery * m_b, rtol=1e-6
    )
    # the second concept learns from the item too: its mastery is higher on the student's next row
    followed = np.concatenate([np.arange(s, s + k - 1) for s, k in zip(seqs.starts, seqs.lengths)])
    inner = followed[two[followed]]
    rows = seqs.true_mastery_all
    assert (rows[inner + 1, second[inner]] > rows[inner, second[inner]]).all()


def between_concept_share(seqs: Sequences) -> float:
    """Share of the variance of the true mastery (over interactions) that lies between concepts."""
    pos = seqs.positions()
    mastery, concepts = seqs.true_mastery[pos], seqs.concepts[pos]
    counts = np.bincount(concepts)
    present = counts > 0
    means = np.zeros(len(counts))
    means[present] = np.bincount(concepts, weights=mastery)[present] / counts[present]
    between = float(np.mean((means[concepts] - mastery.mean()) ** 2))
    within = float(np.mean((mastery - means[concepts]) ** 2))
    assert between + within == pytest.approx(float(np.var(mastery)))
    return between / (between + within)


def test_students_differ_preset_moves_the_variance_from_concepts_to_students() -> None:
    preset = SyntheticConfig.parse("synthetic:students_differ=1")
    assert (preset.ability_spread, preset.difficulty_spread) == (1.3, 0.3)
    assert SyntheticConfig.parse("synthetic:students_differ=1,ability_spread=2").ability_spread == 2
    assert SyntheticConfig.parse(preset.spec) == preset
    default = between_concept_share(load_dataset("synthetic").train_valid)
    differ = between_concept_share(load_dataset("synthetic:students_differ=1").train_valid)
    assert default > 0.6 and differ < 0.5, (default, differ)


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        ("synthetic:forgetting=-0.1", "'forgetting' must be >= 0"),
        ("synthetic:ability_spread=-1", "'ability_spread' must be >= 0"),
        ("synthetic:two_concept_share=1.5", "'two_concept_share' must be in [0, 1]"),
        ("synthetic:students_differ=2", "students_differ='2' is not 0 or 1"),
        ("synthetic:forgetting=fast", "forgetting='fast' is not a number"),
    ],
)
def test_bad_option(spec: str, phrase: str) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(spec)
    assert phrase in str(err.value)


def test_data_check_prints_bayes_optimal_auc_with_forgetting(capsys) -> None:
    spec = "synthetic:students=200,seed=2,forgetting=0.1"
    assert main(["data", "check", spec]) == 0
    assert "Bayes-optimal AUC" in capsys.readouterr().out
    assert main(["data", "check", spec, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    data = load_dataset(spec)
    _, valid = data.split(0)
    inner = np.concatenate([np.arange(s + 1, s + n) for s, n in zip(valid.starts, valid.lengths)])
    assert summary["bayes_auc"] == pytest.approx(roc_auc(valid.responses[inner], valid.true_prob[inner]))
    assert 0.6 < summary["bayes_auc"] < 0.95
    # the answers were drawn from true_prob: calibrated within sampling noise, decile by decile
    seqs = data.train_valid
    order = np.argsort(seqs.true_prob)
    for chunk in np.array_split(order, 10):
        p = seqs.true_prob[chunk]
        noise = np.sqrt((p * (1 - p)).sum()) / len(chunk)
        assert abs(seqs.responses[chunk].mean() - p.mean()) < 4 * noise
