"""The project's Tune searcher against real Optuna studies (journal files) and a real store (no Ray run)."""

from __future__ import annotations

import inspect
import math
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.search_generator import SearchGenerator
from study_helpers import fake_study, put_trial_like

from search.run.searcher import NAN_VIOLATION, StudySearcher, TrialBudget, TrialSpace, violations
from search.spec import Constraint

METRICS = ["auc", "mastery_corr", "neg_gain_rate"]
MODES = ["max", "max", "min"]
START = {"use_sparsity": False, "model.gains": "softplus", "warmup_epochs": 2}
CONSTRAINTS = (Constraint.parse("mastery_corr >= 0.4"), Constraint.parse("neg_gain_rate < 0.10"))
GOOD = {"auc": 0.71, "mastery_corr": 0.3, "neg_gain_rate": 0.05}  # misses mastery_corr >= 0.4 by 0.1


def _journal(where: Path) -> str:
    return str(where / "optuna.journal")


def _searcher(where: Path, name: str = "s", budget: TrialBudget | None = None, **kwargs) -> StudySearcher:
    return StudySearcher(
        space=TrialSpace("aux_weights", 7),
        metric=METRICS,
        mode=MODES,
        study_name=name,
        storage=JournalStorage(JournalFileBackend(_journal(where))),
        constraints=CONSTRAINTS,
        sampler=optuna.samplers.RandomSampler(seed=0),
        budget=budget,
        **kwargs,
    )


def _config(searcher: Searcher, trial_id: str) -> dict[str, Any]:
    """A suggestion that must be a trial's config (not FINISHED, not held back)."""
    config = searcher.suggest(trial_id)
    assert isinstance(config, dict), config
    return config


def _trials(where: Path, name: str = "s") -> list[optuna.trial.FrozenTrial]:
    """The study as a fresh reader sees it (as the recorder and the report do)."""
    storage = JournalStorage(JournalFileBackend(_journal(where)))
    return optuna.load_study(study_name=name, storage=storage).trials


def test_a_suggested_trial_completes_with_its_values_and_constraint_violations(tmp_path):
    searcher = _searcher(tmp_path)
    config = _config(searcher, "a")
    assert config["number"] == 0 and config["seed"] == 7
    assert config["settings"]["model.gains"] == config["model.gains"]  # raw Optuna parameters beside it
    assert _trials(tmp_path)[0].state == TrialState.RUNNING
    searcher.on_trial_complete("a", {**GOOD, "done": True})
    (trial,) = _trials(tmp_path)
    assert trial.state == TrialState.COMPLETE and trial.values == pytest.approx([0.71, 0.3, 0.05])
    assert trial.constraints == pytest.approx({"mastery_corr >= 0.4": 0.1, "neg_gain_rate < 0.1": 0.0})
    assert all(trial.params[k] == v for k, v in config["settings"].items() if k in trial.params)
    assert _config(searcher, "b")["number"] == 1
    again = _config(searcher, "b")  # asked again for the same Tune trial: the same Optuna trial
    assert again["number"] == 1 and again["seed"] == 7  # the sweep's seed: common random numbers


def test_a_nan_or_missing_objective_or_an_error_is_told_as_fail(tmp_path):
    searcher = _searcher(tmp_path)
    for trial_id in "abcd":
        searcher.suggest(trial_id)
    searcher.on_trial_complete("a", {**GOOD, "mastery_corr": math.nan})
    searcher.on_trial_complete("b", GOOD, error=True)
    searcher.on_trial_complete("c", None, error=True)
    searcher.on_trial_complete("d", {"auc": 0.7})
    assert [t.state for t in _trials(tmp_path)] == [TrialState.FAIL] * 4


def test_a_nan_constraint_metric_counts_as_far_from_feasible():
    gaps = violations(CONSTRAINTS, {"mastery_corr": math.nan, "neg_gain_rate": 0.2})
    assert gaps == {"mastery_corr >= 0.4": NAN_VIOLATION, "neg_gain_rate < 0.1": pytest.approx(0.1)}


def test_start_points_are_asked_first_and_enqueued_only_into_a_new_study(tmp_path):
    searcher = _searcher(tmp_path, points_to_evaluate=[START])
    first, second = _config(searcher, "a"), _config(searcher, "b")
    assert {k: first[k] for k in START} == START and first["settings"]["model.gains"] == "softplus"
    assert first["settings"]["weights.sparsity"] == 0.0 and "use_consistency" in first
    assert second["number"] == 1
    # A searcher built again over the same study (a restart) does not queue its start points again.
    again = _searcher(tmp_path, points_to_evaluate=[START])
    assert _config(again, "c")["number"] == 2
    assert [t.state for t in _trials(tmp_path)] == [TrialState.RUNNING] * 3


def test_a_restored_searcher_continues_the_mapping_and_never_tells_twice(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", GOOD)
    saved = tmp_path / "searcher.pkl"
    searcher.save(str(saved))
    restored = _searcher(tmp_path)  # a new driver process: Tune rebuilds the searcher, then restores it
    restored.restore(str(saved))
    restored.on_trial_complete("a", {**GOOD, "auc": 0.99})  # Tune re-announces a trial told before the stop
    restored.on_trial_complete("b", {**GOOD, "mastery_corr": 0.5})  # asked before the stop, ends after it
    assert _config(restored, "c")["number"] == 2
    restored.on_trial_complete("unknown", GOOD)  # a trial the searcher never suggested: ignored
    a, b, c = _trials(tmp_path)
    assert a.state == b.state == TrialState.COMPLETE and a.values[0] == pytest.approx(0.71)
    assert b.constraints == {"mastery_corr >= 0.4": 0.0, "neg_gain_rate < 0.1": 0.0}
    assert c.state == TrialState.RUNNING


def test_an_errored_trial_retried_after_a_resume_is_recorded_anew_once(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.suggest("a")
    searcher.on_trial_complete("a", error=True)
    saved = tmp_path / "searcher.pkl"
    searcher.save(str(saved))
    restored = _searcher(tmp_path)
    restored.restore(str(saved))
    restored.on_trial_complete("a", GOOD)  # Tune retried it (resume_errored) and it completed
    restored.on_trial_complete("a", GOOD)  # and announced it again after another resume
    failed, retry = _trials(tmp_path)
    assert failed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["retry_of"] == 0 and retry.params == failed.params
    assert (
        retry.user_attrs["status"] == "COMPLETED"
        and retry.user_attrs["tune_trial_id"] == failed.user_attrs["tune_trial_id"]
    )
    assert retry.values == pytest.approx([0.71, 0.3, 0.05]) and retry.constraints["mastery_corr >= 0.4"] > 0


def test_the_searcher_pickles_without_its_study_and_reopens_it(tmp_path):
    searcher = _searcher(tmp_path, points_to_evaluate=[START])
    searcher.suggest("a")
    copy = pickle.loads(pickle.dumps(searcher))  # Tune pickles the Tuner, searcher included, before it runs
    assert _config(copy, "b")["number"] == 1
    copy.on_trial_complete("a", GOOD)
    assert [t.state for t in _trials(tmp_path)] == [TrialState.COMPLETE, TrialState.RUNNING]


def test_tune_wrappers_drive_it_and_save_and_restore_its_state(tmp_path):
    """What `tune.Tuner` builds around a Searcher: a ConcurrencyLimiter in a SearchGenerator."""
    generator = SearchGenerator(ConcurrencyLimiter(_searcher(tmp_path), max_concurrent=2))
    limiter = generator.searcher
    assert isinstance(limiter.suggest("a"), dict) and isinstance(limiter.suggest("b"), dict)
    assert limiter.suggest("c") is None  # two running: the limiter holds the third back
    generator.on_trial_complete("a", GOOD)
    generator.save_to_dir(str(tmp_path), session_str="x")
    restored = SearchGenerator(ConcurrencyLimiter(_searcher(tmp_path), max_concurrent=2))
    assert restored.has_checkpoint(str(tmp_path))
    restored.restore_from_dir(str(tmp_path))
    restored.on_trial_complete("b", GOOD)
    assert _config(restored.searcher, "d")["number"] == 2
    assert [t.state for t in _trials(tmp_path)] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]


def test_the_searcher_methods_tune_calls_keep_their_signatures():
    """Fails, naming the method, if a Ray release changes the Searcher interface this searcher implements."""
    assert Searcher.FINISHED == "FINISHED"
    for name in (
        "suggest",
        "on_trial_complete",
        "save",
        "restore",
        "get_state",
        "set_state",
        "set_search_properties",
        "save_to_dir",
        "restore_from_dir",
    ):
        ours, theirs = getattr(StudySearcher, name), getattr(Searcher, name, None)
        assert theirs is not None, f"ray.tune.search.Searcher.{name} is gone: check search/run/searcher.py"
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters), (
            f"Searcher.{name}{inspect.signature(theirs)} changed: update StudySearcher.{name}"
        )
    assert isinstance(Searcher.metric, property) and isinstance(Searcher.mode, property)


def test_it_rejects_another_search_space_but_accepts_its_own_metrics(tmp_path):
    searcher = _searcher(tmp_path)
    assert searcher.metric == METRICS and searcher.mode == MODES
    assert searcher.set_search_properties(None, None, {})
    assert not searcher.set_search_properties("loss", "min", {})
    assert not searcher.set_search_properties(None, None, {"lr": 0.1})
    with pytest.raises(ValueError, match="one per metric"):
        StudySearcher(
            space=TrialSpace("aux_weights", 0),
            metric=["auc"],
            mode=["up"],
            study_name="x",
            storage=JournalStorage(JournalFileBackend(_journal(tmp_path))),
        )


def test_suggestions_stop_when_ended_and_suggested_trials_fill_the_budget(tmp_path):
    study = fake_study(tmp_path, "budget", 3, nan_trial=False)  # 2 completed and 1 errored: all count
    put_trial_like(study, "lost0001", status="LOST")  # abandoned trials never count
    put_trial_like(study, "run00001", status="RUNNING")  # nor running ones the restored Tuner does not know
    searcher = _searcher(tmp_path, "budget", TrialBudget(study.storage, study.name, 6))
    assert all(isinstance(searcher.suggest(trial_id), dict) for trial_id in ("a", "b", "c"))
    assert searcher.suggest("d") == Searcher.FINISHED
    assert len(_trials(tmp_path, "budget")) == 3  # nothing asked of Optuna for the refused trial


def test_a_restored_searcher_counts_trials_that_ended_after_its_state_was_saved(tmp_path):
    study = fake_study(tmp_path, "restored", 3, nan_trial=False)
    budget = TrialBudget(study.storage, study.name, 6)
    searcher = _searcher(tmp_path, "restored", budget)
    assert isinstance(searcher.suggest("a"), dict) and isinstance(searcher.suggest("b"), dict)
    saved = tmp_path / "searcher.pkl"
    searcher.save(str(saved))
    # The driver started one more trial after the save; it ended and was stored, then the driver died.
    put_trial_like(study, "late0001", status="COMPLETED")
    restored = _searcher(tmp_path, "restored", budget)
    restored.restore(str(saved))
    assert restored.suggest("c") == Searcher.FINISHED  # 3 before + a + b + the late one = 6


@pytest.mark.parametrize("seed_mode", ["common", "per-trial"])
def test_common_seeds_give_trials_with_the_same_settings_the_same_initial_weights(seed_mode, tmp_path):
    """Common random numbers: with the default seed mode two trials differ by their settings only."""
    import torch

    from gainakt.data import load_dataset
    from gainakt.train import Trainer
    from search.run.trainable import TrialSetup, trial_config

    space = TrialSpace("aux_weights", 7, seed_mode)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    first = space(trial)
    study.enqueue_trial(trial.params)  # the same settings again, as another trial
    second = space(study.ask())
    assert first["settings"] == second["settings"] and first["number"] != second["number"]
    setup = TrialSetup(study="s", data="synthetic:students=50,concepts=5", preset="cpu-small")
    dataset = load_dataset(setup.data)
    weights = []
    for config, folder in ((first, "a"), (second, "b")):
        train_config = trial_config(setup, config["settings"], config["seed"], str(tmp_path / folder))
        trainer = Trainer(train_config, dataset, float("nan"))
        weights.append(trainer.model.state_dict())
    same = all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    if seed_mode == "common":
        assert first["seed"] == second["seed"] == 7 and same
    else:
        assert (first["seed"], second["seed"]) == (7, 8) and not same


def test_a_study_saved_before_seed_modes_keeps_seeding_each_trial(tmp_path):
    import json

    from search.spec import SweepSpec
    from search.store.study import Study

    study = Study(str(tmp_path), "old")
    study.write_spec(SweepSpec(name="old", storage=str(tmp_path)))
    saved = json.loads(Path(study.spec_path).read_text())
    assert saved.pop("seed_mode") == "common"
    Path(study.spec_path).write_text(json.dumps(saved))  # as written before the setting existed
    assert study.read_spec().seed_mode == "per-trial"


@pytest.mark.parametrize(
    "stopped_as, state", [("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED)]
)
def test_a_trial_the_scheduler_stopped_is_stopped_in_optuna_told_as_asked(tmp_path, stopped_as, state):
    """Tune marks a scheduler's stop `done` too: the epoch the trial ended at, against the epochs
    asked, and whether its own patience ended it, tell a stop from a completion."""
    searcher = _searcher(tmp_path, epochs=3, stopped_as=stopped_as)
    ends = {  # Tune trial -> (its last epoch, whether its trainer's patience ended it)
        "stopped": (1, False),
        "patience": (2, True),
        "ran_all": (3, False),
    }
    for trial_id, (epoch, itself) in ends.items():
        _config(searcher, trial_id)
        result = {**GOOD, "done": True, "stopped_early": itself, "epoch_row": {"epoch": epoch}}
        searcher.on_trial_complete(trial_id, result)
    stopped, patience, ran_all = _trials(tmp_path)
    assert [t.user_attrs["status"] for t in (stopped, patience, ran_all)] == [
        "STOPPED",
        "COMPLETED",
        "COMPLETED",
    ]
    assert stopped.state == state and patience.state == ran_all.state == TrialState.COMPLETE
    assert (stopped.values is not None) == (stopped_as == "complete")
    with pytest.raises(ValueError, match="stopped_as 'dropped': one of complete, pruned"):
        _searcher(tmp_path, name="other", stopped_as="dropped")
