"""The auxiliary losses and their composition: non-negative, finite, shares that add up, the mastery
losses by hand (the prospective one is not minimised by copying the last answer), and every weight
actually reaching the parameters its loss is about."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gainakt.batching import Batch, BatchPlan
from gainakt.data import load_dataset
from gainakt.errors import ConfigError
from gainakt.losses import LossWeights, auxiliary_losses, compose, prediction_loss, warmup_factor
from gainakt.model import GainAKT2Exp
from gainakt.schema import LOSS_NAMES
from gainakt.tracer import ModelOptions, States

# ---------------------------------------------------------------------------- properties on random states


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def states_and_batches(draw) -> tuple[States, Batch, float]:
    b, t, c = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    ints = lambda hi: hnp.arrays(np.int64, (b, t), elements=st.integers(0, hi))  # noqa: E731  (local helper)
    logits = draw(hnp.arrays(np.float32, (b, t), elements=_floats(-30, 30)))
    gains = draw(hnp.arrays(np.float32, (b, t, c), elements=_floats(-10, 10)))
    mastery = draw(hnp.arrays(np.float32, (b, t, c), elements=_floats(0, 1)))
    residual = draw(st.none() | hnp.arrays(np.float32, (b, t), elements=_floats(-30, 30)))
    lengths = draw(hnp.arrays(np.int64, (b,), elements=st.integers(0, t)))
    batch = Batch(
        concepts=torch.from_numpy(draw(ints(c - 1))),
        responses=torch.from_numpy(draw(ints(1))),
        next_concepts=torch.from_numpy(draw(ints(c - 1))),
        next_responses=torch.from_numpy(draw(ints(1))),
        mask=torch.from_numpy(np.arange(t)[None, :] < lengths[:, None]),  # a real prefix per row
        students=torch.arange(b),
        windows=torch.arange(b),
    )
    states = States(
        logits=torch.from_numpy(logits),
        mastery=torch.from_numpy(mastery),
        gains=torch.from_numpy(gains),
        context=torch.zeros(b, t, 2),
        value=torch.zeros(b, t, 2),
        residual=None if residual is None else torch.from_numpy(residual),
    )
    step = draw(st.sampled_from([0.05, 0.1, 0.5, 1.0]))
    return states, batch, step


weights_strategy = st.builds(LossWeights, **{name: st.floats(0, 10, allow_nan=False) for name in LOSS_NAMES})


@settings(max_examples=50, deadline=None)
@given(sample=states_and_batches(), weights=weights_strategy, factor=st.floats(0, 1))
def test_aux_losses_are_finite_non_negative_and_shares_add_to_one(
    sample, weights: LossWeights, factor: float
) -> None:
    states, batch, step = sample
    aux = auxiliary_losses(states, batch, step)
    assert set(aux) == set(LOSS_NAMES)
    for name, value in aux.items():
        assert value.dim() == 0, name
        assert torch.isfinite(value), f"{name} = {value}"
        assert float(value) >= 0, f"{name} = {value}"

    bce = prediction_loss(states, batch)
    assert torch.isfinite(bce) and float(bce) >= 0
    composition = compose(bce, aux, weights, factor)
    shares = composition.shares()
    assert set(shares) == {"bce", *LOSS_NAMES}
    assert all(share >= 0 for share in shares.values()), shares
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-6)
    assert float(composition.total) >= float(bce)
    expected_total = float(bce) + sum(factor * w * float(aux[n]) for n, w in weights.items())
    assert float(composition.total) == pytest.approx(expected_total, rel=1e-5, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(sample=states_and_batches(), junk=_floats(-1e3, 1e3))
def test_aux_losses_ignore_padded_positions(sample, junk: float) -> None:
    states, batch, step = sample
    pad = ~batch.mask
    wild = States(
        logits=states.logits.masked_fill(pad, junk),
        mastery=states.mastery.masked_fill(pad.unsqueeze(-1), min(max(junk, 0.0), 1.0)),
        gains=states.gains.masked_fill(pad.unsqueeze(-1), junk),
        context=states.context,
        value=states.value,
        residual=None if states.residual is None else states.residual.masked_fill(pad, junk),
    )
    before, after = auxiliary_losses(states, batch, step), auxiliary_losses(wild, batch, step)
    for name in LOSS_NAMES:
        assert float(after[name]) == pytest.approx(float(before[name]), rel=1e-5, abs=1e-6), name
    assert float(prediction_loss(wild, batch)) == pytest.approx(
        float(prediction_loss(states, batch)), rel=1e-5, abs=1e-6
    )


def test_shares_when_everything_is_zero_go_to_bce() -> None:
    zero = torch.zeros(())
    shares = compose(
        zero, {n: zero for n in LOSS_NAMES}, LossWeights(**{n: 1.0 for n in LOSS_NAMES})
    ).shares()
    assert shares["bce"] == 1.0 and sum(shares.values()) == 1.0


# ---------------------------------------------------------------------------- mastery and answers, by hand

# One student, five interactions: concepts 0 1 2 0 1, answers 1 0 1 1 0; in the shift convention
# position t holds interaction t and the target interaction t+1, so four positions, all real.
SEQUENCE_CONCEPTS, SEQUENCE_RESPONSES = [0, 1, 2, 0, 1], [1, 0, 1, 1, 0]


def hand_batch(
    concepts: list[int],
    responses: list[int],
    next_concepts: list[int],
    next_responses: list[int],
    mask: list[bool] | None = None,
) -> Batch:
    """A one-row batch from hand-written lists (all positions real unless `mask` says otherwise)."""
    row = lambda values: torch.tensor([values])  # noqa: E731  (local helper)
    return Batch(
        concepts=row(concepts),
        responses=row(responses),
        next_concepts=row(next_concepts),
        next_responses=row(next_responses),
        mask=row(mask if mask is not None else [True] * len(concepts)),
        students=torch.zeros(1, dtype=torch.long),
        windows=torch.zeros(1, dtype=torch.long),
    )


def mastery_states(mastery: torch.Tensor) -> States:
    """States holding this mastery [B, T, C]; everything else zero."""
    b, t, c = mastery.shape
    zeros = torch.zeros(b, t, c)
    return States(logits=zeros[..., 0], mastery=mastery, gains=zeros, context=zeros, value=zeros)


@pytest.fixture
def sequence_batch() -> Batch:
    c, r = SEQUENCE_CONCEPTS, SEQUENCE_RESPONSES
    return hand_batch(c[:-1], r[:-1], c[1:], r[1:])


def test_copying_the_last_answer_minimises_the_current_form_but_not_the_prospective_one(
    sequence_batch: Batch,
) -> None:
    b = sequence_batch
    c, r = b.concepts[0], b.responses[0].float()  # [T]
    nc, nr = b.next_concepts[0], b.next_responses[0].float()  # [T]
    t = torch.arange(c.numel())
    copying = torch.full((1, 4, 3), 0.5)
    copying[0, t, c] = r  # m[t, c[t]] = r[t], 0.5 elsewhere
    oracle = torch.full((1, 4, 3), 0.5)
    oracle[0, t, nc] = nr  # m[t, c[t+1]] = r[t+1], 0.5 elsewhere
    copy_all = r.view(1, 4, 1).expand(1, 4, 3).contiguous()  # every concept's mastery = r[t]

    copy_aux = auxiliary_losses(mastery_states(copying), b, 0.1)
    oracle_aux = auxiliary_losses(mastery_states(oracle), b, 0.1)
    copy_all_aux = auxiliary_losses(mastery_states(copy_all), b, 0.1)
    assert float(copy_aux["mastery_performance_current"]) == 0.0
    assert float(oracle_aux["mastery_performance"]) == 0.0
    # c[t+1] != c[t] here, so the copy leaves m[t, c[t+1]] = 0.5 for both classes: 0.5 + 0.5
    assert float(copy_aux["mastery_performance"]) == pytest.approx(1.0)
    assert float(copy_aux["mastery_performance"]) > float(oracle_aux["mastery_performance"])
    # r[t+1] = 1 at t = 1, 2 where r[t] = 0, 1: mean(1 - r[t]) = 0.5; r[t+1] = 0 at t = 0, 3 where
    # r[t] = 1, 1: mean(r[t]) = 1
    assert float(copy_all_aux["mastery_performance_current"]) == 0.0
    assert float(copy_all_aux["mastery_performance"]) == pytest.approx(1.5)
    # and the oracle of the next answer is no minimum of the current form (m[t, c[t]] = 0.5)
    assert float(oracle_aux["mastery_performance_current"]) == pytest.approx(0.5)


def test_prospective_mastery_performance_balances_the_two_classes() -> None:
    # next concepts 0 1 2 0 and a padded fifth position; correct, correct, wrong, correct
    batch = hand_batch(
        [1, 0, 1, 2, 0],
        [1, 1, 1, 0, 0],
        [0, 1, 2, 0, 0],
        [1, 1, 0, 1, 0],
        mask=[True, True, True, True, False],
    )
    mastery = torch.zeros(1, 5, 3)  # the padded position's m = 0 would lower the wrong class's mean
    mastery[0, [0, 1, 2, 3], [0, 1, 2, 0]] = torch.tensor([0.9, 0.9, 0.4, 0.9])
    value = float(auxiliary_losses(mastery_states(mastery), batch, 0.1)["mastery_performance"])
    pooled = (3 * 0.1 + 0.4) / 4  # 0.175, what a pooled mean would give
    assert value == pytest.approx(0.1 + 0.4)
    assert value != pytest.approx(pooled)


@pytest.mark.parametrize("answer, expected", [(1, 1 - 0.7), (0, 0.7)])
def test_prospective_mastery_performance_with_one_class_only(answer: int, expected: float) -> None:
    batch = hand_batch([0, 0], [1, 1], [1, 1], [answer, answer])
    mastery = torch.full((1, 2, 2), 0.7, requires_grad=True)
    value = auxiliary_losses(mastery_states(mastery), batch, 0.1)["mastery_performance"]
    assert float(value.detach()) == pytest.approx(expected)  # the missing class adds 0, not NaN
    value.backward()
    assert mastery.grad is not None and float(mastery.grad[0, :, 1].abs().sum()) > 0


def test_prospective_mastery_performance_without_real_positions_is_zero_with_a_gradient_path() -> None:
    batch = hand_batch([0, 1], [1, 0], [1, 0], [0, 1], mask=[False, False])
    mastery = torch.full((1, 2, 2), 0.3, requires_grad=True)
    aux = auxiliary_losses(mastery_states(mastery), batch, 0.1)
    for name in ("mastery_performance", "mastery_performance_current"):
        assert float(aux[name].detach()) == 0.0, name
        (grad,) = torch.autograd.grad(aux[name], mastery, retain_graph=True)
        assert torch.equal(grad, torch.zeros_like(mastery)), name


# ---------------------------------------------------------------------------- gradients reach the heads

# The parameters each auxiliary loss is about, in legacy attention with linear gains:
# with direct mastery the gains come from `gain_head`, the mastery from `mastery_head`;
# with cumulative mastery both the gains and `initial_mastery` shape the mastery; the residual is
# the free MLP (`head`) of a mixed head (direct mastery).
MODELS = {
    "direct": ("direct", "free"),
    "deep": ("deep", "free"),
    "cumulative": ("cumulative", "free"),
    "mixed": ("direct", "mixed"),
}
DEPENDS_ON = {
    "direct": {
        "non_negative": ["gain_head.weight"],
        "monotonicity": ["mastery_head.weight"],
        "mastery_performance": ["mastery_head.weight"],
        "mastery_performance_current": ["mastery_head.weight"],
        "gain_performance": ["gain_head.weight"],
        "sparsity": ["gain_head.weight"],
        "consistency": ["gain_head.weight", "mastery_head.weight"],
    },
    "cumulative": {
        "non_negative": ["gain_head.weight"],
        "monotonicity": ["gain_head.weight"],
        "mastery_performance": ["gain_head.weight", "initial_mastery.weight"],
        "mastery_performance_current": ["gain_head.weight", "initial_mastery.weight"],
        "gain_performance": ["gain_head.weight"],
        "sparsity": ["gain_head.weight"],
        # consistency: m[t] - m[t-1] = s * g[t] by construction wherever the clip is inactive, so it
        # depends on parameters only through the clip here; it is checked in direct mode instead
    },
    "mixed": {"residual": ["head.0.weight", "head.5.weight", "head.5.bias"]},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(mode: str, head: str | None = None) -> GainAKT2Exp:
    """A tiny model of a mode of `MODELS` (a mastery mode, or "mixed"), with linear gains."""
    mastery, default_head = MODELS[mode]
    torch.manual_seed(0)
    cfg = ModelOptions(
        d_model=16,
        heads=2,
        blocks=1,
        d_ff=32,
        dropout=0.0,
        gains="linear",
        mastery=mastery,
        head=head or default_head,
    )
    return GainAKT2Exp(cfg, num_concepts=5)


def activate_gain_hinge(model: GainAKT2Exp, batch: Batch) -> None:
    """Make sure gains after correct answers do not already beat those after wrong ones by the margin.

    The hinge is 0 (and rightly has no gradient) when they do; negating the linear gain head
    turns a difference d > margin into -d < 0 < margin, where the hinge is active.
    """
    with torch.no_grad():
        states = model.forward_with_states(batch)
        if float(auxiliary_losses(states, batch, model.cfg.mastery_step)["gain_performance"]) == 0:
            model.gain_head.weight.neg_()
            model.gain_head.bias.neg_()


@pytest.fixture(scope="module")
def batch() -> Batch:
    train, _ = load_dataset("synthetic:students=50,concepts=5,seed=1").split(0)
    b = next(BatchPlan(train, batch_size=16, shuffle=False).batches(0))
    assert b.num_real > 20 and not bool(b.mask.all())  # some padding, enough real positions
    return b


def gradients(model: GainAKT2Exp, batch: Batch, weights: LossWeights) -> tuple[dict[str, torch.Tensor], dict]:
    model.zero_grad(set_to_none=True)
    states = model.forward_with_states(batch)
    aux = auxiliary_losses(states, batch, model.cfg.mastery_step)
    compose(prediction_loss(states, batch), aux, weights).total.backward()
    grads = {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
    }
    return grads, {n: float(v.detach()) for n, v in aux.items()}


CASES = [(mode, name) for mode in DEPENDS_ON for name in LOSS_NAMES if name in DEPENDS_ON[mode]]


def test_every_aux_loss_has_a_mode_where_it_is_checked() -> None:
    covered = {name for _, name in CASES}
    assert covered == set(LOSS_NAMES)


@pytest.mark.parametrize("mode, name", CASES)
def test_weight_of_each_aux_loss_changes_the_gradient_of_its_head(batch: Batch, mode: str, name: str) -> None:
    model = make_model(mode)
    activate_gain_hinge(model, batch)
    on, aux = gradients(model, batch, LossWeights(**{name: 1.0}))
    off, _ = gradients(model, batch, LossWeights())
    assert aux[name] > 0, f"{name} is 0 at initialisation, so it cannot move anything"

    model.zero_grad(set_to_none=True)
    states = model.forward_with_states(batch)
    alone = auxiliary_losses(states, batch, model.cfg.mastery_step)[name]
    params = dict(model.named_parameters())
    for pname in DEPENDS_ON[mode][name]:
        difference = on[pname] - off[pname]
        assert difference.abs().max() > 1e-6, f"weights.{name}=1 leaves the gradient of {pname} unchanged"
        # the difference is exactly the gradient of the auxiliary loss on its own
        (own,) = torch.autograd.grad(alone, params[pname], retain_graph=True)
        torch.testing.assert_close(difference, own, rtol=1e-4, atol=1e-6)


def test_weights_of_other_losses_do_not_touch_an_unrelated_head(batch: Batch) -> None:
    # direct mastery: the gain-only losses do not reach the mastery head, the mastery-only ones
    # not the gain head
    model = make_model("direct")
    off, _ = gradients(model, batch, LossWeights())
    gain_only, _ = gradients(model, batch, LossWeights(non_negative=1.0, gain_performance=1.0, sparsity=1.0))
    mastery_only, _ = gradients(
        model,
        batch,
        LossWeights(monotonicity=1.0, mastery_performance=1.0, mastery_performance_current=1.0),
    )
    torch.testing.assert_close(gain_only["mastery_head.weight"], off["mastery_head.weight"])
    torch.testing.assert_close(mastery_only["gain_head.weight"], off["gain_head.weight"])


# The mastery parameters, in legacy attention with linear gains: with direct mastery the mastery head,
# with deep mastery its state MLP and biases, with cumulative mastery the initial mastery and the
# gain path it adds up.
MASTERY_PARAMETERS = {
    "direct": ["mastery_head.weight", "mastery_head.bias"],
    # the concept embedding it shares with the free head is left out: the free MLP reads it too
    "deep": ["mastery_state.0.weight", "mastery_state.0.bias", "mastery_state.3.weight", "mastery_bias"],
    "cumulative": ["initial_mastery.weight", "initial_mastery.bias", "gain_head.weight", "gain_head.bias"],
}
READOUT = ["readout.raw_scale", "readout.bias"]
FREE_HEAD = ["head.0.weight", "head.0.bias", "head.5.weight", "head.5.bias"]


def prediction_gradients(model: GainAKT2Exp, batch: Batch) -> dict[str, torch.Tensor]:
    """The gradient of the prediction loss alone (no auxiliary weight) on every parameter."""
    model.zero_grad(set_to_none=True)
    prediction_loss(model.forward_with_states(batch), batch).backward()
    return {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}


@pytest.mark.parametrize("mastery", ["direct", "deep", "cumulative"])
@pytest.mark.parametrize("head", ["free", "mastery", "mixed"])
def test_the_prediction_loss_reaches_every_mastery_parameter_unless_the_head_is_free(
    batch: Batch, mastery: str, head: str
) -> None:
    grads = prediction_gradients(make_model(mastery, head), batch)
    reads_mastery = head != "free"
    for pname in MASTERY_PARAMETERS[mastery] + (READOUT if reads_mastery else []):
        moved = float(grads[pname].abs().max())
        assert (moved > 1e-8) == reads_mastery, f"head {head}: the prediction loss moves {pname} by {moved}"
        if not reads_mastery:
            assert moved == 0.0, pname  # exactly: the mastery is a probe beside the prediction
    assert any(name.startswith("readout.") for name in grads) == reads_mastery
    assert any(name.startswith("head.") for name in grads) == (head != "mastery")  # not built for mastery
    for pname in FREE_HEAD if head != "mastery" else []:
        assert float(grads[pname].abs().max()) > 0, pname


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_an_optimizer_step_with_weights_moves_the_heads_differently(batch: Batch, optimizer: str) -> None:
    def step(weights: LossWeights) -> dict[str, torch.Tensor]:
        model = make_model("direct")
        make = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
        opt = make(model.parameters(), lr=1e-2)
        opt.zero_grad()
        states = model.forward_with_states(batch)
        aux = auxiliary_losses(states, batch, model.cfg.mastery_step)
        compose(prediction_loss(states, batch), aux, weights).total.backward()
        opt.step()
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    start = {n: p.detach().clone() for n, p in make_model("direct").named_parameters()}
    with_aux = step(LossWeights(**{n: 1.0 for n in LOSS_NAMES}))
    without = step(LossWeights())
    for pname in ("gain_head.weight", "gain_head.bias", "mastery_head.weight", "mastery_head.bias"):
        assert not torch.equal(with_aux[pname], start[pname]), f"{pname} did not move"
        assert (with_aux[pname] - without[pname]).abs().max() > 1e-6, (
            f"{pname} moved the same without weights"
        )


# ---------------------------------------------------------------------------- warm-up and weights


@pytest.mark.parametrize(
    "warmup_epochs, expected",
    [
        (0, [1.0, 1.0, 1.0]),
        (1, [0.5, 1.0, 1.0, 1.0]),
        (3, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]),  # 1/4 per epoch, 1 at epoch 3
        (4, [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]),
    ],
)
def test_warmup_factor_hand_values(warmup_epochs: int, expected: list[float]) -> None:
    got = [warmup_factor(e, warmup_epochs) for e in range(len(expected))]
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("warmup_epochs", [1, 2, 5, 10])
def test_warmup_factor_grows_linearly_reaches_one_and_stays(warmup_epochs: int) -> None:
    values = [warmup_factor(e, warmup_epochs) for e in range(warmup_epochs + 20)]
    ramp = values[: warmup_epochs + 1]
    steps = np.diff(ramp)
    assert np.all(steps > 0) and np.allclose(steps, steps[0])  # linear, strictly growing
    assert 0 < values[0] < 1
    assert values[warmup_epochs] == pytest.approx(1.0)
    assert all(v < 1 for v in values[:warmup_epochs])
    assert all(v == 1.0 for v in values[warmup_epochs:])


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("bad", [-1e-9, -1.0, math.nan])
def test_loss_weights_reject_negative_and_nan(name: str, bad: float) -> None:
    with pytest.raises(ConfigError, match=name):
        LossWeights(**{name: bad})


def test_loss_weights_accept_zero_and_positive() -> None:
    weights = LossWeights(**{n: float(i) for i, n in enumerate(LOSS_NAMES)})
    assert [w for _, w in weights.items()] == [float(i) for i in range(len(LOSS_NAMES))]
    assert [n for n, _ in weights.items()] == list(LOSS_NAMES)
