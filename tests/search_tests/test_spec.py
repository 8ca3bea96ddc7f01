"""Sweep specs, spaces and bad sweep input: one line, exit code 2, nothing written."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
from conftest import REPO

import spaces
from gainakt.errors import ConfigError
from gainakt.guarantees import zero_losses
from gainakt.schema import SEARCHED_LOSSES
from search.cli import main
from search.run.trainable import TrialSetup, trial_config
from search.spec import Constraint, Objective, SweepSpec, load_spec


@pytest.mark.parametrize("name", spaces.names())
def test_every_space_samples_valid_training_settings(name):
    space = spaces.get_space(name)
    for seed in range(5):
        settings = spaces.sample_once(space, seed=seed)
        config = trial_config(
            TrialSetup(study="s", data="synthetic", preset="cpu-small"), settings, seed=seed
        )
        for key, value in settings.items():
            section, _, field = key.rpartition(".")
            assert getattr(getattr(config, section) if section else config, field) == value


@pytest.mark.parametrize("name", ["aux_weights", "aux_weights_deep"])
def test_aux_weights_can_switch_each_loss_off_and_stays_in_range(name):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_off, seen_on = set(), set()
    heads_with_residual, masteries = set(), set()
    for _ in range(60):
        trial = study.ask()
        settings = spaces.get_space(name)(trial)
        masteries.add(settings["model.mastery"])
        head = settings["model.head"]
        idle = zero_losses(settings["model.gains"], settings["model.mastery"], head)
        # the residual loss acts on a mixed head only: with a free or a mastery head it is not sampled
        assert ("residual" in idle) == (head != "mixed")
        for loss in SEARCHED_LOSSES:
            weight = settings[f"weights.{loss}"]
            (seen_on if weight > 0 else seen_off).add(loss)
            assert weight == 0 or 1e-3 <= weight <= 1.0
            assert weight == 0 or loss not in idle, f"{loss} weighted on a model where it is identically 0"
            assert (f"use_{loss}" in trial.params) == (loss not in idle), f"{loss}: sampled where it is idle"
        if settings["weights.residual"] > 0:
            heads_with_residual.add(head)
        study.tell(trial, 0.0)
    assert seen_off == seen_on == set(SEARCHED_LOSSES)
    assert heads_with_residual == {"mixed"}
    assert masteries == (
        {"cumulative", "direct", "deep"} if name == "aux_weights_deep" else {"cumulative", "direct"}
    )


def test_a_broken_space_fails_when_sampled():
    def broken(trial):
        return {"weights.sparsity": 1 / 0}

    with pytest.raises(spaces.SpaceError, match="fails when sampled"):
        spaces.sample_once(broken)


def test_spec_round_trip_and_file_and_flags(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "x"\ntrials = 3\nobjectives = ["auc:max", "gain_corr:max"]\n'
        'constraints = ["gain_corr >= 0.3"]\n[resources]\ncpus = 2\n'
        "[train]\nepochs = 2\n[train.model]\nd_model = 32\n"
    )
    spec = load_spec(str(path))
    assert (
        spec.trials == 3
        and spec.cpus == 2.0
        and spec.train == {"preset": "cpu-small", "epochs": 2, "model": {"d_model": 32}}
    )
    assert spec.objectives == (Objective("auc", "max"), Objective("gain_corr", "max"))
    assert SweepSpec.from_dict(spec.to_dict()) == spec
    changed = spec.with_overrides(trials=5, assignments=["model.heads=4"], preset="monitored")
    assert (
        changed.trials == 5
        and changed.train["model"] == {"d_model": 32, "heads": 4}
        and changed.preset == "monitored"
    )


def test_constraints_measure_their_violation():
    at_least = Constraint.parse("mastery_corr >= 0.4")
    below = Constraint.parse("neg_gain_rate<0.1")
    assert at_least.met(0.4) and not at_least.met(0.39) and not at_least.met(math.nan)
    assert at_least.violation(0.3) == pytest.approx(0.1) and at_least.violation(0.5) == 0
    assert below.violation(0.25) == pytest.approx(0.15) and below.violation(0.05) == 0
    assert not below.met(0.1) and math.isinf(below.violation(math.nan))


def test_a_strict_constraint_met_with_equality_is_violated_for_optuna_too():
    faithful = Constraint.parse("faithfulness > 0")
    assert not faithful.met(0.0) and faithful.violation(0.0) > 0  # a free head's faithfulness is 0
    assert faithful.met(0.01) and faithful.violation(0.01) == 0
    assert Constraint.parse("copy_corr < 0.9").violation(0.9) > 0
    assert Constraint.parse("mastery_corr >= 0.4").violation(0.4) == 0


BAD_SPECS = {
    "malformed TOML": ('name = "x"\ntrials = \n', "not valid TOML"),
    "unknown key": ('name = "x"\ntrails = 3\n', "unknown setting 'trails'"),
    "unknown resource": ("[resources]\nmemory = 3\n", "unknown setting 'resources.memory'"),
    "wrong type": ('trials = "many"\n', "'trials' must be an integer, got 'many'"),
    "objectives not strings": ("objectives = [3]\n", "'objectives[0]' must be a string"),
    "unknown space": ('space = "nope"\n', "unknown space 'nope'"),
    "unknown objective metric": ('objectives = ["aucc:max"]\n', "unknown metric 'aucc'"),
    "bad direction": ('objectives = ["auc:up"]\n', "expected metric:max or metric:min"),
    "bad constraint": ('constraints = ["mastery_corr => 0.4"]\n', "expected 'metric >= value'"),
    "constraint on unknown metric": ('constraints = ["mastery >= 0.4"]\n', "unknown metric 'mastery'"),
    "negative cpus": ("[resources]\ncpus = -1\n", "resources.cpus must be > 0"),
    "negative gpus": ("[resources]\ngpus = -0.5\n", "resources.gpus must be >= 0"),
    "missing data": ('data = "/no/such/folder"\n', "/no/such/folder"),
    "name with path characters": ('name = "../escape"\n', "name '../escape'"),
    "bad training setting": ('[train]\nlr = "fast"\n', "'lr' must be a number"),
    "unknown preset": ('[train]\npreset = "huge"\n', "unknown preset 'huge'"),
    "wrong sampler": ('sampler = "cmaes"\n', "'sampler' must be one of tpe, nsga2, gp, random, got 'cmaes'"),
    "start not tables": ("start = 3\n", "'start' must be a list of tables"),
    "start naming no parameter": ("[[start]]\nuse_foo = true\n", "samples no parameter 'use_foo'"),
    "start choice outside the space": ('[[start]]\n"model.gains" = "tanh"\n', "'tanh' not in"),
    "start weight outside the space": (
        '[[start]]\nuse_sparsity = true\n"weights.sparsity" = 5.0\n',
        "weights.sparsity = 5.0 is outside the space's range",
    ),
}


@pytest.mark.parametrize("case", BAD_SPECS, ids=list(BAD_SPECS))
def test_bad_sweep_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    text, expected = BAD_SPECS[case]
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    storage = tmp_path / "studies"
    assert main(["run", str(spec), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not storage.exists()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--objective", "auc:up"], "expected metric:max or metric:min"),
        (["--objectives", "auc,aucc"], "unknown metric 'aucc'"),
        (["--constraint", "auc >= high"], "'high' is not a number"),
        (["--cpus", "0"], "resources.cpus must be > 0"),
        (["--name", "a/b"], "name 'a/b'"),
        (["--trials", "0"], "trials must be from 1"),
        (["--space", "no_module_here:space"], "cannot import it"),
    ],
)
def test_bad_flags_are_one_line_exit_2(flags, expected, tmp_path, capsys):
    storage = tmp_path / "studies"
    assert main(["run", "--storage", str(storage), *flags]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not storage.exists()


def test_resume_and_status_of_an_unknown_study_are_one_line_errors(tmp_path, capsys):
    for command in ("resume", "status"):
        assert main([command, "ghost", "--storage", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "study 'ghost' not found" in err


def test_an_existing_study_with_other_settings_is_refused(tmp_path, capsys):
    from search.store.study import Study

    Study(str(tmp_path), "taken").write_spec(SweepSpec(name="taken", storage=str(tmp_path)))
    assert main(["run", "--name", "taken", "--storage", str(tmp_path), "--trials", "99"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "differs in: trials" in err


def test_spec_validation_errors_are_config_errors():
    with pytest.raises(ConfigError):
        SweepSpec(concurrent=0)
    with pytest.raises(ConfigError):
        SweepSpec(objectives=(Objective("auc", "max"), Objective("auc", "min")))


STUDY_FILES = sorted((REPO / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDY_FILES, ids=[p.stem for p in STUDY_FILES])
def test_every_study_file_in_studies_is_a_valid_sweep(path, tmp_path, monkeypatch):
    """The shipped study files load, their start points lie in the space, and no objective holds by
    construction (what `run` checks before Ray starts); nothing is written outside tmp_path."""
    from search.run.sweep import prepare

    monkeypatch.chdir(REPO)  # their data paths are relative to the repository root
    spec = load_spec(str(path))
    if spec.data.startswith("..") and not (REPO / spec.data).exists():
        pytest.skip(
            f"{path.name}: data {spec.data} not found (only the project's own checkout has ../shared)"
        )
    prepare(dataclasses.replace(spec, storage=str(tmp_path)))


def test_the_faithful_study_requires_a_mastery_the_prediction_reads():
    spec = load_spec(str(REPO / "studies" / "faithful.toml"))
    assert [str(o) for o in spec.objectives] == [
        "auc:max",
        "mastery_lift:max",
        "monotonicity_violation_rate:min",
    ]
    faithful = next(c for c in spec.constraints if c.metric == "faithfulness")
    assert not faithful.met(0.0) and faithful.violation(0.0) > 0  # every free head
    assert faithful.met(0.05)


def test_a_constraint_threshold_is_kept_to_the_last_digit_through_spec_json(tmp_path):
    from search.schema import violation_column
    from search.store.study import Study

    spec = SweepSpec(
        name="exact", storage=str(tmp_path), constraints=(Constraint.parse("auc >= 0.61234567"),)
    )
    study = Study(str(tmp_path), "exact")
    study.write_spec(spec)
    (saved,) = study.read_spec().constraints
    assert saved.threshold == 0.61234567 and str(saved) == "auc >= 0.61234567"
    assert violation_column(saved) == "violation.auc>=0.61234567"
    assert str(Constraint.parse("neg_gain_rate < 0.10")) == "neg_gain_rate < 0.1"  # short where exact


def test_a_best_lookup_threshold_is_resolved_against_the_lookups_and_kept_as_written(tmp_path):
    from search.schema import violation_column
    from search.store.study import Study

    auc = Constraint.parse("auc >= best_lookup")
    assert auc.threshold is None and str(auc) == "auc >= best_lookup"
    with pytest.raises(RuntimeError, match="before its threshold was resolved"):
        auc.met(0.9)  # a bug, not bad input: every reader resolves first
    lookups = {"pfa": {"auc": 0.70}, "base_rate": {"auc": 0.64}, "broken": {"auc": math.nan}}
    resolved = auc.resolve(lookups)
    assert resolved.threshold == 0.70 and str(resolved) == str(auc)
    assert resolved.shown() == "auc >= best_lookup (0.7000)"
    assert resolved.met(0.70) and not resolved.met(0.6999) and resolved.violation(0.69) == pytest.approx(0.01)
    assert violation_column(resolved) == "violation.auc>=best_lookup"
    # a metric the lookups score in the other direction takes their lowest value
    loss = Constraint.parse("val_loss <= best_lookup")
    assert loss.resolve({"a": {"val_loss": 0.61}, "b": {"val_loss": 0.58}}).threshold == 0.58
    with pytest.raises(ConfigError, match="no lookup of the study has a auc"):
        auc.resolve({})
    with pytest.raises(ConfigError, match="the lookups have no faithfulness"):
        Constraint.parse("faithfulness >= best_lookup")
    spec = SweepSpec(name="relative", storage=str(tmp_path), constraints=(auc,))
    Study(str(tmp_path), "relative").write_spec(spec.resolved(lookups))
    (saved,) = Study(str(tmp_path), "relative").read_spec().constraints
    assert saved == auc  # the spec keeps the text; each reader resolves it against baselines.json


def test_a_constraint_unless_fixed_skips_a_trial_whose_model_fixes_its_metric():
    import pandas as pd

    from search.analysis.pareto import feasible, total_violation

    plain = Constraint.parse("faithfulness > 0")
    skipped = Constraint.parse("faithfulness >= 0.05 unless fixed")
    assert str(skipped) == "faithfulness >= 0.05 unless fixed"
    assert skipped.unless_fixed and not plain.unless_fixed
    assert Constraint.parse("faithfulness >= 0.05   unless  fixed") == skipped
    assert skipped.met(0.0, fixed=True) and skipped.violation(0.0, fixed=True) == 0.0
    assert not skipped.met(0.0) and skipped.violation(0.01) == pytest.approx(0.04)
    assert not plain.met(0.0, fixed=True)  # a plain constraint judges the fixed value like any other
    rows = pd.DataFrame(
        {
            "faithfulness": [0.0, 0.0, 0.2, math.nan],
            "guaranteed": ["faithfulness,residual_share", "", "", "faithfulness"],
        }
    )
    assert feasible(rows, [skipped]).tolist() == [True, False, True, True]
    assert feasible(rows, [plain]).tolist() == [False, False, True, False]
    assert total_violation(rows, [skipped]).tolist()[:3] == pytest.approx([0.0, 0.05 / 0.2, 0.0])
