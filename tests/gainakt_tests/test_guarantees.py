"""What holds by construction: exact in its mode, absent elsewhere, refused as an objective."""

from __future__ import annotations

import itertools

import pytest
import torch

from gainakt import schema
from gainakt.batching import BatchPlan
from gainakt.data import load_dataset
from gainakt.evaluate import evaluate
from gainakt.guarantees import guaranteed_metrics, guarantees, guarantees_of, zero_losses
from gainakt.losses import auxiliary_losses
from gainakt.model import GainAKT2Exp
from gainakt.tracer import ModelOptions
from search.cli import main
from search.run.sweep import prepare
from search.spec import Objective, SweepSpec

MODES = list(
    itertools.product(
        ("legacy", "intrinsic"), ("relu", "softplus", "linear"), ("cumulative", "direct", "deep")
    )
)
HEADS = ("free", "mastery", "mixed")
# Every mode with the free head, and every head in a few modes: each head in both attentions and both
# mastery modes, the tiny models kept few.
CASES = [(*mode, "free") for mode in MODES] + [
    (attention, gains, mastery, head)
    for attention, gains, mastery in (
        ("legacy", "relu", "cumulative"),
        ("intrinsic", "linear", "direct"),
        ("legacy", "softplus", "direct"),
        ("intrinsic", "relu", "cumulative"),
        ("legacy", "relu", "deep"),
    )
    for head in ("mastery", "mixed")
]


@pytest.fixture(scope="module")
def data():
    dataset = load_dataset("synthetic:students=120,concepts=8,seed=5")
    _, valid = dataset.split(0)
    return dataset, BatchPlan(valid, 32, shuffle=False)


def assert_zero_with_zero_gradient(model: GainAKT2Exp, loss: torch.Tensor, what: object) -> None:
    """The loss is 0 and moves no parameter: a constant, or 0 with a zero gradient everywhere."""
    assert float(loss.detach()) == 0.0, what
    if not loss.requires_grad:  # a constant: no parameter reaches it
        return
    model.zero_grad()
    loss.backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters()), what


@pytest.mark.parametrize("attention, gains, mastery, head", CASES)
def test_each_guarantee_holds_exactly_and_its_loss_is_zero_with_zero_gradient(
    data, attention, gains, mastery, head
):
    dataset, plan = data
    torch.manual_seed(0)
    options = ModelOptions(
        d_model=16, heads=2, blocks=1, d_ff=32, attention=attention, gains=gains, mastery=mastery, head=head
    )
    model = GainAKT2Exp(options, dataset.num_concepts)
    result = evaluate(model, plan).as_dict()
    batch = next(plan.batches(0))
    aux = auxiliary_losses(model.forward_with_states(batch), batch, options.mastery_step)
    named = guarantees(gains, mastery, head)
    assert named == guarantees_of(options)
    for guarantee in named:
        if not guarantee.exact:  # held near its value by the architecture, with no loss made idle
            assert guarantee.loss is None and abs(result[guarantee.metric] - guarantee.value) < 0.05, (
                guarantee
            )
            continue
        assert result[guarantee.metric] == guarantee.value, guarantee
        assert guarantee.loss is not None
        assert_zero_with_zero_gradient(model, aux[guarantee.loss], guarantee)
    if gains == "linear":  # nothing keeps a linear gain non-negative: a random model has negative ones
        assert "neg_gain_rate" not in guaranteed_metrics(options) and result["neg_gain_rate"] > 0
    if mastery != "cumulative":  # a mastery read from the streams goes down after some correct answers
        assert "monotonicity_violation_rate" not in guaranteed_metrics(options)
        assert result["monotonicity_violation_rate"] > 0
    if head != "free":  # the prediction reads the mastery: moving it moves the prediction
        assert "faithfulness" not in guaranteed_metrics(options) and result["faithfulness"] > 0
    if head == "mixed":  # a residual beside the mastery path: neither share is fixed, the loss acts
        assert "residual_share" not in guaranteed_metrics(options) and 0 < result["residual_share"] < 1
        loss = aux["residual"]
        assert float(loss.detach()) > 0
        model.zero_grad()
        loss.backward()
        assert model.head[0].weight.grad is not None and model.head[0].weight.grad.abs().max() > 0


def test_guarantees_name_real_metrics_and_losses():
    for gains, mastery, head in itertools.product(
        ("relu", "softplus", "linear"), ("cumulative", "direct", "deep"), HEADS
    ):
        for guarantee in guarantees(gains, mastery, head):
            assert guarantee.metric in schema.METRICS
            assert guarantee.loss in schema.LOSS_NAMES or (guarantee.loss is None and not guarantee.exact)
    assert [g.metric for g in guarantees("relu", "cumulative", "mixed")] == [
        "neg_gain_rate",
        "monotonicity_violation_rate",
    ]
    assert [g.metric for g in guarantees("softplus", "direct", "mixed")] == ["neg_gain_rate"]
    assert guarantees("linear", "cumulative", "mixed") == ()
    # the default head is the free one, which fixes faithfulness and residual_share and zeroes residual
    assert guarantees("linear", "cumulative") == guarantees("linear", "cumulative", "free")
    assert [(g.metric, g.value) for g in guarantees("linear", "direct", "free")] == [
        ("faithfulness", 0.0),
        ("residual_share", 1.0),
    ]
    assert [(g.metric, g.value, g.exact) for g in guarantees("linear", "direct", "mastery")] == [
        ("residual_share", 0.0, True),
        ("mastery_pred_corr", 1.0, False),  # near 1: the seeds' 0.4 target on it holds by construction
    ]
    assert zero_losses("relu", "cumulative") == {"non_negative", "monotonicity", "residual"}
    assert zero_losses("linear", "direct", "mastery") == {"residual"}
    assert zero_losses("linear", "direct", "mixed") == set()


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


def test_a_constraint_fixed_everywhere_in_its_space_is_refused_and_one_fixed_somewhere_is_not(
    tmp_path, capsys
):
    storage = tmp_path / "studies"
    for constraint in ("neg_gain_rate < 0.1", "faithfulness >= 0.05 unless fixed"):
        argv = ["run", "--storage", str(storage), "--space", "sweep_helpers:relu_only_space"]
        assert main([*argv, "--objective", "auc:max", "--constraint", constraint]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert f"constraint '{constraint}': {constraint.split()[0]} is fixed by construction" in err
        assert "judges every trial alike" in err and not storage.exists()
    # the default space samples linear gains and mixed heads too: there both constraints can vary
    spec = SweepSpec(data="synthetic:students=100", storage=str(storage))
    assert [str(c) for c in prepare(spec).spec.constraints] == [str(c) for c in spec.constraints]
    assert not storage.exists()
