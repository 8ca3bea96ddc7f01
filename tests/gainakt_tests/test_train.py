"""The single-run trainer on simulated data: rows, checkpoints, determinism, exact resume, the public
training API (epochs, batch hooks, no side effects before `run()`), the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from gainakt import strict_json
from gainakt.baselines import fold_baseline
from gainakt.data import load_dataset
from gainakt.schema import LOSS_COMPONENTS, RECOVERY_METRICS
from gainakt.sequences import Dataset
from gainakt.train import EpochRow, TrainConfig, Trainer, make_config, train
from search.cli import main

DATA = "synthetic:students=150,concepts=8,seed=2"
SMALL = [
    "model.d_model=32",
    "model.heads=4",
    "model.blocks=1",
    "model.d_ff=64",
    "threads=1",
    "monitor_interval=2",
    "weights.non_negative=0.1",
    "weights.monotonicity=0.1",
    "weights.mastery_performance=0.1",
    "weights.gain_performance=0.1",
    "weights.sparsity=0.05",
    "weights.consistency=0.05",
    "model.gains=linear",
]
TIMING = {"seconds", "interactions_per_s"}


def rows(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics_epoch.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def without_timing(table: list[dict[str, float]]) -> list[dict[str, float | str]]:
    """The rows without their timings, NaN written as "nan" so that equal rows compare equal."""
    return [{k: "nan" if math.isnan(v) else v for k, v in row.items() if k not in TIMING} for row in table]


def small_config(out: Path, **values):
    return make_config(assignments=SMALL, data=DATA, out=str(out), **{"epochs": 3, "patience": 0, **values})


def make_trainer(config: TrainConfig, dataset: Dataset, **hooks) -> Trainer:
    """A trainer measuring mastery_lift against the lookups of its own validation fold, as `train` does."""
    return Trainer(config, dataset, fold_baseline(dataset, config.fold), **hooks)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(DATA)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, dataset) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    train(small_config(out), dataset)
    return out


def test_rows_have_shares_that_sum_to_one(finished: Path) -> None:
    table = rows(finished)
    assert [row["epoch"] for row in table] == [1, 2, 3]
    for row in table:
        shares = [row[f"share_{name}"] for name in LOSS_COMPONENTS]
        assert min(shares) >= 0 and abs(sum(shares) - 1) < 1e-6
        assert row["share_bce"] < 1  # the auxiliary losses are in the total
        weighted = sum(row[f"loss_{name}"] for name in LOSS_COMPONENTS)
        assert weighted == pytest.approx(row["train_loss"], rel=1e-6)
        for name in (
            "auc",
            "acc",
            "mastery_corr",
            "gain_corr",
            "neg_gain_rate",
            "monotonicity_violation_rate",
            *RECOVERY_METRICS,
            "monitor_mastery_corr",
            "monitor_neg_gain_rate",
            "lr",
            "interactions_per_s",
        ):
            assert math.isfinite(row[name]), name


def test_best_checkpoint_holds_the_best_epochs_weights(finished: Path, capsys) -> None:
    table = rows(finished)
    best = max(table, key=lambda row: row["auc"])
    results = strict_json.loads((finished / "results.json").read_text())
    assert results["best_epoch"] == best["epoch"]
    assert main(["eval", str(finished), "--json"]) == 0
    evaluated = strict_json.loads(capsys.readouterr().out)  # no bare NaN: strict JSON
    assert 0 <= evaluated["baselines"]["pfa"]["neg_gain_rate"] < 1  # its updates that go down, over C
    assert evaluated["split"] == "valid" and evaluated["fold"] == results["config"]["fold"]
    assert main(["eval", str(finished)]) == 0  # the table says what it evaluated, and on what
    title = capsys.readouterr().out.splitlines()[0]
    assert f"best.pt (epoch {int(best['epoch'])})" in title
    fold, positions = results["config"]["fold"], evaluated["positions"]
    assert f"validation fold {fold} ({positions:,} predicted answers)" in title
    assert evaluated["epoch"] == best["epoch"]
    for name in ("auc", "mastery_corr", "neg_gain_rate", "gain_corr"):
        assert evaluated[name] == pytest.approx(best[name], abs=1e-6)
    # the baselines beside it, and the lift against the best of them, as the epoch row had it
    assert list(evaluated["baselines"]) == ["base_rate", "running_accuracy", "last_response", "pfa"]
    best_lookup = max(v["mastery_corr"] for v in evaluated["baselines"].values())
    assert evaluated["mastery_lift"] == pytest.approx(evaluated["mastery_corr"] - best_lookup, abs=1e-9)
    assert evaluated["mastery_lift"] == pytest.approx(best["mastery_lift"], abs=1e-6)
    for name in RECOVERY_METRICS:  # simulated data: every recovery figure, the baselines' too
        assert evaluated[name] == pytest.approx(best[name], abs=1e-6)
        assert math.isfinite(evaluated["baselines"]["pfa"][name]), name


def test_eval_text_leaves_out_recovery_figures_only_where_there_is_no_truth() -> None:
    from search.report.terminal import metric_lines

    nan = float("nan")
    real = metric_lines("t", {"auc": 0.7, **{name: nan for name in RECOVERY_METRICS}})
    simulated = metric_lines("t", {"auc": 0.7, **{name: 0.5 for name in RECOVERY_METRICS}})
    assert not any(name in line for line in real for name in RECOVERY_METRICS)
    assert all(any(name in line for line in simulated) for name in RECOVERY_METRICS)


def test_same_seed_same_metrics(tmp_path: Path, dataset, finished: Path) -> None:
    train(small_config(tmp_path / "again"), dataset)
    assert without_timing(rows(tmp_path / "again")) == without_timing(rows(finished))


def test_stopped_and_resumed_run_ends_like_an_uninterrupted_one(
    tmp_path: Path, dataset, finished: Path
) -> None:
    class Crash(Exception):
        pass

    def crash_after_two(row, run_dir) -> None:
        if row.epoch == 2:
            raise Crash

    out = tmp_path / "interrupted"
    with pytest.raises(Crash):
        make_trainer(small_config(out), dataset, on_epoch=crash_after_two).run()
    assert len(rows(out)) == 2
    seen = []
    resumed = make_trainer(small_config(out), dataset, on_epoch=lambda row, run_dir: seen.append(row.epoch))
    resumed.run(resume=True)
    assert seen == [3]
    assert without_timing(rows(out)) == without_timing(rows(finished))


def test_wandb_offline_logs_the_run(tmp_path: Path, dataset) -> None:
    out = tmp_path / "logged"
    train(small_config(out, epochs=1, wandb="offline", wandb_project="gainakt-test"), dataset)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_constructing_a_trainer_leaves_torchs_rng_and_threads_alone_and_seeds_its_weights(
    tmp_path: Path, dataset
) -> None:
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    first = make_trainer(small_config(tmp_path / "first", threads=threads + 1), dataset)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)
    assert not (tmp_path / "first").exists()

    def same_weights(a: Trainer, b: Trainer) -> bool:
        return all(torch.equal(w, b.model.state_dict()[k]) for k, w in a.model.state_dict().items())

    assert same_weights(first, make_trainer(small_config(tmp_path / "same"), dataset))
    assert not same_weights(first, make_trainer(small_config(tmp_path / "other", seed=1), dataset))


def test_train_epoch_calls_each_batch_hook_once_per_step_and_writes_no_run_folder(
    tmp_path: Path, dataset
) -> None:
    out = tmp_path / "epoch"
    seen: list[tuple[int, int]] = []  # (step, the batch's real positions)

    def hook(step: int, states, batch) -> None:
        assert states.logits.shape == batch.mask.shape
        seen.append((step, batch.num_real))

    trainer = make_trainer(small_config(out), dataset, batch_hooks=[hook])
    assert trainer.batch_hooks == [trainer.monitor.after_batch, hook]
    row = trainer.train_epoch()
    assert isinstance(row, EpochRow) and row.epoch == trainer.epoch == 1
    assert [step for step, _ in seen] == list(range(1, len(trainer.train_plan) + 1))
    assert sum(real for _, real in seen) == pytest.approx(row.interactions_per_s * row.seconds)
    assert math.isfinite(row.monitor["mastery_corr"])  # the monitor sampled, as the first hook
    assert not out.exists()


def test_a_run_that_raises_closes_its_wandb_run(tmp_path: Path, dataset) -> None:
    # A learning rate of 1e30 sends the weights to ~1e30 in one step: a later loss is NaN.
    config = small_config(
        tmp_path / "nan",
        epochs=1,
        lr=1e30,
        wandb="offline",
        wandb_project="gainakt-test",
        wandb_dir=str(tmp_path),
    )
    seen = []  # (the trainer's wandb sink, whether it was logging) at each step

    def hook(step: int, states, batch) -> None:
        seen.append((trainer.wandb, trainer.wandb.active))

    trainer = make_trainer(config, dataset, batch_hooks=[hook])
    with pytest.raises(FloatingPointError, match="loss is nan"):
        trainer.run()
    sink = trainer.wandb
    assert seen and all(s is sink and active for s, active in seen)
    assert not sink.active
    assert any((tmp_path / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--set", "lerning_rate=0.1"], "unknown setting 'lerning_rate'"),
        (["--set", "epochs=many"], "'epochs' must be an integer, got 'many'"),
        (["--set", "weights.sparsity=-0.5"], "weights.sparsity must be >= 0 and finite, got -0.5"),
        (["--set", "model.gains=cubic"], "'model.gains' must be one of relu, softplus, linear, got 'cubic'"),
        (["--set", "model.heads=5"], "model.heads=5 does not divide model.d_model=128"),
        (["--set", "model.depth=2"], "unknown setting 'model.depth'"),
        (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
        (["--config", "{toml}"], "unknown setting 'weights.entropy'"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(
    args: list[str], phrase: str, tmp_path: Path, capsys
) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("epochs = 2\n[weights]\nentropy = 0.1\n")
    out = tmp_path / "never"
    argv = ["train", "--out", str(out), *(a.replace("{toml}", str(toml)) for a in args)]
    with pytest.raises(SystemExit) if args[0] == "--preset" else _no_raise() as _:
        code = main(argv)
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0], err
    assert not out.exists()


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_check_command_reports_every_component_ok(capsys) -> None:
    assert main(["check"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert all(line.startswith("OK") for line in lines), lines
    for component in (
        "dependencies",
        "devices",
        "data",
        "model modes",
        "losses",
        "metrics",
        "monitor",
        "checkpoint round trip",
        "wandb offline",
    ):
        assert any(line[4:].strip().startswith(component) for line in lines), component


def test_bf16_autocast_on_the_cpu_runs_in_bf16_and_ends_within_001_auc_of_fp32(
    tmp_path: Path, dataset, finished: Path
) -> None:
    """The mixed-precision code path, on the CPU (its speed waits for a GPU: docs/benchmarks.md)."""
    seen: set[torch.dtype] = set()
    config = small_config(tmp_path / "bf16", precision="bf16")
    trainer = make_trainer(
        config, dataset, batch_hooks=[lambda step, states, batch: seen.add(states.logits.dtype)]
    )
    bf16 = trainer.run()
    assert seen == {torch.bfloat16}  # the forward pass ran under autocast
    fp32 = json.loads((finished / "results.json").read_text())  # the same settings in fp32 (auto on CPU)
    assert abs(bf16["best"]["auc"] - fp32["best"]["auc"]) < 0.01


def test_fp16_is_refused_on_the_cpu(tmp_path: Path, dataset) -> None:
    from gainakt.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        make_trainer(small_config(tmp_path / "fp16", precision="fp16"), dataset)
