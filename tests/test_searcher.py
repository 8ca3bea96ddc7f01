"""The searcher's trial budget, against a real store and a real Optuna study (no Ray run)."""

from __future__ import annotations

import optuna
from ray.tune.search import Searcher
from study_helpers import fake_study, put_trial_like

from search.searcher import ConstrainedOptunaSearch, TrialBudget, TrialSpace


def _searcher(study, trials: int) -> ConstrainedOptunaSearch:
    return ConstrainedOptunaSearch(
        space=TrialSpace("aux_weights", 0), metric=["auc", "mastery_corr"], mode=["max", "max"],
        sampler=optuna.samplers.RandomSampler(seed=0), budget=TrialBudget(study.storage, study.name, trials),
    )


def test_suggestions_stop_when_ended_and_suggested_trials_fill_the_budget(tmp_path):
    study = fake_study(tmp_path, "budget", 3, nan_trial=False)  # 2 completed and 1 errored: all count
    put_trial_like(study, "lost0001", status="LOST")  # abandoned trials never count
    put_trial_like(study, "run00001", status="RUNNING")  # nor do running ones the restored Tuner does not know (lost soon)
    searcher = _searcher(study, 6)
    assert all(isinstance(searcher.suggest(trial_id), dict) for trial_id in ("a", "b", "c"))
    assert searcher.suggest("d") == Searcher.FINISHED


def test_a_restored_searcher_counts_trials_that_ended_after_its_state_was_saved(tmp_path):
    study = fake_study(tmp_path, "restored", 3, nan_trial=False)
    searcher = _searcher(study, 6)
    assert isinstance(searcher.suggest("a"), dict) and isinstance(searcher.suggest("b"), dict)
    saved = tmp_path / "searcher.pkl"
    searcher.save(str(saved))
    # The driver started one more trial after the save; it ended and was stored, then the driver died.
    put_trial_like(study, "late0001", status="COMPLETED")
    restored = _searcher(study, 6)
    restored.restore(str(saved))
    assert restored.suggest("c") == Searcher.FINISHED  # 3 before + a + b + the late one = 6
