"""The lookup baselines (gainakt/baselines.py) against naive loops and hand computations, on the
simulator and on tiny hand-made windows, and the `baselines` command."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from gainakt import baselines, metrics, strict_json
from gainakt.baselines import (
    BASELINES,
    SMOOTHING_GRID,
    BaseRate,
    History,
    LastResponse,
    Pfa,
    RunningAccuracy,
    baseline_metrics,
    best_baseline,
    estimates,
    fit_baselines,
)
from gainakt.data import load_dataset
from gainakt.evaluate import Observations, eval_metrics
from gainakt.schema import EvalMetrics
from gainakt.sequences import Dataset, Sequences
from search.cli import main

SOURCE = "synthetic:students=300,concepts=10,seed=3"


@pytest.fixture(scope="module")
def synthetic() -> Dataset:
    return load_dataset(SOURCE)


@pytest.fixture(scope="module")
def split(synthetic: Dataset) -> tuple[Sequences, Sequences]:
    return synthetic.split(0)


def sequences(concepts: list[list[int]], responses: list[list[int]]) -> Sequences:
    """One sequence (student) per list, fold 0."""
    lengths = np.array([len(c) for c in concepts], dtype=np.int64)
    return Sequences(
        concepts=np.array(sum(concepts, []), dtype=np.int64),
        responses=np.array(sum(responses, []), dtype=np.int64),
        starts=np.cumsum(lengths) - lengths,
        lengths=lengths,
        folds=np.zeros(len(lengths), dtype=np.int64),
        students=np.arange(len(lengths)),
        uids=tuple(f"s{i}" for i in range(len(lengths))),
    )


def naive_rates(train: Sequences) -> dict[int, float]:
    """Each concept's share of correct answers over the training windows, by plain loops."""
    correct: dict[int, int] = {}
    attempts: dict[int, int] = {}
    for w in range(len(train)):
        for i in range(train.starts[w], train.starts[w] + train.lengths[w]):
            c = int(train.concepts[i])
            correct[c] = correct.get(c, 0) + int(train.responses[i])
            attempts[c] = attempts.get(c, 0) + 1
    return {c: correct[c] / attempts[c] for c in attempts}


def naive_history(windows: Sequences) -> dict[int, tuple[int, int, int]]:
    """For each flat index: earlier successes, failures and last answer (-1 none) on its concept,
    counting from the start of its window."""
    out = {}
    for w in range(len(windows)):
        seen: dict[int, tuple[int, int, int]] = {}
        for i in range(windows.starts[w], windows.starts[w] + windows.lengths[w]):
            c, r = int(windows.concepts[i]), int(windows.responses[i])
            s, f, last = seen.get(c, (0, 0, -1))
            out[i] = (s, f, last)
            seen[c] = (s + r, f + 1 - r, r)
    return out


def log_likelihood(baseline: baselines.Baseline, windows: Sequences) -> float:
    before, _ = estimates(baseline, windows)
    pos = windows.positions()
    p, y = np.clip(before[pos], 1e-12, 1 - 1e-12), windows.responses[pos]
    return float((y * np.log(p) + (1 - y) * np.log(1 - p)).sum())


# ---------------------------------------------------------------------------- history and estimates


def test_history_counts_within_each_window_only() -> None:
    # one student, concept 0 answered 1,1,0 | 1,1 in windows of 3: the second window starts afresh
    windows = sequences([[0, 0, 0, 0, 0]], [[1, 1, 0, 1, 1]]).windows(max_len=3, min_len=2)
    h = History.of(windows)
    assert h.successes.tolist() == [0, 1, 2, 0, 1]
    assert h.failures.tolist() == [0, 0, 0, 0, 0]
    assert h.last.tolist() == [-1, 1, 1, -1, 1]


def test_hand_computed_estimates_on_two_concepts() -> None:
    train = sequences([[0, 0, 1, 1]], [[1, 0, 1, 1]])  # rates: concept 0 1/2, concept 1 1, unseen 3/4
    windows = sequences([[0, 1, 0, 2]], [[0, 1, 1, 0]])
    rate = BaseRate.fit(History.of(train), num_concepts=3)
    assert rate.rates.tolist() == [0.5, 1.0, 0.75] and rate.overall == 0.75
    before, after = estimates(RunningAccuracy(rate, k=2.0), windows)
    # concept 0 first: (0 + 2*0.5)/(0 + 2) = 0.5, after r=0: (0 + 1)/(1 + 2) = 1/3
    # concept 1 first: (0 + 2)/2 = 1, after r=1: (1 + 2)/3 = 1
    # concept 0 again, one failure so far: (0 + 1)/(1 + 2) = 1/3, after r=1: (1 + 1)/(2 + 2) = 1/2
    # concept 2 (unseen in training, rate 0.75): 1.5/2 = 0.75, after r=0: 1.5/3 = 0.5
    assert before.tolist() == pytest.approx([0.5, 1.0, 1 / 3, 0.75])
    assert after.tolist() == pytest.approx([1 / 3, 1.0, 0.5, 0.5])
    before, after = estimates(LastResponse(rate), windows)
    assert before.tolist() == [0.5, 1.0, 0.0, 0.75] and after.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_estimates_are_nan_outside_the_windows(split: tuple[Sequences, Sequences]) -> None:
    train, valid = split
    before, after = estimates(fit_baselines(train, 10)["pfa"], valid)
    outside = np.ones(valid.concepts.size, dtype=bool)
    outside[valid.positions()] = False
    assert np.isnan(before[outside]).all() and np.isnan(after[outside]).all()
    assert np.isfinite(before[~outside]).all() and np.isfinite(after[~outside]).all()


def test_base_rate_is_the_per_concept_share_of_training_answers(split: tuple[Sequences, Sequences]) -> None:
    train, valid = split
    rates = naive_rates(train)
    fitted = fit_baselines(train, 10)["base_rate"]
    before, after = estimates(fitted, valid)
    for i in valid.positions():
        assert before[i] == pytest.approx(rates[int(valid.concepts[i])], abs=1e-12)
        assert after[i] == before[i]


def test_running_accuracy_and_last_response_match_a_naive_loop(
    synthetic: Dataset, split: tuple[Sequences, Sequences]
) -> None:
    train, _ = split
    students = synthetic.train_valid
    valid = students.subset(students.folds == 0).windows(max_len=20)  # short: many students span several
    assert len(np.unique(valid.students)) < len(valid) / 2
    rates = naive_rates(train)
    fitted = fit_baselines(train, synthetic.num_concepts)
    running = fitted["running_accuracy"]
    assert isinstance(running, RunningAccuracy)
    k = running.k
    ra_before, ra_after = estimates(running, valid)
    lr_before, lr_after = estimates(fitted["last_response"], valid)
    for i, (s, f, last) in naive_history(valid).items():
        c, r = int(valid.concepts[i]), int(valid.responses[i])
        assert ra_before[i] == pytest.approx((s + k * rates[c]) / (s + f + k), abs=1e-12)
        assert ra_after[i] == pytest.approx((s + r + k * rates[c]) / (s + f + 1 + k), abs=1e-12)
        assert lr_before[i] == pytest.approx(rates[c] if last < 0 else last, abs=1e-12)
        assert lr_after[i] == r


def test_running_accuracy_picks_the_grid_k_with_the_best_training_auc(
    split: tuple[Sequences, Sequences],
) -> None:
    train, _ = split
    running = fit_baselines(train, 10)["running_accuracy"]
    assert isinstance(running, RunningAccuracy) and running.k in SMOOTHING_GRID
    responses = train.responses[train.positions()]

    def training_auc(k: float) -> float:
        return metrics.roc_auc(
            responses, estimates(RunningAccuracy(running.prior, k), train)[0][train.positions()]
        )

    assert all(training_auc(running.k) >= training_auc(k) for k in SMOOTHING_GRID)


def test_pfa_matches_its_formula_and_beats_the_base_rate_on_training(
    split: tuple[Sequences, Sequences],
) -> None:
    train, valid = split
    fitted = fit_baselines(train, 10)
    pfa = fitted["pfa"]
    assert isinstance(pfa, Pfa)
    assert pfa.w_success > 0  # the simulator's students learn: earlier successes predict success
    # it nests the base rate (w = 0, bias = logit(rate)), so it fits the training answers at least as well
    assert log_likelihood(pfa, train) >= log_likelihood(fitted["base_rate"], train)
    before, after = estimates(pfa, valid)
    for i, (s, f, _) in naive_history(valid).items():
        c, r = int(valid.concepts[i]), int(valid.responses[i])
        logit = pfa.bias[c] + pfa.w_success * math.log(1 + s) + pfa.w_failure * math.log(1 + f)
        logit_after = pfa.bias[c] + pfa.w_success * math.log(1 + s + r) + pfa.w_failure * math.log(2 + f - r)
        assert before[i] == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-9)
        assert after[i] == pytest.approx(1 / (1 + math.exp(-logit_after)), abs=1e-9)
    again = fit_baselines(train, 10)["pfa"]
    assert isinstance(again, Pfa)
    assert np.array_equal(again.bias, pfa.bias) and again.w_success == pfa.w_success  # deterministic


def fitted_numbers(fitted: dict[str, baselines.Baseline]) -> list[np.ndarray]:
    """Every number the baselines fitted: base rates, k, PFA's biases and weights."""
    return [
        np.atleast_1d(value)
        for baseline in fitted.values()
        for value in vars(baseline).values()
        if not isinstance(value, BaseRate)  # a prior, the base_rate baseline itself
    ]


def test_fitting_reads_the_training_windows_only(
    synthetic: Dataset, split: tuple[Sequences, Sequences]
) -> None:
    train, valid = split
    flipped = train.responses.copy()  # train and valid share the flat arrays: change valid's answers
    flipped[valid.positions()] = 1 - flipped[valid.positions()]
    original = fitted_numbers(fit_baselines(train, 10))
    changed = fitted_numbers(fit_baselines(replace(train, responses=flipped), 10))
    assert len(original) == len(changed) == 7  # rates, overall, k, PFA's bias, weights and prior bias
    assert all(np.array_equal(a, b) for a, b in zip(original, changed))
    scores = baseline_metrics(train, valid, 10)
    blind = baseline_metrics(replace(train, responses=flipped), valid, 10)
    np.testing.assert_equal(
        {n: m.as_dict() for n, m in scores.items()}, {n: m.as_dict() for n, m in blind.items()}
    )
    # the check has teeth: windows that include the validation fold do fit differently
    everything = synthetic.train_valid.windows()
    seen = fitted_numbers(fit_baselines(replace(everything, responses=flipped), 10))
    assert not np.array_equal(fitted_numbers(fit_baselines(everything, 10))[0], seen[0])


# ---------------------------------------------------------------------------- metrics and the best


def test_baseline_metrics_are_defined_and_the_best_has_the_highest_mastery_corr(
    split: tuple[Sequences, Sequences],
) -> None:
    scores = baseline_metrics(*split, num_concepts=10)
    assert tuple(scores) == BASELINES
    for name, m in scores.items():
        assert 0.5 < m.auc < 1 and math.isfinite(m.mastery_corr), name
        assert m.mastery_corr == pytest.approx(m.pred_corr)  # one estimate is both mastery and prediction
    assert scores["last_response"].copy_corr == pytest.approx(1.0)
    name, best = best_baseline(scores)
    assert best.mastery_corr == max(m.mastery_corr for m in scores.values()) and scores[name] is best


def with_mastery_corr(value: float) -> EvalMetrics:
    return EvalMetrics(**{**{f.name: math.nan for f in fields(EvalMetrics)}, "mastery_corr": value})


def test_best_baseline_skips_nan_and_rejects_all_nan() -> None:
    scores = {"a": with_mastery_corr(0.1), "b": with_mastery_corr(math.nan)}
    assert best_baseline({**scores, "c": with_mastery_corr(0.3)})[0] == "c"
    assert best_baseline(scores)[0] == "a"
    with pytest.raises(ValueError):
        best_baseline({"b": with_mastery_corr(math.nan)})


# ---------------------------------------------------------------------------- the simulator's truth


def test_a_baselines_gain_is_its_update_and_its_unpractised_estimate_is_its_prior(
    split: tuple[Sequences, Sequences],
) -> None:
    train, valid = split
    fitted = fit_baselines(train, 10)
    for name in BASELINES:
        before, after = estimates(fitted[name], valid)
        prior = baselines.unpractised_estimates(fitted[name], 10)
        obs = Observations.from_estimates(valid, before, after, prior)
        # the practised positions t are every real interaction with a real t+1, window by window
        now = np.concatenate([np.arange(s, s + n - 1) for s, n in zip(valid.starts, valid.lengths)])
        np.testing.assert_allclose(obs.practised_gain, after[now] - before[now], err_msg=name)
        np.testing.assert_allclose(obs.true_gain, valid.true_gain[now], err_msg=name)
        # before the first practice every baseline's estimate depends on the concept alone
        first = History.of(valid)
        fresh = first.successes + first.failures == 0
        np.testing.assert_allclose(before[first.index[fresh]], prior[first.concept[fresh]], err_msg=name)
    rate = fitted["base_rate"]
    assert isinstance(rate, BaseRate)
    np.testing.assert_allclose(baselines.unpractised_estimates(fitted["running_accuracy"], 10), rate.rates)


def test_a_per_concept_lookup_recovers_the_pooled_truth_but_nothing_within_a_concept() -> None:
    """On the default simulator most of the true mastery's variance lies between concepts: a lookup
    with no student information scores a high pooled mastery_recovery and about 0 within a concept."""
    data = load_dataset("synthetic")
    train, valid = data.split(0)
    rate = fit_baselines(train, data.num_concepts)["base_rate"]
    before, after = estimates(rate, valid)
    jitter = np.random.default_rng(0).normal(0, 1e-3, before.shape)  # no student information either
    lookup = eval_metrics(Observations.from_estimates(valid, before + jitter, after + jitter))
    exact = eval_metrics(Observations.from_estimates(valid, before, after))
    print(
        f"per-concept lookup: mastery_recovery {lookup.mastery_recovery:.4f}, "
        f"within {lookup.mastery_recovery_within:.4f}"
    )
    assert lookup.mastery_recovery > 0.8
    assert abs(lookup.mastery_recovery_within) < 0.05
    assert exact.mastery_recovery > 0.8 and math.isnan(exact.mastery_recovery_within)  # constant: NaN
    pfa = baseline_metrics(train, valid, data.num_concepts)["pfa"]  # uses the student's own answers
    assert pfa.mastery_recovery_within > 0.5


# ---------------------------------------------------------------------------- the command


def test_cli_prints_every_baseline_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baselines", SOURCE, "--json"]) == 0
    printed = strict_json.loads(capsys.readouterr().out)  # no bare NaN: strict JSON
    assert list(printed) == list(BASELINES)
    assert all(math.isfinite(printed[name]["mastery_corr"]) for name in BASELINES)
    assert all(0 <= printed[name]["neg_gain_rate"] < 1 for name in BASELINES)


def test_a_lookups_neg_gain_rate_counts_its_downward_updates_over_every_concept() -> None:
    data = load_dataset(SOURCE)
    train, valid = data.split(0)
    fitted = fit_baselines(train, data.num_concepts)
    scores = baseline_metrics(train, valid, data.num_concepts, fitted)
    before, after = estimates(fitted["running_accuracy"], valid)
    down = positions = 0
    for start, length in zip(valid.starts, valid.lengths, strict=True):  # by hand, window by window
        steps = slice(start, start + length - 1)  # every interaction followed by one to predict
        down += int((after[steps] - before[steps] < -metrics.NEG_GAIN_TOLERANCE).sum())
        positions += length - 1
    expected = down / (positions * data.num_concepts)
    assert expected > 0  # running accuracy falls after a wrong answer
    assert scores["running_accuracy"].neg_gain_rate == pytest.approx(expected)
    assert scores["base_rate"].neg_gain_rate == 0.0  # a base rate never moves


def test_cli_table_names_the_best_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baselines", SOURCE, "--split", "test", "--fold", "1"]) == 0
    out = capsys.readouterr().out
    assert "the test split" in out and all(name in out for name in BASELINES)
    assert "best by mastery_corr: " in out.splitlines()[-1]


def test_cli_test_split_without_test_data_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f'{i % 2},u{i},"0,1,0,1","{i % 2},1,0,1"' for i in range(4)]
    (tmp_path / "train_valid.csv").write_text("fold,uid,concepts,responses\n" + "\n".join(rows) + "\n")
    assert main(["baselines", str(tmp_path), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no test split" in err


def test_cli_without_training_folds_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train_valid.csv").write_text('fold,uid,concepts,responses\n0,u0,"0,1,0","1,1,0"\n')
    assert main(["baselines", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no training windows" in err


# ---------------------------------------------------------------------------- ASSIST2015


def test_assist2015_fold_0_baselines_match_the_issue(assist: Dataset) -> None:
    scores = baseline_metrics(*assist.split(0), num_concepts=assist.num_concepts)
    for name, m in scores.items():
        print(f"{name:<17} auc {m.auc:.4f}  pred_corr {m.pred_corr:.4f}  mastery_corr {m.mastery_corr:.4f}")
    assert 0.24 <= scores["running_accuracy"].mastery_corr <= 0.32  # the issue's "about 0.28"
    assert 0.18 <= scores["base_rate"].mastery_corr <= 0.26  # the issue's "about 0.22"
