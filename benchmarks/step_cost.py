"""What one training step costs: aten operations, kernels, host reads and time, per model setting.

For the default and `paper` settings (no auxiliary loss, as `train` runs them), then with every
searched auxiliary loss on (weight 0.1) the default, every mastery and gain mode, the intrinsic
attention, the mixed head and DKT, on one dataset (the simulator unless `--data`), one batch of it
(the first of epoch 1):

- aten ops/step: the aten operations one optimisation step calls (forward, losses, backward,
  clipping, optimizer), counted by the torch profiler, not those called inside another;
- kernels/step: of what runs, the operations that compute (leaves of that tree that are not a view,
  an allocation or a no-op conversion) plus the kernels compiled code runs: on a GPU, the launches;
- host reads/step: operations that need a device value on the host (`.item()`, `bool(tensor)`, a
  boolean index's `nonzero`): on a GPU each one waits for the device to finish; counted in eager
  mode by a TorchDispatchMode, under which a compiled region runs eagerly;
- ms/step: the wall time of a step on that batch; train and eval s/epoch: one epoch's training and
  its validation (the second epoch when compiled, the first compiles each shape).

Steps where the monitor samples are left out (it reads its figures back once per interval, by
design). `--compile` adds each setting with `compile=true`.

    .venv/bin/python benchmarks/step_cost.py                            # the simulator, the CPU
    .venv/bin/python benchmarks/step_cost.py --data ../shared/data/assist2015 --compile
    .venv/bin/python benchmarks/step_cost.py --device cuda --only default --only paper --compile
"""

from __future__ import annotations

import argparse
import math
import platform
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gainakt.schema import SEARCHED_LOSSES

# Operations that need a device value on the host: a scalar read, or an output whose size depends on
# the values (a boolean index's nonzero, masked_select, unique).
HOST_READS = frozenset(
    {
        "_local_scalar_dense",
        "item",
        "is_nonzero",
        "equal",
        "nonzero",
        "masked_select",
        "_unique2",
        "unique_dim",
        "boolean index",
    }
)


def _is_mask(index: Any) -> bool:
    return isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8)


# every searched auxiliary loss on (weight 0.1), so that each one's operations are counted
ALL_LOSSES = [f"weights.{name}=0.1" for name in SEARCHED_LOSSES]
SETTINGS: dict[str, list[str]] = {
    "default": [],  # as `gainakt-search train` runs it: no auxiliary loss
    "paper": ["preset=paper"],
    "default, every loss": ALL_LOSSES,
    "gains=softplus": ["model.gains=softplus", *ALL_LOSSES],
    "gains=linear": ["model.gains=linear", *ALL_LOSSES],
    "mastery=direct": ["model.mastery=direct", *ALL_LOSSES],
    "mastery=deep": ["model.mastery=deep", *ALL_LOSSES],
    "gains=linear, head=mastery": ["model.gains=linear", "model.head=mastery", *ALL_LOSSES],
    "attention=intrinsic": ["model.attention=intrinsic", *ALL_LOSSES],
    "head=mixed, mastery=deep": [
        "model.head=mixed",
        "model.mastery=deep",
        "weights.residual=0.1",
        *ALL_LOSSES,
    ],
    "dkt": ["model.kind=dkt", *ALL_LOSSES],
}


class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched while active (backward's included), by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name in ("index", "index_put", "index_put_") and any(_is_mask(i) for i in args[1] or ()):
            name = "boolean index"  # its kernel finds the selected entries with a nonzero
        self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def host_reads(self) -> int:
        return sum(n for name, n in self.ops.items() if name in HOST_READS)


# Operations that only describe memory (a view, an allocation, a no-op conversion): no kernel runs.
NO_KERNEL = frozenset(
    "aten::" + name
    for name in (
        "view", "_unsafe_view", "_reshape_alias", "reshape", "as_strided", "t", "transpose", "permute",
        "expand", "slice", "select", "unsqueeze", "squeeze", "alias", "detach", "lift_fresh", "empty",
        "empty_strided", "empty_like", "resize_", "to", "unbind", "split", "chunk", "numpy_T", "contiguous",
        "is_same_size", "result_type", "_local_scalar_dense", "item", "set_", "clone_",
    )
)  # fmt: skip


def profile_counts(events: Any) -> tuple[int, int]:
    """(the aten operations called from Python or compiled code, not from inside another aten
    operation; the kernels: leaf aten operations that compute, plus the kernels compiled code runs)."""
    operations = kernels = 0
    for event in events:
        parent = event.cpu_parent
        if event.name.startswith("aten::"):
            operations += parent is None or not parent.name.startswith("aten::")
            leaf = not any(child.name.startswith("aten::") for child in event.cpu_children)
            kernels += leaf and event.name not in NO_KERNEL
        elif "cpp_fused" in event.name or "triton_" in event.name:
            kernels += 1
    return operations, kernels


@dataclass(frozen=True)
class StepCost:
    ops: int  # aten operations per step
    kernels: int  # per step
    host_reads: int  # per step
    step_ms: float
    train_s: float  # one epoch's training
    eval_s: float  # one epoch's validation
    reads_by_op: dict[str, int]


def make_trainer(data: Any, assignments: list[str], device: str, compiled: bool) -> Any:
    from gainakt.train import Trainer, make_config

    preset = next((a.split("=", 1)[1] for a in assignments if a.startswith("preset=")), "cpu-small")
    rest = [a for a in assignments if not a.startswith("preset=")]
    extra = ["compile=true"] if compiled else []
    config = make_config(
        preset,
        assignments=[
            *rest,
            *extra,
            f"device={device}",
            "monitor_interval=1000000",
            "out=unused",
        ],
    )
    return Trainer(config, data, baseline_mastery_corr=math.nan)


def measure(data: Any, assignments: list[str], device: str, steps: int, compiled: bool = False) -> StepCost:
    """Counts and times of steps on one batch (one shape), then one epoch's training and validation
    (the second epoch when compiled: the first compiles each shape)."""
    import torch._inductor.config

    from gainakt.evaluate import evaluate
    from gainakt.train import set_matmul_precision

    torch._inductor.config.cpp.enable_kernel_profile = True  # each compiled CPU kernel an event
    trainer = make_trainer(data, assignments, device, compiled)
    set_matmul_precision(trainer.config.precision, trainer.device)  # as a run sets it
    batch = next(trainer.train_plan.batches(0))
    for _ in range(3):  # warm up: the optimizer's state, a compiled step's graphs
        trainer.train_step(batch)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        trainer.train_step(batch)
    operations, kernels = profile_counts(profile.events())
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else lambda: None
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    sync()
    step_ms = (time.perf_counter() - started) / steps * 1000
    reads = OpCounter()  # the dispatcher's view, last: a compiled region runs eagerly under it
    with reads:
        trainer.train_step(batch)
    for _ in range(2 if compiled else 1):
        started = time.perf_counter()
        trainer.train_epoch()  # its training, then its validation
        epoch_s = time.perf_counter() - started
    started = time.perf_counter()
    evaluate(trainer.model, trainer.valid_plan, trainer.device)
    eval_s = time.perf_counter() - started
    return StepCost(
        ops=operations,
        kernels=kernels,
        host_reads=reads.host_reads,
        step_ms=step_ms,
        train_s=epoch_s - eval_s,
        eval_s=eval_s,
        reads_by_op={name: n for name, n in reads.ops.items() if name in HOST_READS},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic", help="dataset (default synthetic)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per setting (default 10)")
    parser.add_argument("--only", action="append", choices=list(SETTINGS), help="these settings only")
    parser.add_argument("--compile", action="store_true", help="also each setting with compile=true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from gainakt.data import load_dataset
    from gainakt.errors import DataError

    try:
        data = load_dataset(args.data)
    except DataError as error:
        print(f"step_cost: {error}", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("step_cost: torch finds no CUDA GPU on this machine", file=sys.stderr)
        return 2
    where = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "CPU"
    print(f"# {shlex.join(['benchmarks/step_cost.py', *(argv if argv is not None else sys.argv[1:])])}")
    print(f"# {where}, torch {torch.__version__}, {torch.get_num_threads()} threads, data {args.data}")
    columns = ("aten ops/step", "kernels/step", "host reads/step", "ms/step", "train s/epoch", "eval s/epoch")
    print("| setting | " + " | ".join(columns) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.only or list(SETTINGS):
        for compiled in (False, True) if args.compile else (False,):
            cost = measure(data, SETTINGS[name], args.device, args.steps, compiled)
            label = f"{name}, compiled" if compiled else name
            reads = f"{cost.host_reads}"
            if cost.reads_by_op:
                reads += " (" + ", ".join(f"{k} {v}" for k, v in sorted(cost.reads_by_op.items())) + ")"
            print(
                f"| {label} | {cost.ops:,} | {cost.kernels:,} | {reads} | {cost.step_ms:.1f} "
                f"| {cost.train_s:.1f} | {cost.eval_s:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
