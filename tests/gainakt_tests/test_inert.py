"""Inert parts: the gain head gets no gradient from any loss of a setting exactly where
`gainakt.guarantees.inert_gains` says so, checked against autograd for every combination of modes,
heads and auxiliary losses; the built-in spaces never sample such a setting."""

from __future__ import annotations

import itertools

import optuna
import pytest
import torch

from gainakt.batching import BatchPlan
from gainakt.data import load_dataset
from gainakt.guarantees import GAIN_LOSSES, MASTERY_LOSSES, inert_gains, untrained_metrics, zero_losses
from gainakt.losses import auxiliary_losses, prediction_loss
from gainakt.model import GainAKT2Exp
from gainakt.schema import LOSS_NAMES
from gainakt.tracer import ModelOptions
from spaces import GAINS_JUDGED
from spaces.aux_weights import modes_and_weights

MODES = list(
    itertools.product(
        ("legacy", "intrinsic"),
        ("relu", "softplus", "linear"),
        ("cumulative", "direct", "deep"),
        ("free", "mastery", "mixed"),
    )
)
# No auxiliary loss, each one alone, and a gain loss with a mastery loss.
LOSS_SETS = [(), *((name,) for name in LOSS_NAMES), ("sparsity", "mastery_performance")]


@pytest.fixture(scope="module")
def batch():
    dataset = load_dataset("synthetic:students=60,concepts=6,seed=2")
    _, valid = dataset.split(0)
    return dataset.num_concepts, next(BatchPlan(valid, 16, shuffle=False).batches(0))


def gain_parameters(model: GainAKT2Exp) -> list[torch.nn.Parameter]:
    """What makes the gains: the gain head (legacy), or the value stream the gains are (intrinsic)."""
    if model.values_are_gains:
        return [model.value_embedding.weight]
    return list(model.gain_head.parameters())


@pytest.mark.parametrize("attention, gains, mastery, head", MODES)
def test_the_gain_head_gets_a_gradient_exactly_where_the_rule_says(batch, attention, gains, mastery, head):
    num_concepts, data = batch
    torch.manual_seed(0)
    options = ModelOptions(d_model=16, heads=2, blocks=1, d_ff=16, dropout=0.0)
    model = GainAKT2Exp(
        ModelOptions(
            **{**vars(options), "attention": attention, "gains": gains, "mastery": mastery, "head": head}
        ),
        num_concepts,
    )
    states = model.forward_with_states(data)
    for losses in LOSS_SETS:
        model.zero_grad()
        total = prediction_loss(states, data)
        if losses:
            parts = auxiliary_losses(states, data, model.cfg.mastery_step, losses)
            total = total + sum(parts.values())
        total.backward(retain_graph=True)
        moved = any(p.grad is not None and p.grad.abs().sum() > 0 for p in gain_parameters(model))
        why = inert_gains(attention, mastery, head, gains, losses)
        assert moved == (why is None), (attention, gains, mastery, head, losses, why)


def test_untrained_metrics_name_the_gain_figures_of_an_inert_gain_head():
    assert untrained_metrics("legacy", "direct", "free", "linear", ()) == (
        "gain_corr",
        "neg_gain_rate",
        "gain_recovery",
    )
    # relu gains fix neg_gain_rate at 0 by construction: that is said there, not "untrained"
    assert untrained_metrics("legacy", "deep", "mastery", "relu", ()) == ("gain_corr", "gain_recovery")
    assert untrained_metrics("legacy", "cumulative", "mastery", "linear", ()) == ()  # the head reads them
    assert untrained_metrics("intrinsic", "direct", "free", "linear", ()) == ()  # the values are the gains
    assert untrained_metrics("legacy", "direct", "free", "linear", ("sparsity",)) == ()
    assert untrained_metrics("legacy", "cumulative", "free", "relu", ("monotonicity",)) != ()  # zero there
    assert set(GAIN_LOSSES) | set(MASTERY_LOSSES) <= set(LOSS_NAMES)
    assert zero_losses("relu", "cumulative") >= {"monotonicity"}


@pytest.mark.parametrize("space_masteries", [("cumulative", "direct"), ("cumulative", "direct", "deep")])
def test_the_built_in_spaces_never_sample_inert_gains_where_the_study_judges_them(space_masteries):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    inert = {True: 0, False: 0}
    for k in range(400):
        judged = k % 2 == 0
        trial = study.ask()
        trial.set_user_attr(GAINS_JUDGED, judged)  # as the sweep's TrialSpace does
        drawn = modes_and_weights(trial, space_masteries)
        active = [name for name in LOSS_NAMES if drawn.get(f"weights.{name}", 0.0) > 0]
        modes = (drawn["model.attention"], drawn["model.mastery"], drawn["model.head"], drawn["model.gains"])
        inert[judged] += inert_gains(*modes, active) is not None
    assert inert[True] == 0
    assert inert[False] > 0  # a study that ignores the gains keeps every setting (its start points too)


def test_a_sweep_judges_the_gains_where_an_objective_or_a_constraint_reads_them():
    from search.spec import Constraint, Objective, SweepSpec

    assert SweepSpec().gains_judged  # neg_gain_rate is a default objective
    spec = SweepSpec(objectives=(Objective("auc", "max"), Objective("mastery_lift", "max")), constraints=())
    assert not spec.gains_judged
    assert SweepSpec(
        objectives=spec.objectives, constraints=(Constraint.parse("gain_corr > 0"),)
    ).gains_judged
