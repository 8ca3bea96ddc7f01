"""The metrics of docs/metrics.md, each checked against a hand computation on tiny arrays.

Every expected value below is worked out in a comment from the definitions in
docs/metrics.md, not taken from running the code. A constant series has no
correlation, so it must give NaN, never 0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import fields

import numpy as np
import pytest
import torch

from gainakt import metrics
from gainakt.batching import Batch
from gainakt.evaluate import Observations, eval_metrics, recovery_metrics
from gainakt.schema import EvalMetrics
from gainakt.tracer import States


def textbook_pearson(x: list[float], y: list[float]) -> float:
    """r = (n Sxy - Sx Sy) / sqrt((n Sxx - Sx^2)(n Syy - Sy^2)), written independently of metrics.py."""
    n = len(x)
    sx, sy = sum(x), sum(y)
    sxy = sum(a * b for a, b in zip(x, y))
    sxx, syy = sum(a * a for a in x), sum(b * b for b in y)
    return (n * sxy - sx * sy) / math.sqrt((n * sxx - sx * sx) * (n * syy - sy * sy))


# ---------------------------------------------------------------------------- roc_auc


def test_auc_with_a_tie_counts_the_tied_pair_as_half() -> None:
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.8, 0.4, 0.4, 0.2])
    # positives 0.8, 0.4; negatives 0.4, 0.2. Pairs (pos, neg):
    # (0.8, 0.4) = 1, (0.8, 0.2) = 1, (0.4, 0.4) = 1/2 (tie), (0.4, 0.2) = 1  ->  3.5 / 4
    assert metrics.roc_auc(labels, scores) == pytest.approx(0.875)


def test_auc_hand_counted_without_ties_and_order_free() -> None:
    labels = np.array([0, 1, 1, 0, 1])
    scores = np.array([0.9, 0.7, 0.3, 0.1, 0.5])
    # positives 0.7, 0.3, 0.5; negatives 0.9, 0.1. Pairs won by the positive:
    # 0.7: beats 0.1 only -> 1; 0.3: beats 0.1 -> 1; 0.5: beats 0.1 -> 1. 3 of 6 pairs.
    assert metrics.roc_auc(labels, scores) == pytest.approx(3 / 6)
    perm = np.array([4, 2, 0, 3, 1])
    assert metrics.roc_auc(labels[perm], scores[perm]) == pytest.approx(0.5)


def test_auc_perfect_inverted_and_all_tied() -> None:
    labels = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(labels, np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(1.0)
    assert metrics.roc_auc(labels, np.array([0.4, 0.3, 0.2, 0.1])) == pytest.approx(0.0)
    # every pair is a tie: 4 pairs of 1/2 each
    assert metrics.roc_auc(labels, np.full(4, 0.6)) == pytest.approx(0.5)


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0, 0], []])
def test_auc_with_a_single_class_is_nan(labels: list[int]) -> None:
    scores = np.linspace(0.1, 0.9, len(labels))
    assert math.isnan(metrics.roc_auc(np.array(labels), scores))


# ---------------------------------------------------------------------------- accuracy


def test_accuracy_threshold_half_counts_as_positive() -> None:
    labels = np.array([1, 0, 1, 0])
    probs = np.array([0.5, 0.49, 0.2, 0.7])
    # predictions p >= 0.5: 1, 0, 0, 1  vs labels 1, 0, 1, 0  -> 2 of 4 right
    assert metrics.accuracy(labels, probs) == pytest.approx(0.5)
    assert metrics.accuracy(np.array([1, 0, 0]), np.array([0.9, 0.1, 0.4999])) == pytest.approx(1.0)


def test_accuracy_empty_is_nan() -> None:
    assert math.isnan(metrics.accuracy(np.array([]), np.array([])))


# ---------------------------------------------------------------------------- pearson


def test_pearson_on_four_numbers() -> None:
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0]
    # dx = -1.5 -0.5 0.5 1.5, dy = -3 -1 0 4: Sxy = 4.5+0.5+0+6 = 11, Sxx = 5, Syy = 26
    expected = 11 / math.sqrt(5 * 26)
    assert textbook_pearson(x, y) == pytest.approx(expected)
    assert metrics.pearson(np.array(x), np.array(y)) == pytest.approx(expected)


def test_pearson_on_three_numbers_sign_and_symmetry() -> None:
    # dx = -1 0 1, dy = -1 1 0: Sxy = 1, Sxx = Syy = 2  ->  0.5
    assert metrics.pearson(np.array([1, 2, 3]), np.array([1, 3, 2])) == pytest.approx(0.5)
    assert metrics.pearson(np.array([1, 3, 2]), np.array([1, 2, 3])) == pytest.approx(0.5)
    assert metrics.pearson(np.array([1, 2, 3]), np.array([-1, -3, -2])) == pytest.approx(-0.5)
    assert metrics.pearson(np.array([1, 2, 3]), np.array([10, 20, 30])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "x, y",
    [
        ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]),  # constant x
        ([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]),  # constant y
        ([1.0], [1.0]),  # one point
        ([], []),  # nothing
    ],
)
def test_pearson_undefined_is_nan_never_zero(x: list[float], y: list[float]) -> None:
    assert math.isnan(metrics.pearson(np.array(x), np.array(y)))


@pytest.mark.parametrize("value, n", [(0.1, 3), (0.7, 3), (0.1, 7), (1 / 3, 10)])
def test_pearson_constant_series_whose_mean_rounds_is_still_nan(value: float, n: int) -> None:
    # A constant series has no correlation whatever its value: the float mean of n copies
    # of 0.1 need not be exactly 0.1, but the answer must still be NaN, not 0.
    x = np.full(n, value)
    assert math.isnan(metrics.pearson(x, np.arange(n, dtype=np.float64)))


# ---------------------------------------------------------------------------- per_student_pearson


def test_per_student_pearson_averages_qualifying_students_only() -> None:
    # student 3: x = 1..5, y = 0 0 1 1 1: dx = -2..2, dy = -.6 -.6 .4 .4 .4
    #   Sxy = 1.2+0.6+0+0.4+0.8 = 3, Sxx = 10, Syy = 1.2   -> 3/sqrt(12)
    # student 8: x = 1..5, y = 1 1 1 1 0: dy = .2 .2 .2 .2 -.8
    #   Sxy = -0.4-0.2+0+0.2-1.6 = -2, Sxx = 10, Syy = 0.8 -> -2/sqrt(8)
    # student 5: 4 positions only (perfectly correlated): excluded
    # student 1: 6 positions, y constant: excluded (not counted as 0)
    # student 2: 5 positions, x constant: excluded
    rows = (
        [(3, x, y) for x, y in zip([1, 2, 3, 4, 5], [0, 0, 1, 1, 1])]
        + [(8, x, y) for x, y in zip([1, 2, 3, 4, 5], [1, 1, 1, 1, 0])]
        + [(5, x, y) for x, y in zip([1, 2, 3, 4], [0, 0, 1, 1])]
        + [(1, x, 1) for x in [0.1, 0.5, 0.2, 0.9, 0.4, 0.3]]
        + [(2, 0.5, y) for y in [0, 1, 0, 1, 1]]
    )
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))]  # students interleaved
    students, x, y = (np.array(col, dtype=float) for col in zip(*rows))
    expected = (3 / math.sqrt(12) + -2 / math.sqrt(8)) / 2
    assert textbook_pearson([1, 2, 3, 4, 5], [0, 0, 1, 1, 1]) == pytest.approx(3 / math.sqrt(12))
    assert metrics.per_student_pearson(x, y, students.astype(int)) == pytest.approx(expected)


def test_per_student_pearson_min_positions_and_nan_when_nobody_qualifies() -> None:
    students = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    x = np.array([1, 2, 3, 4, 1, 2, 3, 4], dtype=float)
    y = np.array([0, 0, 1, 1, 1, 1, 0, 0], dtype=float)
    # 4 positions each: nobody reaches the default 5
    assert math.isnan(metrics.per_student_pearson(x, y, students))
    # with min_positions=4: student 0 -> r(1..4, 0 0 1 1), student 1 -> the opposite; mean 0
    r0 = textbook_pearson([1, 2, 3, 4], [0, 0, 1, 1])
    assert metrics.per_student_pearson(x, y, students, min_positions=4) == pytest.approx(
        (r0 - r0) / 2, abs=1e-12
    )
    assert metrics.per_student_pearson(x[:4], y[:4], students[:4], min_positions=4) == pytest.approx(r0)
    assert math.isnan(metrics.per_student_pearson(np.array([]), np.array([]), np.array([], dtype=int)))


def test_per_student_pearson_excludes_a_constant_student_whatever_its_value() -> None:
    # student 0: x = 1..5, y = 0 0 1 1 1 -> 3/sqrt(12) (see above)
    # student 1: x = 0.1 seven times (constant) -> excluded, so the mean is student 0's alone
    students = np.array([0] * 5 + [1] * 7)
    x = np.array([1, 2, 3, 4, 5] + [0.1] * 7)
    y = np.array([0, 0, 1, 1, 1] + [0, 1, 0, 1, 1, 0, 1], dtype=float)
    assert metrics.per_student_pearson(x, y, students) == pytest.approx(3 / math.sqrt(12))


def test_per_student_pearson_all_constant_students_is_nan() -> None:
    students = np.repeat([4, 7], 6)
    x = np.arange(12, dtype=float)
    y = np.repeat([1.0, 0.0], 6)  # each student's y is constant
    assert math.isnan(metrics.per_student_pearson(x, y, students))


# ---------------------------------------------------------------------------- neg_gain_rate, monotonicity


def test_neg_gain_rate_counts_entries_below_the_tolerance() -> None:
    gains = np.array([[0.1, -0.2, 0.0], [-0.0, -1e-9, 3.0], [-2e-6, -1e-6, 5.0]])
    # below -1e-6: -0.2 and -2e-6 (not 0.0, -0.0, the rounding noise -1e-9 or the bound -1e-6) -> 2 of 9
    assert metrics.neg_gain_rate(gains) == pytest.approx(2 / 9)
    assert metrics.neg_gain_rate(np.zeros((2, 3))) == 0.0
    assert math.isnan(metrics.neg_gain_rate(np.zeros((0, 3))))


def test_monotonicity_violation_rate_counts_only_correct_answers() -> None:
    before = np.array([0.5, 0.5, 0.5, 0.5, 0.9])
    after = np.array([0.4, 0.5, 0.6, 0.1, 0.2])
    correct = np.array([1, 1, 1, 0, 0])
    # correct answers: 0.5->0.4 (down: violation), 0.5->0.5 (equal: not), 0.5->0.6 (up: not)
    # the two wrong answers went down but do not count -> 1 of 3
    assert metrics.monotonicity_violation_rate(before, after, correct) == pytest.approx(1 / 3)


def test_monotonicity_violation_rate_without_correct_answers_is_nan() -> None:
    assert math.isnan(
        metrics.monotonicity_violation_rate(np.array([0.5, 0.5]), np.array([0.1, 0.2]), np.array([0, 0]))
    )
    assert math.isnan(metrics.monotonicity_violation_rate(np.array([]), np.array([]), np.array([])))


# ---------------------------------------------------------------------------- Observations + EvalMetrics

# Two windows, T = 4 prediction positions, C = 3 concepts.
# window 0 (student 7), 5 interactions: c = 0 1 2 1 0, r = 1 0 1 1 0  -> mask T T T T
# window 1 (student 9), 3 interactions: c = 2 2 0,     r = 0 1 1      -> mask T T F F
#   (its interaction t=2 is real but predicts nothing: mask[1, 2] is False)
REAL_MASTERY = [
    [[0.2, 0.5, 0.9], [0.3, 0.4, 0.8], [0.3, 0.6, 0.7], [0.1, 0.7, 0.6]],
    [[0.5, 0.5, 0.2], [0.6, 0.5, 0.3], None, None],
]
REAL_GAINS = [
    [[0.3, -0.1, 0.0], [0.05, 0.2, -0.3], [0.0, 0.1, 0.4], [-0.2, 0.5, 0.1]],
    [[0.1, 0.0, 0.25], [-0.05, 0.0, 0.3], None, None],
]
REAL_PROBS = [[0.3, 0.8, 0.6, 0.4], [0.7, 0.35, None, None]]


def make_batch(pad_concept: int, pad_response: int) -> Batch:
    p, q = pad_concept, pad_response
    return Batch(
        concepts=torch.tensor([[0, 1, 2, 1], [2, 2, 0, p]]),
        responses=torch.tensor([[1, 0, 1, 1], [0, 1, 1, q]]),
        next_concepts=torch.tensor([[1, 2, 1, 0], [2, 0, p, p]]),
        next_responses=torch.tensor([[0, 1, 1, 0], [1, 1, q, q]]),
        mask=torch.tensor([[True, True, True, True], [True, True, False, False]]),
        students=torch.tensor([7, 9]),
        windows=torch.tensor([0, 1]),
    )


def make_states(
    pad_mastery: list[list[float]], pad_gains: list[list[float]], pad_probs: list[float]
) -> States:
    mastery = [REAL_MASTERY[0], REAL_MASTERY[1][:2] + pad_mastery]
    gains = [REAL_GAINS[0], REAL_GAINS[1][:2] + pad_gains]
    probs = torch.tensor([REAL_PROBS[0], REAL_PROBS[1][:2] + [0.5, 0.5]], dtype=torch.float64)
    logits = torch.log(probs / (1 - probs)).float()
    logits[1, 2:] = torch.tensor(pad_probs)  # padded logits set directly
    return States(
        logits=logits,
        mastery=torch.tensor(mastery, dtype=torch.float32),
        gains=torch.tensor(gains, dtype=torch.float32),
        context=torch.zeros(2, 4, 2),
        value=torch.zeros(2, 4, 2),
    )


CLEAN = dict(
    pad_mastery=[[-50.0, 100.0, 7.0], [-3.0, 9.0, 42.0]],
    pad_gains=[[-9.0] * 3, [-9.0] * 3],
    pad_probs=[50.0, -50.0],
)
WILD = dict(
    pad_mastery=[[float("nan"), float("inf"), -1e6], [1e6, float("-inf"), float("nan")]],
    pad_gains=[[float("-inf"), -1.0, float("nan")], [5.0, -5.0, float("inf")]],
    pad_probs=[float("nan"), float("inf")],
)


def expected_metrics() -> dict[str, float]:
    """Hand-gathered values at the 6 real positions."""
    # mastery of the NEXT concept m[t, c[t+1]] vs r[t+1]:
    #   w0: t0 c1=1 -> 0.5, t1 c2=2 -> 0.8, t2 c3=1 -> 0.6, t3 c4=0 -> 0.1; r[t+1] = 0 1 1 0
    #   w1: t0 c1=2 -> 0.2, t1 c2=0 -> 0.6;                                  r[t+1] = 1 1
    next_mastery = [0.5, 0.8, 0.6, 0.1, 0.2, 0.6]
    y = [0, 1, 1, 0, 1, 1]
    # gain of the practised concept g[t, c[t]] vs r[t]:
    #   w0: g[0,0]=0.3 g[1,1]=0.2 g[2,2]=0.4 g[3,1]=0.5; r = 1 0 1 1
    #   w1: g[0,2]=0.25 g[1,2]=0.3;                     r = 0 1
    gain = [0.3, 0.2, 0.4, 0.5, 0.25, 0.3]
    response = [1, 0, 1, 1, 0, 1]
    # gain entries at real positions: 4*3 + 2*3 = 18; negative: -0.1 -0.3 -0.2 (w0) and -0.05 (w1) -> 4/18
    # monotonicity, pairs (t-1, t) both real: w0 t=1,2,3; w1 t=1. Correct answers among them:
    #   w0 t=2 (c=2): 0.8 -> 0.7 down  -> violation
    #   w0 t=3 (c=1): 0.6 -> 0.7 up
    #   w1 t=1 (c=2): 0.2 -> 0.3 up
    #   (w0 t=1 is wrong: 0.5 -> 0.4 does not count)                    -> 1/3
    # probabilities p = 0.3 0.8 0.6 0.4 0.7 0.35 vs y = 0 1 1 0 1 1:
    #   AUC: positives 0.8 0.6 0.7 0.35, negatives 0.3 0.4: 0.35 loses to 0.4, others win -> 7/8
    #   acc: p >= .5 -> 0 1 1 0 1 0 vs y -> 5/6
    #   loss: mean of -log(1-.3), -log(.8), -log(.6), -log(1-.4), -log(.7), -log(.35)
    probs = [0.3, 0.8, 0.6, 0.4, 0.7, 0.35]
    loss = (
        -(math.log(0.7) + math.log(0.8) + math.log(0.6) + math.log(0.6) + math.log(0.7) + math.log(0.35)) / 6
    )
    return {
        "loss": loss,
        "auc": 7 / 8,
        "acc": 5 / 6,
        "mastery_corr": textbook_pearson(next_mastery, y),
        "pred_corr": textbook_pearson(probs, y),
        "mastery_corr_student": float("nan"),  # windows of 4 and 2 positions: below 5
        "gain_corr": textbook_pearson(gain, response),
        "neg_gain_rate": 4 / 18,
        "monotonicity_violation_rate": 1 / 3,
        "mastery_pred_corr": float("nan"),  # no concept has 20 positions
        "mastery_lift": float("nan"),  # no baseline given
        # mastery of the concept just answered m[t, c[t]] vs r[t]:
        #   w0: t0 c=0 -> 0.2, t1 c=1 -> 0.4, t2 c=2 -> 0.7, t3 c=1 -> 0.7; w1: t0 c=2 -> 0.2, t1 c=2 -> 0.3
        "copy_corr": textbook_pearson([0.2, 0.4, 0.7, 0.7, 0.2, 0.3], response),
        "mastery_saturation": 0.0,  # no next_mastery within 0.01 of 0 or 1
        "prospective_corr": float("nan"),  # no (window, concept) with 6 attempts
        "mastery_recovery": float("nan"),  # no simulator truth
        "mastery_recovery_within": float("nan"),
        "gain_recovery": float("nan"),
        "unpractised_recovery": float("nan"),
        # states without a residual or a sensitivity: a prediction that does not read the mastery, the
        # whole logit bypassing it
        "faithfulness": 0.0,
        "residual_share": 1.0,
        "positions": 6,
    }


def assert_metrics_equal(got: EvalMetrics, expected: dict[str, float]) -> None:
    assert {f.name for f in fields(EvalMetrics)} == set(expected)
    for name, value in expected.items():
        actual = getattr(got, name)
        if math.isnan(value):
            assert math.isnan(actual), f"{name}: expected NaN, got {actual}"
        else:
            assert actual == pytest.approx(value, abs=1e-6), name


def test_observations_gather_what_each_metric_looks_at() -> None:
    obs = Observations.of(make_states(**CLEAN), make_batch(pad_concept=0, pad_response=1))
    np.testing.assert_allclose(obs.next_mastery, [0.5, 0.8, 0.6, 0.1, 0.2, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(obs.next_response, [0, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(obs.student, [7, 7, 7, 7, 9, 9])
    np.testing.assert_allclose(obs.practised_gain, [0.3, 0.2, 0.4, 0.5, 0.25, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(obs.response, [1, 0, 1, 1, 0, 1])
    # pairs: w0 t=1,2,3 (c = 1 2 1), w1 t=1 (c = 2)
    np.testing.assert_allclose(obs.mastery_before, [0.5, 0.8, 0.6, 0.2], rtol=1e-6)
    np.testing.assert_allclose(obs.mastery_after, [0.4, 0.7, 0.7, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(obs.correct_after, [0, 1, 1, 1])
    assert (obs.negative_gains.sum(), obs.gain_entries.sum()) == (4, 18)
    np.testing.assert_array_equal(obs.pair_window, [0, 0, 0, 1])
    assert obs.next_true_mastery is None


def test_eval_metrics_match_the_hand_computation() -> None:
    obs = Observations.of(make_states(**CLEAN), make_batch(pad_concept=0, pad_response=1))
    assert_metrics_equal(eval_metrics(obs), expected_metrics())


@pytest.mark.parametrize("pads", [CLEAN, WILD], ids=["large", "nan-inf"])
@pytest.mark.parametrize("pad_concept, pad_response", [(0, 1), (2, 0), (1, 1)])
def test_padded_positions_change_no_metric(pads: dict, pad_concept: int, pad_response: int) -> None:
    obs = Observations.of(make_states(**pads), make_batch(pad_concept, pad_response))
    assert_metrics_equal(eval_metrics(obs), expected_metrics())


def test_concat_of_two_halves_equals_the_whole() -> None:
    batch = make_batch(0, 1)
    states = make_states(**CLEAN)
    whole = eval_metrics(Observations.of(states, batch))

    def row(x, i):
        return x[i : i + 1]

    parts = [
        Observations.of(
            States(
                *(row(v, i) if (v := getattr(states, f.name)) is not None else None for f in fields(States))
            ),
            Batch(
                **{
                    f.name: (row(getattr(batch, f.name), i) if getattr(batch, f.name) is not None else None)
                    for f in fields(Batch)
                }
            ),
        )
        for i in (1, 0)
    ]
    merged = eval_metrics(Observations.concat(parts))
    assert_metrics_equal(merged, whole.as_dict())


# ---------------------------------------------------------------------------- the objectives' new metrics


def test_mastery_pred_corr_is_the_mean_within_concept_pearson_of_concepts_with_enough_positions() -> None:
    rng = np.random.default_rng(0)
    concept = np.repeat([0, 1, 2], [25, 30, 5])  # concept 2 has too few positions
    mastery, prob = rng.random(60), rng.random(60)
    prob[25:55] = 1 - mastery[25:55]  # concept 1: perfectly anti-correlated
    expected = (textbook_pearson(mastery[:25], prob[:25]) + -1.0) / 2
    assert metrics.per_group_pearson(mastery, prob, concept, 20) == pytest.approx(expected)
    assert math.isnan(metrics.per_group_pearson(mastery, prob, concept, 31))  # no concept qualifies
    constant = np.full(60, 0.5)
    assert math.isnan(metrics.per_group_pearson(constant, prob, concept, 20))  # constant: no correlation


def test_saturation_counts_values_within_a_hundredth_of_0_or_1() -> None:
    values = np.array([0.0, 0.005, 0.01, 0.02, 0.5, 0.98, 0.99, 1.0])
    assert metrics.saturation(values) == pytest.approx(5 / 8)  # 0, .005, .01, .99, 1
    assert math.isnan(metrics.saturation(np.array([])))


def test_prospective_correlation_pairs_mastery_before_the_second_half_with_its_accuracy() -> None:
    # group a: 6 attempts, mastery before attempt 3 is 0.2, accuracy on attempts 3-5 = 1/3
    # group b: 7 attempts, half = 3: mastery before attempt 3 is 0.9, accuracy on attempts 3-6 = 3/4
    # group c: 8 attempts, half = 4: mastery 0.5, accuracy 2/4
    # group d: 5 attempts: too few, left out
    groups = np.array(list("aaaaaa") + list("bbbbbbb") + list("cccccccc") + list("ddddd"))
    mastery = np.array([0, 0, 0, 0.2, 0, 0] + [0, 0, 0, 0.9, 0, 0, 0] + [0, 0, 0, 0, 0.5, 0, 0, 0] + [1] * 5)
    responses = np.array([1, 1, 1, 1, 0, 0] + [0, 0, 0, 1, 1, 1, 0] + [1, 1, 1, 1, 1, 0, 1, 0] + [0] * 5)
    got = metrics.prospective_correlation(mastery, responses, groups, min_attempts=6)
    assert got == pytest.approx(textbook_pearson([0.2, 0.9, 0.5], [1 / 3, 3 / 4, 2 / 4]))
    rank = np.concatenate([np.arange(n) for n in (6, 7, 8, 5)])  # attempt number within its group
    interleaved = np.argsort(rank, kind="stable")  # groups interleaved, each in its own time order
    again = metrics.prospective_correlation(mastery[interleaved], responses[interleaved], groups[interleaved])
    assert again == pytest.approx(got)
    assert math.isnan(metrics.prospective_correlation(mastery, responses, groups, min_attempts=9))


def test_copying_the_last_response_gives_copy_corr_1_and_a_baseline_gives_the_lift() -> None:
    batch = make_batch(0, 1)
    states = make_states(**CLEAN)
    copied = states.mastery.clone()
    copied.scatter_(-1, batch.concepts.unsqueeze(-1), batch.responses.unsqueeze(-1).float())
    copying = States(states.logits, copied, states.gains, states.context, states.value)
    result = eval_metrics(Observations.of(copying, batch), baseline_mastery_corr=0.25)
    assert result.copy_corr == pytest.approx(1.0)
    assert result.mastery_lift == pytest.approx(result.mastery_corr - 0.25)


def test_faithfulness_and_residual_share_from_the_states_of_a_head_that_reads_the_mastery() -> None:
    batch = make_batch(0, 1)
    states = make_states(**CLEAN)
    # real positions (w0 t0-3, w1 t0-1) with logits l, residuals r and sensitivities s:
    logits = torch.tensor([[1.0, -2.0, 0.5, 4.0], [-1.0, 2.0, 9.0, 9.0]])
    residual = torch.tensor([[0.5, 0.0, -0.5, 1.0], [0.0, -1.0, 50.0, 50.0]])
    sensitivity = torch.tensor([[0.1, 0.2, 0.0, 0.05], [0.15, 0.1, 0.9, 0.9]])
    reading = dataclasses.replace(states, logits=logits, residual=residual, mastery_sensitivity=sensitivity)
    result = eval_metrics(Observations.of(reading, batch))
    # faithfulness: (0.1 + 0.2 + 0 + 0.05 + 0.15 + 0.1) / 6 = 0.1
    assert result.faithfulness == pytest.approx(0.1)
    # residual_share: mean |r| = (0.5 + 0 + 0.5 + 1 + 0 + 1) / 6 = 0.5 over
    # mean |l| = (1 + 2 + 0.5 + 4 + 1 + 2) / 6 = 1.75: 2/7 (the padded 50s and 9s are left out)
    assert result.residual_share == pytest.approx(2 / 7)
    no_residual = dataclasses.replace(reading, residual=torch.zeros(2, 4))
    assert eval_metrics(Observations.of(no_residual, batch)).residual_share == 0.0
    all_residual = dataclasses.replace(reading, residual=logits)  # the mastery path cut
    assert eval_metrics(Observations.of(all_residual, batch)).residual_share == 1.0
    zero = dataclasses.replace(reading, logits=torch.zeros(2, 4), residual=torch.zeros(2, 4))
    assert math.isnan(eval_metrics(Observations.of(zero, batch)).residual_share)  # 0 / 0: undefined


def test_a_lookup_has_no_residual_and_moves_its_prediction_with_its_mastery() -> None:
    from gainakt.sequences import Sequences

    # one window, 4 interactions: the estimates before 2nd-4th are the predictions
    windows = Sequences(
        concepts=np.array([0, 1, 0, 1]),
        responses=np.array([1, 0, 1, 1]),
        starts=np.array([0]),
        lengths=np.array([4]),
        folds=np.array([0]),
        students=np.array([0]),
        uids=("s",),
    )
    before = np.array([0.5, 0.95, 0.3, 0.02])
    obs = Observations.from_estimates(windows, before, before)
    # sensitivity at 0.95: (|1 - 0.95| + |0.95 - 0.85|) / 2 = 0.075; at 0.3: (0.1 + 0.1) / 2 = 0.1;
    # at 0.02: (0.1 + 0.02) / 2 = 0.06
    np.testing.assert_allclose(obs.sensitivity, [0.075, 0.1, 0.06], rtol=1e-9)
    result = eval_metrics(obs)
    assert result.faithfulness == pytest.approx((0.075 + 0.1 + 0.06) / 3)
    assert result.residual_share == 0.0


# ---------------------------------------------------------------------------- the simulator's recovery

# The truth of the tiny batch above; padded entries hold wild values that must be left out.
TRUE_NEXT_MASTERY = [[0.4, 0.9, 0.5, 0.2], [0.3, 0.7, 99.0, -99.0]]  # of c[t+1], before step t+1
TRUE_GAIN = [[0.1, 0.05, 0.2, 0.15], [0.02, 0.3, 99.0, -99.0]]  # of c[t], caused by step t
TRUE_ALL = [  # [b][t][k], every concept before step t+1
    [[0.1, 0.4, 0.6], [0.2, 0.5, 0.9], [0.3, 0.5, 0.8], [0.2, 0.6, 0.8]],
    [[0.7, 0.2, 0.3], [0.8, 0.3, 0.4], [99.0, 99.0, 99.0], [-99.0, -99.0, -99.0]],
]


def test_recovery_metrics_compare_the_model_with_the_simulators_truth_by_hand() -> None:
    batch = dataclasses.replace(
        make_batch(pad_concept=0, pad_response=1),
        next_true_mastery=torch.tensor(TRUE_NEXT_MASTERY),
        true_gain=torch.tensor(TRUE_GAIN),
        next_true_mastery_all=torch.tensor(TRUE_ALL),
    )
    obs = Observations.of(make_states(**CLEAN), batch)
    result = eval_metrics(obs)
    # m[t, c[t+1]] = 0.5 0.8 0.6 0.1 | 0.2 0.6 against the true mastery of c[t+1]
    expected = textbook_pearson([0.5, 0.8, 0.6, 0.1, 0.2, 0.6], [0.4, 0.9, 0.5, 0.2, 0.3, 0.7])
    assert result.mastery_recovery == pytest.approx(expected)
    # g[t, c[t]] = 0.3 0.2 0.4 0.5 | 0.25 0.3 against the true gain of step t
    expected = textbook_pearson([0.3, 0.2, 0.4, 0.5, 0.25, 0.3], [0.1, 0.05, 0.2, 0.15, 0.02, 0.3])
    assert result.gain_recovery == pytest.approx(expected)
    # not practised up to t: w0 (c = 0 1 2 1): t0 {1, 2}, t1 {2}, t2 and t3 none; w1 (c = 2 2 .):
    # t0 {0, 1}, t1 {0, 1}. m at those: 0.5 0.9 | 0.8 | 0.5 0.5 | 0.6 0.5; truth: 0.4 0.6 | 0.9 |
    # 0.7 0.2 | 0.8 0.3
    np.testing.assert_allclose(obs.unpractised_mastery, [0.5, 0.9, 0.8, 0.5, 0.5, 0.6, 0.5], rtol=1e-6)
    np.testing.assert_allclose(obs.unpractised_truth, [0.4, 0.6, 0.9, 0.7, 0.2, 0.8, 0.3], rtol=1e-6)
    expected = textbook_pearson([0.5, 0.9, 0.8, 0.5, 0.5, 0.6, 0.5], [0.4, 0.6, 0.9, 0.7, 0.2, 0.8, 0.3])
    assert result.unpractised_recovery == pytest.approx(expected)
    assert math.isnan(result.mastery_recovery_within)  # no concept has 20 positions


def test_mastery_recovery_within_is_the_mean_within_concept_pearson_with_the_truth() -> None:
    rng = np.random.default_rng(1)
    concept = np.repeat([0, 1, 2], [30, 25, 10])  # concept 2: too few positions, left out
    truth = rng.random(65) + concept  # most of the pooled variance lies between concepts
    mastery = rng.random(65) + concept
    mastery[30:55] = truth[30:55]  # concept 1: recovered exactly
    obs = Observations.of(make_states(**CLEAN), make_batch(0, 1))
    wide = dataclasses.replace(obs, next_mastery=mastery, next_true_mastery=truth, next_concept=concept)
    result = recovery_metrics(wide)
    within = (textbook_pearson(list(mastery[:30]), list(truth[:30])) + 1) / 2
    assert result["mastery_recovery_within"] == pytest.approx(within)
    assert result["mastery_recovery"] == pytest.approx(textbook_pearson(list(mastery), list(truth)))


# ------------------------------------------------------------------ the group metrics, vectorised


def _loop_groups(keys: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(keys == key) for key in np.unique(keys)]


@pytest.mark.parametrize("seed", range(5))
def test_the_vectorised_group_metrics_equal_their_loop_over_groups(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    keys = rng.integers(0, 40, n)
    x = rng.random(n).round(1)  # ties, and some constant groups
    y = (rng.random(n) < x).astype(float)
    x[keys == 3] = 0.5  # a constant group
    per_group = [metrics.pearson(x[idx], y[idx]) for idx in _loop_groups(keys) if idx.size >= 8]
    expected = np.nanmean(per_group)
    assert metrics.per_group_pearson(x, y, keys, 8) == pytest.approx(expected, abs=1e-12)
    before, accuracy = [], []
    for idx in _loop_groups(keys):
        if idx.size >= 6:
            before.append(x[idx[idx.size // 2]])
            accuracy.append(y[idx[idx.size // 2 :]].mean())
    expected = metrics.pearson(np.array(before), np.array(accuracy))
    assert metrics.prospective_correlation(x, y, keys, 6) == pytest.approx(expected, abs=1e-12)
