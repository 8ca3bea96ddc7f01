"""DKT (`model.kind = dkt`): its states, what holds by construction, and a real training run."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gainakt.batching import BatchPlan
from gainakt.data import load_dataset
from gainakt.dkt import DKT
from gainakt.evaluate import evaluate
from gainakt.guarantees import guarantees_of
from gainakt.losses import auxiliary_losses
from gainakt.model import build_model
from gainakt.run_folder import load_run
from gainakt.tracer import ModelOptions
from gainakt.train import make_config, train

DATA = "synthetic:students=300,concepts=10,seed=3"


@pytest.fixture(scope="module")
def plan() -> BatchPlan:
    _, valid = load_dataset(DATA).split(0)
    return BatchPlan(valid, 32, shuffle=False)


def tiny() -> DKT:
    torch.manual_seed(0)
    model = build_model(ModelOptions(d_model=16, dropout=0.0, kind="dkt"), 10)
    assert isinstance(model, DKT)
    return model.eval()


def test_its_prediction_is_the_mastery_of_the_next_concept_and_its_gains_the_changes(plan) -> None:
    batch = next(plan.batches(0))
    states = tiny().forward_with_states(batch)
    b, t = batch.mask.shape
    assert states.mastery.shape == states.gains.shape == (b, t, 10) and states.logits.shape == (b, t)
    next_mastery = states.mastery.gather(-1, batch.next_concepts.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(torch.sigmoid(states.logits), next_mastery)
    torch.testing.assert_close(states.gains[:, 1:], states.mastery[:, 1:] - states.mastery[:, :-1])
    assert states.residual is not None and not states.residual.any()
    assert states.mastery_sensitivity is not None and states.mastery_sensitivity[batch.mask].min() > 0


def test_changing_later_responses_leaves_earlier_predictions(plan) -> None:
    batch = next(plan.batches(0))
    flipped = batch.responses.clone()
    flipped[:, 6:] = 1 - flipped[:, 6:]
    model = tiny()
    with torch.no_grad():
        before = model.forward_with_states(batch)
        after = model.forward_with_states(dataclasses.replace(batch, responses=flipped))
    torch.testing.assert_close(before.logits[:, :6], after.logits[:, :6])
    assert not torch.allclose(before.logits[:, 6:], after.logits[:, 6:])


def test_what_holds_by_construction(plan) -> None:
    model = tiny()
    result = evaluate(model, plan).as_dict()
    named = {g.metric: g for g in guarantees_of(model.cfg)}
    assert set(named) == {"residual_share", "mastery_pred_corr"}  # none of GainAKT2Exp's gain guarantees
    assert result["residual_share"] == 0.0 and result["mastery_pred_corr"] == pytest.approx(1.0, abs=1e-9)
    assert result["faithfulness"] > 0 and result["mastery_corr"] == pytest.approx(result["pred_corr"])
    batch = next(plan.batches(0))
    aux = auxiliary_losses(model.forward_with_states(batch), batch, model.cfg.mastery_step)
    assert float(aux["residual"]) == 0.0


def test_the_trainer_trains_it_and_a_run_folder_reloads_it(tmp_path) -> None:
    settings = ["model.kind=dkt", "model.d_model=32"]
    config = make_config(assignments=settings, data=DATA, out=str(tmp_path / "run"), epochs=3, threads=1)
    results = train(config)
    assert results["best"]["auc"] > 0.6 and math.isfinite(results["best"]["mastery_lift"])
    model, loaded, _ = load_run(tmp_path / "run")
    assert isinstance(model, DKT) and loaded.model.kind == "dkt"
