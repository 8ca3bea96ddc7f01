"""`gainakt-search check`: a quick test that the installation works, one result per component."""

from __future__ import annotations

import importlib.metadata
import itertools
import math
import tempfile
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

DEPENDENCIES = ("torch", "numpy", "pandas", "pyarrow", "ray", "optuna", "wandb")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def run_checks() -> list[CheckResult]:
    context: dict = {}
    checks: list[tuple[str, Callable[[dict], str]]] = [
        ("dependencies", _dependencies),
        ("devices", _devices),
        ("data", _data),
        ("model modes", _model_modes),
        ("losses", _losses),
        ("metrics", _metrics),
        ("monitor", _monitor),
        ("checkpoint round trip", _checkpoint),
        ("wandb offline", _wandb_offline),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(CheckResult(name, True, check(context)))
        except Exception as err:  # a check reports every failure as FAIL, never a crash
            where = traceback.extract_tb(err.__traceback__)[-1]
            detail = f"{type(err).__name__}: {err} ({Path(where.filename).name}:{where.lineno})"
            results.append(CheckResult(name, False, detail))
    return results


def _dependencies(_: dict) -> str:
    versions = []
    for name in DEPENDENCIES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise RuntimeError(f"{name} is not installed") from None
    return ", ".join(versions)


def _devices(_: dict) -> str:
    if not torch.cuda.is_available():
        return f"CPU only ({torch.get_num_threads()} torch threads)"
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(f"cuda:{index} {props.name} {props.total_memory / 2**30:.0f} GiB")
    return ", ".join(gpus)


def _data(context: dict) -> str:
    from .batching import BatchPlan
    from .data import load_dataset

    dataset = load_dataset("synthetic:students=60,concepts=6,seed=0")
    train, valid = dataset.split(0)
    context["batch"] = next(BatchPlan(train, 8).batches(0))
    context["valid_plan"] = BatchPlan(valid, 16, shuffle=False)
    windows = f"{len(train)} training and {len(valid)} validation windows"
    return f"synthetic: {windows}, fingerprint {dataset.fingerprint}"


def _model_modes(context: dict) -> str:
    from .config import build
    from .losses import LossWeights, auxiliary_losses, compose, prediction_loss
    from .model import build_model
    from .tracer import Attention, GainActivation, MasteryMode, ModelOptions

    batch = context["batch"]
    weights = LossWeights(**{name: 0.1 for name, _ in LossWeights().items()})
    tiny = {"d_model": 16, "heads": 2, "blocks": 1, "d_ff": 32}
    modes = [
        {**tiny, "attention": attention, "gains": gains, "mastery": mastery}
        for attention, gains, mastery in itertools.product(
            typing.get_args(Attention), typing.get_args(GainActivation), typing.get_args(MasteryMode)
        )
    ] + [{**tiny, "kind": "dkt"}]
    for values in modes:
        options = build(ModelOptions, values)
        name = "dkt" if options.kind == "dkt" else f"{options.attention}/{options.gains}/{options.mastery}"
        model = build_model(options, num_concepts=6)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        states = model.forward_with_states(batch)
        b, t = batch.mask.shape
        if states.gains.shape != (b, t, 6) or states.mastery.shape != (b, t, 6):
            raise RuntimeError(f"{name}: gains {tuple(states.gains.shape)}")
        total = compose(prediction_loss(states, batch), auxiliary_losses(states, batch, 0.1), weights).total
        total.backward()
        optimizer.step()
        if not math.isfinite(float(total.detach())):
            raise RuntimeError(f"{name}: loss {float(total)}")
        if options.kind != "dkt":  # the later checks look at a GainAKT2Exp
            context["model"], context["states"] = model, states
    return f"{len(modes)} models built and trained one step (every GainAKT2Exp mode, and DKT)"


def _losses(context: dict) -> str:
    from .losses import LossWeights, auxiliary_losses, compose, prediction_loss

    states, batch = context["states"], context["batch"]
    aux = auxiliary_losses(states, batch, 0.1)
    negative = [name for name, value in aux.items() if not float(value.detach()) >= 0]
    if negative:
        raise RuntimeError(f"negative auxiliary losses: {negative}")
    shares = compose(prediction_loss(states, batch), aux, LossWeights(sparsity=1.0, consistency=1.0)).shares()
    if abs(sum(shares.values()) - 1) > 1e-6 or min(shares.values()) < 0:
        raise RuntimeError(f"shares {shares}")
    return f"{len(aux)} auxiliary losses >= 0, shares sum to 1"


def _metrics(context: dict) -> str:
    from .evaluate import evaluate

    result = evaluate(context["model"], context["valid_plan"])
    if not 0 <= result.auc <= 1:
        raise RuntimeError(f"auc {result.auc}")
    return f"auc {result.auc:.3f}, mastery_corr {result.mastery_corr:.3f} on {result.positions} positions"


def _monitor(context: dict) -> str:
    from .monitor import Monitor

    seen = []
    monitor = Monitor(interval=1, sinks=[lambda step, values: seen.append(values)])
    monitor.after_batch(1, context["states"], context["batch"])
    if len(seen) != 1 or set(monitor.epoch_means()) != set(seen[0]):
        raise RuntimeError("monitor sent nothing")
    return "samples " + ", ".join(seen[0])


def _checkpoint(context: dict) -> str:
    from .model import GainAKT2Exp

    model, batch = context["model"].eval(), context["batch"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        torch.save(model.state_dict(), path)
        clone = GainAKT2Exp(model.cfg, model.num_concepts).eval()
        clone.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        same = torch.equal(model.forward_with_states(batch).logits, clone.forward_with_states(batch).logits)
    if not same:
        raise RuntimeError("reloaded weights predict differently")
    return "saved and reloaded weights predict identically"


def _wandb_offline(_: dict) -> str:
    from .wandb_sink import WandbSink

    with tempfile.TemporaryDirectory() as folder:
        sink = WandbSink("offline", "gainakt-check", {"check": True}, folder, settings={"silent": True})
        if not sink.active:
            raise RuntimeError("wandb.init in offline mode failed (see the warning above)")
        sink.log({"check": 1.0}, step=1)
        sink.finish()
        runs = list(Path(folder).glob("wandb/offline-run-*"))
    if not runs:
        raise RuntimeError("no offline run folder written")
    return "offline run written"
