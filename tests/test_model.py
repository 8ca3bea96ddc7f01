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
from gainakt.data import Batch, BatchPlan, load_dataset
from gainakt.errors import ConfigError
from gainakt.evaluate import Observations
from gainakt.losses import LossWeights, auxiliary_losses, compose, prediction_loss
from gainakt.model import BLOCKS, FeedForward, GainAKT2Exp, ModelOptions
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
    list(
        itertools.product(("legacy", "intrinsic"), ("relu", "softplus", "linear"), ("cumulative", "direct"))
    ),
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
        assert torch.equal(getattr(trained[0], field.name), getattr(trained[1], field.name)), field.name
    for (key, value), other in zip(new.state_dict().items(), old.state_dict().values(), strict=True):
        assert torch.equal(value, other), key
