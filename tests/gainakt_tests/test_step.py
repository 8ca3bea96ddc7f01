"""The training step as a GPU runs it: finite under bf16 in every mode, no value read back from the
device between monitor samples, the clipped recursion as a scan equal to its loop, and a compiled
step equal to the eager one."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from step_cost import OpCounter

from gainakt.data import load_dataset
from gainakt.model import GainAKT2Exp, clipped_cumsum
from gainakt.schema import LOSS_NAMES
from gainakt.sequences import Dataset
from gainakt.train import Trainer, autocast_dtype, make_config
from spaces.aux_weights import WEIGHT_RANGE

MODES = list(
    itertools.product(
        ("relu", "softplus", "linear"),  # gains
        ("cumulative", "direct", "deep"),  # mastery
        ("legacy", "intrinsic"),  # attention
        ("free", "mastery", "mixed"),  # head
    )
)
LARGEST_WEIGHTS = [f"weights.{name}={WEIGHT_RANGE[1]}" for name in LOSS_NAMES]
TINY = ["model.d_model=16", "model.heads=2", "model.d_ff=32", "batch_size=16"]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_dataset("synthetic:students=120,concepts=9,seed=3")


def trainer(dataset: Dataset, tmp_path: Path, *assignments: str) -> Trainer:
    config = make_config(assignments=[*TINY, "device=cpu", f"out={tmp_path / 'run'}", *assignments])
    return Trainer(config, dataset, baseline_mastery_corr=math.nan)


def modes(gains: str, mastery: str, attention: str, head: str) -> list[str]:
    """The `--set` assignments of one combination of the searched modes."""
    chosen = {"gains": gains, "mastery": mastery, "attention": attention, "head": head}
    return [f"model.{name}={value}" for name, value in chosen.items()]


def loop_reference(start: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    mastery, out = start[:, 0], []
    for t in range(steps.shape[1]):
        mastery = torch.clamp(mastery + steps[:, t], 0.0, 1.0)
        out.append(mastery)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 64, 199])
def test_the_clipped_scan_equals_the_loop_in_value_and_gradient(length: int) -> None:
    generator = torch.Generator().manual_seed(length)
    start = torch.rand(4, 1, 5, generator=generator, dtype=torch.float64)
    steps = 0.3 * torch.randn(4, length, 5, generator=generator, dtype=torch.float64)  # clips bind often
    weights = torch.randn(4, length, 5, generator=generator, dtype=torch.float64)
    results = []
    for recursion in (loop_reference, clipped_cumsum):
        a, b = start.clone().requires_grad_(), steps.clone().requires_grad_()
        mastery = recursion(a, b)
        (mastery * weights).sum().backward()
        results.append((mastery.detach(), a.grad, b.grad))
    (loop, loop_start, loop_steps), (scan, scan_start, scan_steps) = results
    assert ((loop == 0) | (loop == 1)).any() and ((loop > 0) & (loop < 1)).any()  # both regimes met
    torch.testing.assert_close(scan, loop, rtol=0, atol=1e-12)
    torch.testing.assert_close(scan_start, loop_start, rtol=0, atol=1e-12)
    torch.testing.assert_close(scan_steps, loop_steps, rtol=0, atol=1e-12)


@pytest.mark.parametrize("head", ["free", "mastery", "mixed"])
@pytest.mark.parametrize("attention", ["legacy", "intrinsic"])
def test_a_cumulative_mastery_of_linear_gains_is_the_loop_of_its_gains(
    dataset: Dataset, attention: str, head: str, tmp_path: Path
) -> None:
    run = trainer(
        dataset, tmp_path, "model.gains=linear", f"model.attention={attention}", f"model.head={head}"
    )
    model = run.model
    assert isinstance(model, GainAKT2Exp)
    states = model.forward_with_states(next(run.train_plan.batches(0)))
    start = torch.sigmoid(model.initial_mastery(states.context[:, :1]))
    expected = loop_reference(start, model.cfg.mastery_step * states.gains)
    torch.testing.assert_close(states.mastery, expected, rtol=0, atol=1e-5)
    assert (states.gains < 0).any() and (expected == 0).any()  # negative gains, and a clip that binds


@pytest.mark.parametrize(("gains", "mastery", "attention", "head"), MODES)
def test_every_mode_trains_under_bf16_with_finite_losses_at_the_largest_weights(
    dataset: Dataset, gains: str, mastery: str, attention: str, head: str, tmp_path: Path
) -> None:
    run = trainer(
        dataset,
        tmp_path,
        "precision=bf16",
        *modes(gains, mastery, attention, head),
        *LARGEST_WEIGHTS,
    )
    assert run.amp_dtype == torch.bfloat16
    for step, batch in zip(range(4), run.train_plan.batches(0), strict=False):
        components = run.train_step(batch)
        assert torch.isfinite(components).all(), (step, components)
    run.check_finite()


SYNC_SETTINGS = {
    "default": [],
    "linear gains, mastery head": ["model.gains=linear", "model.head=mastery"],
    "intrinsic, deep, mixed": ["model.attention=intrinsic", "model.mastery=deep", "model.head=mixed"],
    "dkt": ["model.kind=dkt"],
}


@pytest.mark.parametrize("setting", list(SYNC_SETTINGS))
def test_a_training_step_reads_nothing_back_from_the_device_between_monitor_samples(
    dataset: Dataset, setting: str, tmp_path: Path
) -> None:
    interval = 4
    run = trainer(
        dataset, tmp_path, f"monitor_interval={interval}", *LARGEST_WEIGHTS, *SYNC_SETTINGS[setting]
    )
    reads = []
    for batch in itertools.islice(run.train_plan.batches(0), 2 * interval):
        counter = OpCounter()
        with counter:
            run.train_step(batch)
        reads.append(counter.host_reads)
    sampled = [reads[step - 1] for step in range(interval, len(reads) + 1, interval)]
    between = [n for step, n in enumerate(reads, start=1) if step % interval]
    assert between == [0] * len(between)
    assert all(n > 0 for n in sampled)  # the counter sees the reads the monitor makes, by design


def test_a_compiled_step_trains_as_the_eager_one(dataset: Dataset, tmp_path: Path) -> None:
    # linear gains (the scan) read by a mastery head (the fp32 readout); compiling takes about 25 s
    setting = ["model.gains=linear", "model.head=mastery", "model.dropout=0", *LARGEST_WEIGHTS]
    runs = [trainer(dataset, tmp_path / mode, *setting, mode) for mode in ("compile=false", "compile=true")]
    eager, compiled = runs
    assert compiled.train_plan.few_lengths and not eager.train_plan.few_lengths
    batch = next(compiled.train_plan.batches(0))  # one shape: one compilation
    for step in range(5):
        expected, got = (run.train_step(batch) for run in runs)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=f"step {step + 1}")
    for (name, a), b in zip(
        eager.model.state_dict().items(), compiled.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def test_auto_precision_is_fp32_on_every_device_and_bf16_only_when_asked() -> None:
    for device in (torch.device("cpu"), torch.device("cuda")):  # no GPU needed to decide
        assert autocast_dtype("auto", device) is None
        assert autocast_dtype("fp32", device) is None
        assert autocast_dtype("bf16", device) == torch.bfloat16
    assert autocast_dtype("fp16", torch.device("cuda")) == torch.float16


@pytest.mark.parametrize(
    ("gains", "mastery", "attention", "head"),
    [
        ("relu", "cumulative", "legacy", "free"),
        ("softplus", "direct", "intrinsic", "mastery"),
        ("linear", "deep", "legacy", "mixed"),
        ("linear", "cumulative", "intrinsic", "mastery"),
        ("relu", "deep", "intrinsic", "mixed"),
    ],
)
def test_compile_traces_the_forward_pass_and_every_loss_as_one_graph(
    dataset: Dataset, gains: str, mastery: str, attention: str, head: str, tmp_path: Path
) -> None:
    run = trainer(dataset, tmp_path, *modes(gains, mastery, attention, head), *LARGEST_WEIGHTS)
    explained = torch._dynamo.explain(run.forward_loss)(next(run.train_plan.batches(0)), torch.tensor(1.0))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


@pytest.mark.parametrize("clip_norm", [1e-3, 1e3])  # the clip binds; it does not
def test_the_trainers_gradient_clipping_is_torchs(dataset: Dataset, clip_norm: float, tmp_path: Path) -> None:
    run = trainer(dataset, tmp_path, f"clip_norm={clip_norm}")
    total, _, _ = run.forward_loss(next(run.train_plan.batches(0)), torch.tensor(1.0))
    total.backward()
    parameters = [p for p in run.model.parameters() if p.grad is not None]
    copies = [p.detach().clone().requires_grad_() for p in parameters]
    for copy, p in zip(copies, parameters, strict=True):
        copy.grad = p.grad.clone()  # type: ignore[union-attr]
    torch.nn.utils.clip_grad_norm_(copies, clip_norm)
    run._clip_gradients()
    for p, copy in zip(parameters, copies, strict=True):
        torch.testing.assert_close(p.grad, copy.grad, rtol=1e-6, atol=0)
    norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters])))  # type: ignore[union-attr]
    assert norm == pytest.approx(clip_norm, rel=1e-4) if clip_norm < 1 else norm < clip_norm
