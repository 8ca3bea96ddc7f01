"""Prediction heads: the free MLP that does not read the mastery, the mastery readout
logit p[t] = a * logit(m[t, c[t+1]]) + b[c[t+1]], and the mixed head that adds the free MLP as a
residual. The readout, `mastery_sensitivity` (faithfulness) and `residual_share` are checked against
hand computations and against interventions through the model itself."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gainakt.batching import Batch, BatchPlan
from gainakt.config import build
from gainakt.data import load_dataset
from gainakt.errors import ConfigError
from gainakt.evaluate import Observations, eval_metrics, evaluate
from gainakt.model import MASTERY_EPS, GainAKT2Exp
from gainakt.tracer import ModelOptions, States

CONCEPTS = 6
A_ONE = math.log(math.e - 1)  # readout_scale with a = softplus(readout_scale) = 1


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def plan() -> BatchPlan:
    _, valid = load_dataset(f"synthetic:students=80,concepts={CONCEPTS},seed=6").split(0)
    return BatchPlan(valid, batch_size=16, shuffle=False)


@pytest.fixture(scope="module")
def batch(plan: BatchPlan) -> Batch:
    b = next(plan.batches(0))
    assert not bool(b.mask.all())  # some padding
    return b


def tiny(head: str, seed: int = 0, **options) -> GainAKT2Exp:
    torch.manual_seed(seed)
    cfg = ModelOptions(d_model=16, heads=2, blocks=1, d_ff=32, dropout=0.0, head=head, **options)
    return GainAKT2Exp(cfg, CONCEPTS).eval()


def constant_mastery(model: GainAKT2Exp, value: float) -> None:
    """Make a direct-mastery model's mastery `value` for every concept at every position."""
    with torch.no_grad():
        model.mastery_head.weight.zero_()
        model.mastery_head.bias.fill_(math.log(value / (1 - value)) if 0 < value < 1 else 100 * (value - 0.5))


def set_readout(model: GainAKT2Exp, a: float, b: float | list[float] = 0.0) -> None:
    with torch.no_grad():
        model.readout.raw_scale.fill_(math.log(math.expm1(a)))  # softplus^-1(a)
        model.readout.bias.copy_(torch.as_tensor(b, dtype=torch.float32).expand(CONCEPTS))


def states_of(model: GainAKT2Exp, batch: Batch) -> States:
    with torch.no_grad():
        return model.forward_with_states(batch)


# ---------------------------------------------------------------------------- parameters


def test_the_free_head_keeps_its_parameters_and_the_others_add_the_readout_last() -> None:
    free, mixed, mastery = tiny("free"), tiny("mixed"), tiny("mastery")
    names = {
        head: [n for n, _ in m.named_parameters() if not n.startswith("blocks.")]
        for head, m in (("free", free), ("mixed", mixed), ("mastery", mastery))
    }
    # the names and order checkpoints of the free head hold (legacy attention, cumulative mastery)
    assert names["free"] == [
        "context_embedding.weight",
        "value_embedding.weight",
        "context_position.weight",
        "value_position.weight",
        "concept_embedding.weight",
        *(f"head.{i}.{kind}" for i in (0, 3, 5) for kind in ("weight", "bias")),
        "gain_head.weight",
        "gain_head.bias",
        "initial_mastery.weight",
        "initial_mastery.bias",
    ]
    assert names["mixed"] == [*names["free"], "readout.raw_scale", "readout.bias"]
    assert names["mastery"] == [n for n in names["mixed"] if not n.startswith("head.")]  # no free MLP
    # the readout draws nothing from the random generator: a mixed model starts as the free one of its seed
    for key, value in free.state_dict().items():
        assert torch.equal(value, mixed.state_dict()[key]), key
    assert float(mixed.readout.scale.detach()) == pytest.approx(1.0) and not mixed.readout.bias.any()  # p = m


def test_an_unknown_head_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'head' must be one of free, mastery, mixed"):
        build(ModelOptions, {"head": "probe"})


# ---------------------------------------------------------------------------- the readout by hand


@pytest.mark.parametrize(
    "m, a, expected_p, expected_sensitivity",
    [
        # a = 1, b = 0: p = m. At 0.5: p(0.6) = 0.6, p(0.4) = 0.4 -> (0.1 + 0.1) / 2
        (0.5, 1.0, 0.5, 0.1),
        # a = 2, b = 0: p = m^2 / (m^2 + (1 - m)^2). p(0.5) = 0.5, p(0.6) = .36/.52, p(0.4) = .16/.52
        (0.5, 2.0, 0.5, (0.36 / 0.52 - 0.16 / 0.52) / 2),
        # a = 1 at 0.95: up to 1 (clipped) read as 1 - eps, down to 0.85
        (0.95, 1.0, 0.95, ((1 - MASTERY_EPS - 0.95) + (0.95 - 0.85)) / 2),
        # a = 1 at 1: p = 1 - eps; up stays at 1, so only the move down counts
        (1.0, 1.0, 1 - MASTERY_EPS, (0 + (1 - MASTERY_EPS - 0.9)) / 2),
    ],
)
def test_a_mastery_head_reads_the_mastery_as_computed_by_hand(
    batch: Batch, m: float, a: float, expected_p: float, expected_sensitivity: float
) -> None:
    model = tiny("mastery", mastery="direct")
    constant_mastery(model, m)
    set_readout(model, a)
    states = states_of(model, batch)
    assert states.mastery_sensitivity is not None and states.residual is not None
    torch.testing.assert_close(states.mastery, torch.full_like(states.mastery, m), atol=1e-6, rtol=0)
    assert not states.residual.any()
    p = torch.sigmoid(states.logits)
    torch.testing.assert_close(p, torch.full_like(p, expected_p), atol=1e-5, rtol=0)
    expected = torch.full_like(p, expected_sensitivity)
    torch.testing.assert_close(states.mastery_sensitivity, expected, atol=1e-5, rtol=0)
    result = eval_metrics(Observations.of(states, batch))
    assert result.faithfulness == pytest.approx(expected_sensitivity, abs=1e-5)
    if expected_p == 0.5:  # every logit 0: no share of nothing
        assert math.isnan(result.residual_share)
    else:
        assert result.residual_share == 0.0


def by_hand(m: np.ndarray, a: float, b: np.ndarray) -> np.ndarray:
    """p = sigmoid(a * logit(clip(m, eps, 1 - eps)) + b), in float64."""
    m = np.clip(m, MASTERY_EPS, 1 - MASTERY_EPS)
    return 1 / (1 + np.exp(-(a * np.log(m / (1 - m)) + b)))


@pytest.mark.parametrize("mastery", ["direct", "deep", "cumulative"])
def test_faithfulness_of_a_random_mastery_head_against_a_hand_computation(
    plan: BatchPlan, batch: Batch, mastery: str
) -> None:
    model = tiny("mastery", seed=3, mastery=mastery)
    with torch.no_grad():  # away from the initial a = 1, b = 0
        model.readout.raw_scale.fill_(0.3)
        model.readout.bias.normal_()
    states = states_of(model, batch)
    a = float(F.softplus(model.readout.raw_scale.detach()))
    b = model.readout.bias.detach().double().numpy()[batch.next_concepts.numpy()]  # [B, T], b[c[t+1]]
    m = states.mastery.double().gather(-1, batch.next_concepts.unsqueeze(-1)).squeeze(-1).numpy()
    p = by_hand(m, a, b)
    np.testing.assert_allclose(torch.sigmoid(states.logits).numpy(), p, atol=1e-6)
    sensitivity = (
        np.abs(by_hand(np.minimum(m + 0.1, 1), a, b) - p) + np.abs(p - by_hand(np.maximum(m - 0.1, 0), a, b))
    ) / 2
    assert states.mastery_sensitivity is not None
    np.testing.assert_allclose(states.mastery_sensitivity.numpy(), sensitivity, atol=1e-6)
    real = batch.mask.numpy()
    result = eval_metrics(Observations.of(states, batch))
    assert result.faithfulness == pytest.approx(sensitivity[real].mean(), abs=1e-6)
    # and over a whole split, through `evaluate`
    parts = []
    for each in plan.batches(0):
        s = states_of(model, each)
        assert s.mastery_sensitivity is not None
        parts.append(s.mastery_sensitivity[each.mask].double().numpy())
    assert evaluate(model, plan).faithfulness == pytest.approx(np.concatenate(parts).mean(), abs=1e-6)


# ---------------------------------------------------------------------------- interventions through the model


@pytest.mark.parametrize(
    "attention, mastery, head",
    list(itertools.product(("legacy", "intrinsic"), ("direct", "deep", "cumulative"), ("mastery", "mixed"))),
)
def test_mastery_sensitivity_is_what_moving_the_mastery_does_to_the_prediction(
    batch: Batch, monkeypatch: pytest.MonkeyPatch, attention: str, mastery: str, head: str
) -> None:
    """Re-run the whole model with its mastery moved by +-0.1 (clipped to [0, 1]): the prediction of
    the next answer reads only the mastery of the next concept, so the change of p is the sensitivity."""
    model = tiny(head, seed=1, attention=attention, mastery=mastery)
    states = states_of(model, batch)
    original = model._mastery
    moved = []
    for step in (0.1, -0.1):
        monkeypatch.setattr(
            model, "_mastery", lambda c, v, g, s=step: (original(c, v, g) + s).clamp(0.0, 1.0)
        )
        moved.append(torch.sigmoid(states_of(model, batch).logits))
    p = torch.sigmoid(states.logits)
    intervention = ((moved[0] - p).abs() + (p - moved[1]).abs()) / 2
    assert states.mastery_sensitivity is not None
    torch.testing.assert_close(states.mastery_sensitivity, intervention, atol=1e-6, rtol=0)
    assert float(states.mastery_sensitivity[batch.mask].min()) > 0


def test_the_free_head_does_not_move_when_the_mastery_does(
    plan: BatchPlan, batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny("free", mastery="direct")
    states = states_of(model, batch)
    original = model._mastery
    monkeypatch.setattr(model, "_mastery", lambda c, v, g: (original(c, v, g) + 0.1).clamp(0.0, 1.0))
    assert torch.equal(states_of(model, batch).logits, states.logits)  # the intervention changes nothing
    assert states.residual is None and states.mastery_sensitivity is not None
    assert not states.mastery_sensitivity.any()
    monkeypatch.undo()
    result = evaluate(model, plan)
    assert result.faithfulness == 0.0 and result.residual_share == 1.0  # the whole logit bypasses m


# ---------------------------------------------------------------------------- residual_share


def test_a_mixed_head_is_its_readout_plus_the_free_mlp(batch: Batch) -> None:
    mixed, free = tiny("mixed", mastery="direct"), tiny("free", mastery="direct")
    set_readout(mixed, 0.7, [0.1 * k for k in range(CONCEPTS)])
    states, free_states = states_of(mixed, batch), states_of(free, batch)
    assert states.residual is not None
    torch.testing.assert_close(states.residual, free_states.logits)  # the same MLP and seed
    m = (
        states.mastery.gather(-1, batch.next_concepts.unsqueeze(-1))
        .squeeze(-1)
        .clamp(MASTERY_EPS, 1 - MASTERY_EPS)
    )
    readout = 0.7 * torch.logit(m) + 0.1 * batch.next_concepts.float()
    torch.testing.assert_close(states.logits, readout + states.residual, atol=1e-5, rtol=0)
    mask = batch.mask
    share = states.residual[mask].abs().mean() / states.logits[mask].abs().mean()
    result = eval_metrics(Observations.of(states, batch))
    assert result.residual_share == pytest.approx(float(share), rel=1e-5)
    assert 0 < result.residual_share and result.faithfulness > 0


def test_residual_share_is_0_for_a_mastery_head_and_1_when_the_mastery_path_is_cut(
    plan: BatchPlan, batch: Batch
) -> None:
    assert evaluate(tiny("mastery"), plan).residual_share == 0.0
    cut = tiny("mixed", mastery="direct")
    set_readout(cut, 1e-12)  # a ~ 0 and b = 0: the logit is the residual alone
    states = states_of(cut, batch)
    assert states.residual is not None
    torch.testing.assert_close(states.logits, states.residual, atol=1e-9, rtol=0)
    result = evaluate(cut, plan)
    assert result.residual_share == pytest.approx(1.0, abs=1e-6)
    assert result.faithfulness == pytest.approx(0.0, abs=1e-6)  # and the prediction no longer reads m
    # by construction: a residual equal to the logit, the mastery term set to 0
    exact = States(states.logits, states.mastery, states.gains, states.context, states.value, states.logits)
    assert eval_metrics(Observations.of(exact, batch)).residual_share == 1.0


def test_a_mastery_head_agrees_with_its_mastery_within_each_concept(plan: BatchPlan) -> None:
    """Near 1, not exactly: within a concept p is a monotone function of m, linear only at a = 1, b = 0."""
    model = tiny("mastery", mastery="direct")
    assert evaluate(model, plan).mastery_pred_corr == pytest.approx(1.0)  # p = m at the start
    set_readout(model, 2.5, [0.5 * k - 1 for k in range(CONCEPTS)])
    assert 0.9 < evaluate(model, plan).mastery_pred_corr < 1 - 1e-4
