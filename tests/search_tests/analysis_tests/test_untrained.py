"""An untrained model never meets the default constraints: every combination of modes and heads the
spaces sample, and DKT, freshly initialised and scored on ASSIST2015 fold 0 and on the simulator."""

from __future__ import annotations

from benchmarks.untrained import settings, untrained_scores
from gainakt.data import load_dataset
from gainakt.sequences import Dataset
from search.schema import FEASIBLE
from spaces.aux_weights import modes_and_weights


def check_none_feasible(dataset: Dataset, windows: int) -> None:
    """55 models on `windows` validation windows spread over fold 0, the lookups on the same ones."""
    frame, lookups = untrained_scores(dataset, fold=0, windows=windows)
    assert len(frame) == len(settings()) == 3 * 3 * 2 * 3 + 1  # gains x mastery x attention x head, DKT
    assert not frame[FEASIBLE].any(), frame[frame[FEASIBLE]].to_string()
    # Not by one constraint alone: each fails the prediction's and the mastery's bar, either of which
    # a user might drop (a lookup's mastery_corr is far above what a random mastery scores).
    for misses in frame["misses"]:
        assert "auc >= best_lookup" in misses and "mastery_lift > 0" in misses
    assert frame["auc"].max() < max(m["auc"] for m in lookups.values())
    positions = {m["positions"] for m in lookups.values()} | set(frame["positions"])
    assert len(positions) == 1  # every lookup and every model on the very same positions


def test_the_combinations_are_every_one_the_spaces_sample():
    import optuna

    seen = set()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(400):
        drawn = modes_and_weights(study.ask(), ("cumulative", "direct", "deep"))
        seen.add(tuple(drawn[f"model.{k}"] for k in ("gains", "mastery", "attention", "head")))
    listed = {tuple(s[k] for k in ("gains", "mastery", "attention", "head")) for s in settings()[:-1]}
    assert seen == listed


def test_no_untrained_model_is_feasible_on_the_simulator(one_thread):
    check_none_feasible(load_dataset("synthetic:students=200,seed=3"), windows=100)


def test_no_untrained_model_is_feasible_on_assist2015(assist: Dataset):
    # About 2,500 positions: intrinsic attention over 100 concepts is slow on a CPU.
    check_none_feasible(assist, windows=40)
