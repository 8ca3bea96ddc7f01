"""GainAKT2Exp: shapes in every mode, intrinsic gains that reach the losses, cumulative mastery, causality,
and blocks that compute exactly what the `Block` of earlier versions did (their checkpoints still load)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gainakt import model as model_module
from gainakt.batching import Batch, BatchPlan
from gainakt.data import load_dataset
from gainakt.errors import ConfigError
from gainakt.evaluate import Observations
from gainakt.losses import LossWeights, auxiliary_losses, compose, prediction_loss
from gainakt.model import BLOCKS, FeedForward, GainAKT2Exp
from gainakt.monitor import Monitor
from gainakt.tracer import ModelOptions

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
    ("attention", "gains", "mastery", "head"),
    list(
        itertools.product(
            ("legacy", "intrinsic"),
            ("relu", "softplus", "linear"),
            ("cumulative", "direct", "deep"),
            ("free", "mastery", "mixed"),
        )
    ),
)
def test_states_in_every_mode(batch: Batch, attention: str, gains: str, mastery: str, head: str) -> None:
    model = tiny(attention=attention, gains=gains, mastery=mastery, head=head)
    states = model.forward_with_states(batch)
    b, t = batch.mask.shape
    assert states.logits.shape == (b, t)
    assert states.gains.shape == states.mastery.shape == (b, t, CONCEPTS)
    assert states.context.shape == states.value.shape == (b, t, 16)
    assert states.mastery.min() >= 0 and states.mastery.max() <= 1
    if gains != "linear":
        assert states.gains.min() >= 0
    assert states.mastery_sensitivity is not None and states.mastery_sensitivity.shape == (b, t)
    assert not states.mastery_sensitivity.requires_grad
    assert states.mastery_sensitivity.min() >= 0 and states.mastery_sensitivity.max() <= 1
    if head == "free":
        assert states.residual is None and not states.mastery_sensitivity.any()
    else:
        assert states.residual is not None and states.residual.shape == (b, t)
        assert states.mastery_sensitivity[batch.mask].min() > 0  # the prediction reads the mastery
        assert (head == "mastery") == (not states.residual.any())
    # forward and backward through every term, every parameter finite
    aux = auxiliary_losses(states, batch, model.cfg.mastery_step)
    total = compose(prediction_loss(states, batch), aux, LossWeights(**{n: 0.1 for n in aux})).total
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_intrinsic_gains_reach_losses_and_monitor(plan: BatchPlan) -> None:
    model = tiny(attention="intrinsic", gains="linear", mastery="cumulative")
    weights = LossWeights(
        non_negative=0.1,
        monotonicity=0.1,
        mastery_performance=0.1,
        gain_performance=0.1,
        sparsity=0.1,
        consistency=0.1,
    )
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


def recursion(first: torch.Tensor, gains: torch.Tensor, step: float) -> torch.Tensor:
    """m[t] = clip(m[t-1] + step * g[t], 0, 1) from m[-1] = first [B, C], one step at a time -> [B, T, C]."""
    previous, out = first, []
    for t in range(gains.shape[1]):
        previous = torch.clamp(previous + step * gains[:, t], 0.0, 1.0)
        out.append(previous)
    return torch.stack(out, dim=1)


def closed_form(first: torch.Tensor, gains: torch.Tensor, step: float) -> torch.Tensor:
    """The earlier cumulative mastery clip(m[-1] + step * cumsum(g), 0, 1) -> [B, T, C]."""
    return torch.clamp(first.unsqueeze(1) + step * torch.cumsum(gains, dim=1), 0.0, 1.0)


@pytest.mark.parametrize("gains", ["relu", "softplus", "linear"])
def test_cumulative_mastery_equals_step_by_step_recursion(batch: Batch, gains: str) -> None:
    model = tiny(gains=gains, mastery="cumulative")
    with torch.no_grad():
        if gains == "linear":
            model.gain_head.weight.mul_(20.0)  # gains of both signs, large enough to reach both clips
        else:
            model.gain_head.bias.fill_(0.5)  # enough gain for mastery to reach the upper clip
        states = model.forward_with_states(batch)
    s = model.cfg.mastery_step
    first = torch.sigmoid(model.initial_mastery(states.context[:, 0])).detach()  # [B, C], m[-1]
    expected = recursion(first, states.gains, s)
    torch.testing.assert_close(states.mastery, expected, atol=1e-6, rtol=0)
    assert (expected == 1).any(), "the test should reach the clip"
    old = closed_form(first, states.gains, s)
    if gains == "linear":
        assert (expected == 0).any() and (states.gains < 0).any()
        # after a clip binds the closed form keeps the excess, so it differs from the recursion
        assert (old - expected).abs().max() > 0.1
    else:
        torch.testing.assert_close(old, expected, atol=1e-6, rtol=0)  # exact for gains >= 0


@pytest.mark.parametrize(
    ("gains", "expected", "old"),
    [
        # from 0.5 with step 0.1: up to the upper clip, then down; the closed form waits for the excess
        ([3.0, 3.0, -2.0, -2.0, -2.0], [0.8, 1.0, 0.8, 0.6, 0.4], [0.8, 1.0, 0.9, 0.7, 0.5]),
        # down to the lower clip, then up; the closed form stays at 0 until the deficit is repaid
        ([-4.0, -4.0, 3.0, 3.0, 0.0], [0.1, 0.0, 0.3, 0.6, 0.6], [0.1, 0.0, 0.0, 0.3, 0.3]),
    ],
)
def test_cumulative_mastery_with_linear_gains_by_hand(
    gains: list[float], expected: list[float], old: list[float]
) -> None:
    model = tiny(gains="linear", mastery="cumulative")
    with torch.no_grad():
        model.initial_mastery.weight.zero_()
        model.initial_mastery.bias.zero_()  # m[-1] = sigmoid(0) = 0.5 for every concept
    g = torch.tensor(gains).view(1, 5, 1).expand(2, 5, CONCEPTS)  # [B=2, T=5, C]
    context = torch.randn(2, 5, 16)
    mastery = model._mastery(context, context, g)  # cumulative mastery reads no value stream
    want = torch.tensor(expected).view(1, 5, 1).expand_as(g)
    torch.testing.assert_close(mastery, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(mastery, recursion(torch.full((2, CONCEPTS), 0.5), g, 0.1), atol=1e-6, rtol=0)
    previous_form = closed_form(torch.full((2, CONCEPTS), 0.5), g, 0.1)
    torch.testing.assert_close(previous_form, torch.tensor(old).view(1, 5, 1).expand_as(g), atol=1e-6, rtol=0)
    assert not torch.allclose(previous_form, mastery)  # the old form would have failed this test


def test_linear_cumulative_mastery_passes_gradient_to_gains_and_initial_mastery() -> None:
    model = tiny(gains="linear", mastery="cumulative")
    gains = torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1).repeat(1, 1, CONCEPTS).requires_grad_()
    context = torch.randn(1, 3, 16)
    model._mastery(context, context, gains).sum().backward()
    assert gains.grad is not None and gains.grad.abs().sum() > 0
    assert model.initial_mastery.weight.grad is not None and model.initial_mastery.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("attention", "mastery", "head"),
    [("legacy", "cumulative", "free"), ("intrinsic", "cumulative", "free"), ("legacy", "deep", "mastery")],
)
def test_changing_later_responses_leaves_earlier_predictions(
    batch: Batch, attention: str, mastery: str, head: str
) -> None:
    model = tiny(attention=attention, mastery=mastery, head=head).eval()
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


# ---------------------------------------------------------------------------- the blocks against the old one


class ReferenceBlock(nn.Module):
    """The `Block` of gainakt/model.py before it became `LegacyBlock` and `IntrinsicBlock`, verbatim."""

    def __init__(self, cfg: ModelOptions, num_concepts: int) -> None:
        super().__init__()
        self.cfg = cfg
        d, c = cfg.d_model, num_concepts
        self.query_key = nn.Linear(d, 2 * d)
        if cfg.attention == "legacy":
            self.value = nn.Linear(d, d)
            self.out = nn.Linear(d, d)
            self.norm_value = nn.LayerNorm(d)
        else:
            self.gain_scale = nn.Parameter(torch.zeros(cfg.heads, 1, c))  # softplus(0) ~ 0.69 per head
            self.out = nn.Linear(c, d)
        self.norm_attn = nn.LayerNorm(d)
        self.ff = FeedForward(d, cfg.d_ff, cfg.dropout)
        self.norm_ff = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, context: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = context.shape
        h = self.cfg.heads
        q, k = self.query_key(context).view(b, t, 2, h, d // h).permute(2, 0, 3, 1, 4)  # each [B, H, T, D/H]
        p = self.cfg.dropout if self.training else 0.0
        if self.cfg.attention == "legacy":
            v = self.value(value).view(b, t, h, d // h).transpose(1, 2)  # [B, H, T, D/H]
            attended = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            update = self.drop(self.out(attended.transpose(1, 2).reshape(b, t, d)))
            value = self.norm_value(value + update)
        else:
            v = value.unsqueeze(1) * F.softplus(self.gain_scale)  # [B, H, T, C]
            value = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True).mean(1)  # [B, T, C]
            update = self.drop(self.out(value))
        context = self.norm_attn(context + update)
        context = self.norm_ff(context + self.drop(self.ff(context)))
        return context, value


# The names, in order, that checkpoints hold for a block; the optimizer state follows the order too.
BLOCK_KEYS = {
    "legacy": [
        "query_key.weight",
        "query_key.bias",
        "value.weight",
        "value.bias",
        "out.weight",
        "out.bias",
        "norm_value.weight",
        "norm_value.bias",
    ],
    "intrinsic": ["gain_scale", "query_key.weight", "query_key.bias", "out.weight", "out.bias"],
}
SHARED_KEYS = [
    "norm_attn.weight",
    "norm_attn.bias",
    "ff.0.weight",
    "ff.0.bias",
    "ff.3.weight",
    "ff.3.bias",
    "norm_ff.weight",
    "norm_ff.bias",
]


def options(attention: str, **changes) -> ModelOptions:
    return ModelOptions(d_model=16, heads=2, blocks=2, d_ff=32, dropout=0.2, attention=attention, **changes)


@pytest.mark.parametrize("attention", ["legacy", "intrinsic"])
@pytest.mark.parametrize("training", [True, False])
def test_block_computes_what_the_reference_block_did(attention: str, training: bool) -> None:
    cfg = options(attention)
    torch.manual_seed(0)
    block = BLOCKS[attention](cfg, CONCEPTS).train(training)
    torch.manual_seed(0)
    reference = ReferenceBlock(cfg, CONCEPTS).train(training)
    assert list(block.state_dict()) == list(reference.state_dict()) == BLOCK_KEYS[attention] + SHARED_KEYS
    names = [name for name, _ in block.named_parameters()]
    assert names == [name for name, _ in reference.named_parameters()]
    for key, value in block.state_dict().items():  # the same draws from the random generator
        assert torch.equal(value, reference.state_dict()[key]), key
    with torch.no_grad():  # weights away from their initial values, gain scales included
        for p in block.parameters():
            p.normal_()
    reference.load_state_dict(block.state_dict())

    width = 16 if attention == "legacy" else CONCEPTS
    context, value = torch.randn(3, 9, 16), torch.randn(3, 9, width).abs()
    outputs = []
    for module in (block, reference):
        torch.manual_seed(1)  # the same dropout masks
        outputs.append(module(context, value))
        sum(o.square().sum() for o in outputs[-1]).backward()
    for new, old in zip(*outputs, strict=True):
        assert torch.equal(new, old)
    for (name, p), q in zip(block.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name


@pytest.mark.parametrize("attention", ["legacy", "intrinsic"])
def test_model_with_reference_blocks_trains_and_predicts_identically(
    batch: Batch, attention: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Reference(ReferenceBlock):
        values_are_gains = attention == "intrinsic"

    models = []
    for blocks in (dict(BLOCKS), {**BLOCKS, attention: Reference}):
        monkeypatch.setattr(model_module, "BLOCKS", blocks)
        torch.manual_seed(0)
        models.append(GainAKT2Exp(options(attention, gains="softplus"), CONCEPTS))
    new, old = models
    assert isinstance(old.blocks[0], Reference) and not isinstance(new.blocks[0], Reference)
    assert list(new.state_dict()) == list(old.state_dict())
    trained = []
    for model in models:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        torch.manual_seed(1)
        for _ in range(2):  # with dropout
            states = model.forward_with_states(batch)
            optimizer.zero_grad()
            (states.logits.square().mean() + states.mastery.mean() + states.gains.mean()).backward()
            optimizer.step()
        with torch.no_grad():
            trained.append(model.eval().forward_with_states(batch))
    for field in dataclasses.fields(trained[0]):
        new_value, old_value = getattr(trained[0], field.name), getattr(trained[1], field.name)
        if new_value is None:  # a free head's residual
            assert old_value is None, field.name
        else:
            assert torch.equal(new_value, old_value), field.name
    for (key, value), other in zip(new.state_dict().items(), old.state_dict().values(), strict=True):
        assert torch.equal(value, other), key
