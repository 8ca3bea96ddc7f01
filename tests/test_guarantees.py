"""What holds by construction: exact in its mode, absent elsewhere, refused as an objective."""

from __future__ import annotations

import itertools

import pytest
import torch

from gainakt import schema
from gainakt.data import BatchPlan, load_dataset
from gainakt.evaluate import evaluate
from gainakt.guarantees import guaranteed_metrics, guarantees
from gainakt.losses import auxiliary_losses
from gainakt.model import GainAKT2Exp, ModelOptions
from search.cli import main
from search.spec import Objective, SweepSpec
from search.sweep import prepare

MODES = list(
    itertools.product(("legacy", "intrinsic"), ("relu", "softplus", "linear"), ("cumulative", "direct"))
)


@pytest.fixture(scope="module")
def data():
    dataset = load_dataset("synthetic:students=120,concepts=8,seed=5")
    _, valid = dataset.split(0)
    return dataset, BatchPlan(valid, 32, shuffle=False)


@pytest.mark.parametrize("attention, gains, mastery", MODES)
def test_each_guarantee_holds_exactly_and_its_loss_is_zero_with_zero_gradient(
    data, attention, gains, mastery
):
    dataset, plan = data
    torch.manual_seed(0)
    options = ModelOptions(
        d_model=16, heads=2, blocks=1, d_ff=32, attention=attention, gains=gains, mastery=mastery
    )
    model = GainAKT2Exp(options, dataset.num_concepts)
    result = evaluate(model, plan).as_dict()
    batch = next(plan.batches(0))
    aux = auxiliary_losses(model.forward_with_states(batch), batch, options.mastery_step)
    named = guarantees(gains, mastery)
    for guarantee in named:
        assert result[guarantee.metric] == guarantee.value, guarantee
        loss = aux[guarantee.loss]
        assert float(loss.detach()) == 0.0
        model.zero_grad()
        loss.backward(retain_graph=True)
        assert all(p.grad is None or not p.grad.any() for p in model.parameters()), guarantee
    if gains == "linear":  # nothing keeps a linear gain non-negative: a random model has negative ones
        assert "neg_gain_rate" not in guaranteed_metrics(options) and result["neg_gain_rate"] > 0
    if mastery == "direct":  # a free mastery head goes down after some correct answers
        assert "monotonicity_violation_rate" not in guaranteed_metrics(options)
        assert result["monotonicity_violation_rate"] > 0


def test_guarantees_name_real_metrics_and_losses():
    for gains, mastery in itertools.product(("relu", "softplus", "linear"), ("cumulative", "direct")):
        for guarantee in guarantees(gains, mastery):
            assert guarantee.metric in schema.METRICS and guarantee.loss in schema.LOSS_NAMES
    assert [g.metric for g in guarantees("relu", "cumulative")] == [
        "neg_gain_rate",
        "monotonicity_violation_rate",
    ]
    assert [g.metric for g in guarantees("softplus", "direct")] == ["neg_gain_rate"]
    assert guarantees("linear", "cumulative") == ()


def test_a_sweep_whose_objective_holds_everywhere_in_its_space_is_refused(tmp_path, capsys):
    storage = tmp_path / "studies"
    argv = [
        "run",
        "--storage",
        str(storage),
        "--space",
        "sweep_helpers:relu_only_space",
        "--objective",
        "auc:max",
        "--objective",
        "neg_gain_rate:min",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "objective neg_gain_rate:min: holds by construction" in err
    assert "relu gains are never negative" in err and not storage.exists()
    # the default space has linear gains too: there the same objectives pass the check
    spec = SweepSpec(
        data="synthetic:students=100",
        storage=str(storage),
        objectives=(Objective("auc", "max"), Objective("neg_gain_rate", "min")),
    )
    assert prepare(spec).spec.objectives == spec.objectives
