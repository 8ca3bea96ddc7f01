"""The replay engine (`benchmarks/replay.py`) on small constructed learning curves: what it runs, what
it feeds the scheduler and the searcher, and how it maps proposals onto recorded trials."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from replay import Curves, Feed, Sampled, nearest, ordered, replay, trial_result

from search.analysis import pareto
from search.spec import SweepSpec

SPEC = SweepSpec(name="replay", trials=8, scheduler="fifo", sampler="random", constraints=())
OBJECTIVES = SPEC.objectives
EPOCHS = 4


def curve(level: float, epochs: int = EPOCHS) -> list[dict[str, float]]:
    """A trial's epoch rows: every objective improves by a step per epoch from `level`."""
    rows = []
    for epoch in range(1, epochs + 1):
        value = level + 0.01 * epoch
        row = {o.metric: value if o.direction == "max" else 1 - value for o in OBJECTIVES}
        rows.append({"epoch": epoch, "seconds": 1.0, **row, "neg_gain_rate": 0.0})
    return rows


def curves() -> Curves:
    levels = {f"t{i}": 0.1 * i for i in range(8)}
    rows = {t: curve(level, EPOCHS if t != "t3" else 2) for t, level in levels.items()}  # t3: patience
    params = {
        t: {"weights.sparsity": level, "use_sparsity": i % 2 == 0}
        for i, (t, level) in enumerate(levels.items())
    }
    distributions = {
        "weights.sparsity": FloatDistribution(0.0, 1.0),
        "use_sparsity": CategoricalDistribution([True, False]),
    }
    return Curves(SPEC, rows, params, distributions)


def reference(recorded: Curves) -> np.ndarray:
    return pareto.reference_point(recorded.final(recorded.rows), OBJECTIVES)


def test_the_result_fed_is_the_deployed_epochs_figures_at_the_epoch_reached():
    rows = curve(0.5)[:3]
    rows[2] = {**rows[2], "auc": 0.0}  # epoch 3 is worse: epoch 2 stays the one deployed
    result = trial_result(rows)
    assert result["training_iteration"] == 3 and result["epoch_row"]["epoch"] == 3
    assert result["selected_epoch"] == 2 and result["auc"] == rows[1]["auc"]


def test_fifo_runs_every_epoch_on_a_clock_shared_by_its_workers():
    recorded = curves()
    run = replay(recorded, Feed("fifo", SPEC, EPOCHS), 2, ordered(sorted(recorded.rows)), reference(recorded))
    assert run.trial_epochs == sum(len(r) for r in recorded.rows.values()) == 30
    # Two workers, trials in order (t3 two epochs): t0, t1 end at 4; t2 at 8, t3 at 6; t4 at 10,
    # t5 at 12; t6 at 14, t7 at 16.
    assert run.seconds == 16.0 and not run.stopped
    full = pareto.hypervolume(recorded.final(recorded.rows), OBJECTIVES, reference(recorded))
    assert run.hypervolume == pytest.approx(full)


def test_mo_asha_stops_the_weaker_trials_at_their_rung_and_the_goal_is_met_when_reached():
    recorded = curves()
    strongest_first = sorted(recorded.rows, reverse=True)
    goal = 0.5 * pareto.hypervolume(recorded.final(recorded.rows), OBJECTIVES, reference(recorded))
    run = replay(
        recorded, Feed("mo-asha", SPEC, EPOCHS), 1, ordered(strongest_first), reference(recorded), goal
    )
    assert run.stopped and run.stopped <= set(recorded.rows) - {"t7"}
    assert run.trial_epochs < 30 and all(len(run.observed[t]) < len(recorded.rows[t]) for t in run.stopped)
    assert run.reached_at is not None and run.reached_at[0] <= len(recorded.rows["t7"])


def test_a_proposal_runs_the_nearest_unused_recorded_trial():
    recorded = curves()
    assert nearest({"weights.sparsity": 0.31, "use_sparsity": False}, recorded, exclude=set()) == "t3"
    after_t3 = nearest({"weights.sparsity": 0.31, "use_sparsity": False}, recorded, exclude={"t3"})
    assert after_t3 == "t5"  # 0.19 off, t1 0.21
    # t2 is 0.01 off on the number but differs on the flag, which counts 1; t1 is 0.09 off.
    assert nearest({"weights.sparsity": 0.19, "use_sparsity": False}, recorded, exclude=set()) == "t1"
    assert nearest({"weights.sparsity": 0.41}, recorded, exclude=set()) == "t4"  # the flag missing: 1 for all


def sampled(recorded: Curves, budget: int, stopped_as: str = "complete") -> Sampled:
    source = Sampled(recorded, budget=budget, seed=0, stopped_as=stopped_as)
    source.searcher._space = lambda trial: {  # the constructed curves' own two parameters
        "settings": {
            "weights.sparsity": trial.suggest_float("weights.sparsity", 0.0, 1.0),
            "use_sparsity": trial.suggest_categorical("use_sparsity", [True, False]),
        },
        "seed": 0,
        "number": trial.number,
    }
    return source


@pytest.mark.parametrize("stopped_as", ["complete", "pruned"])
def test_the_sampler_in_the_loop_hears_every_result_and_each_recorded_trial_runs_once(stopped_as):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recorded = curves()
    source = sampled(recorded, 6, stopped_as)
    feed = Feed("mo-asha", SPEC, EPOCHS)
    run = replay(
        recorded,
        feed,
        2,
        source.propose,
        reference(recorded),
        on_result=source.on_result,
        on_end=source.on_end,
    )
    assert len(source.running) == len(run.observed) == 6  # six proposals, six distinct recorded trials
    told = source.searcher.study.get_trials(deepcopy=False)
    assert len(told) == 6 and all(t.state != TrialState.RUNNING for t in told)
    stopped = [t for t in told if t.user_attrs["status"] == "STOPPED"]
    assert len(stopped) == len(run.stopped) > 0
    expected = TrialState.PRUNED if stopped_as == "pruned" else TrialState.COMPLETE
    assert all(t.state == expected for t in stopped)
    assert all(not math.isnan(v) for t in told if t.values for v in t.values)


def test_under_fifo_every_trial_is_told_completed_the_one_its_patience_ended_too():
    recorded = curves()
    source = sampled(recorded, 8)
    run = replay(
        recorded,
        Feed("fifo", SPEC, EPOCHS),
        2,
        source.propose,
        reference(recorded),
        on_result=source.on_result,
        on_end=source.on_end,
    )
    told = source.searcher.study.get_trials(deepcopy=False)
    assert len(run.observed["t3"]) == 2 and not run.stopped
    assert [t.user_attrs["status"] for t in told] == ["COMPLETED"] * 8
    assert all(t.state == TrialState.COMPLETE for t in told)
