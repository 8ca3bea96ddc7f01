"""GainAKT2Exp: shapes in every mode, intrinsic gains that reach the losses, cumulative mastery, causality."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from gainakt.data import Batch, BatchPlan, load_dataset
from gainakt.errors import ConfigError
from gainakt.evaluate import Observations
from gainakt.losses import LossWeights, auxiliary_losses, compose, prediction_loss
from gainakt.model import GainAKT2Exp, ModelOptions
from gainakt.monitor import Monitor

CONCEPTS = 7


@pytest.fixture(scope="module")
def plan() -> BatchPlan:
    train, _ = load_dataset(f"synthetic:students=80,concepts={CONCEPTS},seed=4").split(0)
    return BatchPlan(train, batch_size=8, seed=0)


@pytest.fixture(scope="module")
def batch(plan: BatchPlan) -> Batch:
    return next(plan.batches(0))


def tiny(**options) -> GainAKT2Exp:
    torch.manual_seed(0)
    return GainAKT2Exp(ModelOptions(d_model=16, heads=2, blocks=2, d_ff=32, dropout=0.0, **options), CONCEPTS)


@pytest.mark.parametrize(
    ("attention", "gains", "mastery"),
    list(itertools.product(("legacy", "intrinsic"), ("relu", "softplus", "linear"), ("cumulative", "direct"))),
)
def test_states_in_every_mode(batch: Batch, attention: str, gains: str, mastery: str) -> None:
    states = tiny(attention=attention, gains=gains, mastery=mastery).forward_with_states(batch)
    b, t = batch.mask.shape
    assert states.logits.shape == (b, t)
    assert states.gains.shape == states.mastery.shape == (b, t, CONCEPTS)
    assert states.context.shape == states.value.shape == (b, t, 16)
    assert states.mastery.min() >= 0 and states.mastery.max() <= 1
    if gains != "linear":
        assert states.gains.min() >= 0


def test_intrinsic_gains_reach_losses_and_monitor(plan: BatchPlan) -> None:
    model = tiny(attention="intrinsic", gains="linear", mastery="cumulative")
    weights = LossWeights(non_negative=0.1, monotonicity=0.1, mastery_performance=0.1, gain_performance=0.1, sparsity=0.1, consistency=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    samples = []
    monitor = Monitor(interval=1, sinks=[lambda step, values: samples.append(values)])
    for step, batch in enumerate(itertools.islice(plan.batches(0), 5), start=1):
        states = model.forward_with_states(batch)
        assert states.gains.shape == (*batch.mask.shape, CONCEPTS)
        aux = auxiliary_losses(states, batch, model.cfg.mastery_step)
        assert sum(float(v.detach()) > 0 for v in aux.values()) >= 3
        total = compose(prediction_loss(states, batch), aux, weights).total
        optimizer.zero_grad()
        total.backward()
        # the gains of the attention itself receive gradient from the auxiliary losses
        assert model.blocks[-1].gain_scale.grad.abs().sum() > 0
        optimizer.step()
        monitor.after_batch(step, states, batch)
    final = Observations.of(model.forward_with_states(batch), batch).interpretability()
    assert all(torch.isfinite(torch.tensor(v)) for v in final.values()), final
    assert any(v != 0 for sample in samples for v in sample.values())


def test_intrinsic_gains_come_from_attention_not_a_module_attribute(batch: Batch) -> None:
    model = tiny(attention="intrinsic", gains="relu")
    gains = model.forward_with_states(batch).gains
    assert not any(isinstance(v, torch.Tensor) and v.shape == gains.shape for v in vars(model).values())
    with torch.no_grad():  # scaling the last block's per-head gain scale changes the returned gains
        model.blocks[-1].gain_scale.add_(1.0)
    assert not torch.allclose(model.forward_with_states(batch).gains, gains)


def test_cumulative_mastery_equals_step_by_step_recursion(batch: Batch) -> None:
    for gains in ("relu", "softplus"):
        model = tiny(gains=gains, mastery="cumulative")
        with torch.no_grad():
            model.gain_head.bias.fill_(0.5)  # enough gain for mastery to reach the upper clip
            states = model.forward_with_states(batch)
        s = model.cfg.mastery_step
        first = torch.sigmoid(model.initial_mastery(states.context[:, 0]))  # [B, C]
        previous = first
        expected = []
        for t in range(states.gains.shape[1]):
            previous = torch.clamp(previous + s * states.gains[:, t], 0.0, 1.0)
            expected.append(previous)
        expected = torch.stack(expected, dim=1)
        assert (expected == 1).any(), "the test should reach the clip"
        torch.testing.assert_close(states.mastery, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("attention", ["legacy", "intrinsic"])
def test_changing_later_responses_leaves_earlier_predictions(batch: Batch, attention: str) -> None:
    model = tiny(attention=attention).eval()
    t = 5
    flipped = batch.responses.clone()
    flipped[:, t + 1 :] = 1 - flipped[:, t + 1 :]
    later_concepts = batch.concepts.clone()
    later_concepts[:, t + 1 :] = (later_concepts[:, t + 1 :] + 1) % CONCEPTS
    changed = dataclasses.replace(batch, responses=flipped, concepts=later_concepts)
    with torch.no_grad():
        before, after = model.forward_with_states(batch), model.forward_with_states(changed)
    torch.testing.assert_close(before.logits[:, : t + 1], after.logits[:, : t + 1])
    torch.testing.assert_close(before.mastery[:, : t + 1], after.mastery[:, : t + 1])
    assert not torch.allclose(before.logits[:, t + 1 :], after.logits[:, t + 1 :])


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"d_model": 30, "heads": 4}, "model.heads=4 does not divide model.d_model=30"),
        ({"dropout": 1.0}, "model.dropout must be in [0, 1)"),
        ({"blocks": 0}, "model.blocks must be at least 1"),
    ],
)
def test_bad_model_options(options: dict, phrase: str) -> None:
    with pytest.raises(ConfigError) as err:
        ModelOptions(**options)
    assert phrase in str(err.value)
