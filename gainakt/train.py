"""One training run of GainAKT2Exp: configuration, presets, the loop, checkpoints and resume.

The run folder holds `metrics_epoch.csv` (one row per epoch), `best.pt` (weights of
the best validation AUC), `last.pt` (everything needed to resume exactly) and
`results.json`. The outside world hears of each epoch through `on_epoch(row, run_dir)`, and of
each optimisation step through the batch hooks, `hook(step, states, batch)` (the monitor is one).
Constructing a `Trainer` has no global side effect; `run()` seeds torch, sets its thread count
and opens the wandb run, and closes that run however training ends.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from . import __version__, strict_json
from .baselines import fold_baseline
from .batching import Batch, BatchPlan, Padding
from .config import MAX_SEED, build, merge, read_toml, with_assignments
from .data import load_dataset
from .errors import ConfigError
from .evaluate import evaluate
from .files import atomic_path
from .losses import auxiliary_losses, compose, prediction_loss, warmup_factor
from .model import build_model
from .monitor import Monitor, log_sink
from .presets import DEFAULT_PRESET, PRESETS
from .schema import (
    LOSS_COMPONENTS,
    SELECTION_METRIC,
    EvalMetrics,
    LossWeights,
    epoch_name,
    improves,
    loss_shares,
)
from .sequences import Dataset
from .tracer import ModelOptions, States
from .wandb_sink import WandbMode, WandbSink

Scheduler = Literal["step", "plateau", "none"]
# The forward pass's number format. auto: fp32, with TF32 matrix products on CUDA; bf16 autocast was
# slower on an H200 at every size this project trains (docs/training.md, "Precision"), and these
# steps are bound by launches, not arithmetic. fp16 is CUDA only, with a gradient scaler. fp32 is
# exact fp32 matrix products. Validation always runs in fp32.
Precision = Literal["auto", "bf16", "fp16", "fp32"]
log = logging.getLogger("gainakt.train")
MAX_BATCH_SIZE = 1 << 16  # windows per step; far beyond any GPU's memory at 200 positions


@dataclass(frozen=True)
class TrainConfig:
    """Everything one run needs; validated at construction."""

    data: str = "synthetic"
    fold: int = 0
    num_concepts: int | None = None
    epochs: int = 12
    batch_size: int = 64
    padding: Padding = "bucketed"
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    scheduler: Scheduler = "plateau"
    step_size: int = 5  # step scheduler: epochs between decays
    gamma: float = 0.5  # both schedulers: learning-rate factor per decay
    patience: int = 3  # early stopping after this many epochs without a better validation AUC; 0 never stops
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    precision: Precision = "auto"
    # torch.compile the forward pass and the losses (CUDA graphs on a GPU); bucketed batches then pad
    # to a few fixed lengths, so that each shape compiles once
    compile: bool = False
    model: ModelOptions = field(default_factory=ModelOptions)
    weights: LossWeights = field(default_factory=LossWeights)
    warmup_epochs: int = 0  # auxiliary weights grow linearly to full over this many epochs
    monitor_interval: int = 25
    wandb: WandbMode = "off"
    wandb_project: str = "gainakt"
    wandb_group: str | None = None
    wandb_dir: str | None = None  # where wandb keeps its files; default the run folder
    wandb_name: str | None = None  # the run's name (a sweep names it by its trial id)
    wandb_tags: tuple[str, ...] = ()
    out: str | None = None

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "monitor_interval", "step_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("fold", "patience", "seed", "threads", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"'{name}' must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "clip_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"'{name}' must be > 0, got {getattr(self, name)}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"'weight_decay' must be >= 0, got {self.weight_decay}")
        if self.seed > MAX_SEED:
            raise ConfigError(
                f"'seed' must be at most {MAX_SEED} (numpy and torch seeds are 32-bit), got {self.seed}"
            )
        if self.batch_size > MAX_BATCH_SIZE:
            raise ConfigError(f"'batch_size' must be at most {MAX_BATCH_SIZE:,}, got {self.batch_size}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"'gamma' must be in (0, 1], got {self.gamma}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"'device' must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_config(
    preset: str = DEFAULT_PRESET,
    file: str | Path | None = None,
    assignments: Sequence[str] = (),
    **values: Any,
) -> TrainConfig:
    """A preset, then a TOML file, then `key=value` assignments, then keyword values; later wins."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    merged = merge(PRESETS[preset], read_toml(file) if file else {})
    merged = merge(with_assignments(merged, assignments), values)
    return build(TrainConfig, merged)


@dataclass(frozen=True)
class EpochRow:
    """The figures of one epoch, flattened by `flat()` into `metrics_epoch.csv` columns."""

    epoch: int  # 1-based
    train_loss: float
    components: dict[str, float]  # bce and each weighted auxiliary loss (epoch means)
    shares: dict[str, float]  # each component over the total; >= 0, sums to 1
    valid: EvalMetrics
    monitor: dict[str, float]  # means of the monitor's samples
    lr: float
    seconds: float
    interactions_per_s: float

    def flat(self) -> dict[str, float]:
        row: dict[str, float] = {"epoch": self.epoch, "train_loss": self.train_loss}
        row.update({f"loss_{k}": v for k, v in self.components.items()})
        row.update({f"share_{k}": v for k, v in self.shares.items()})
        row.update({epoch_name(name): value for name, value in self.valid.as_dict().items()})
        row.update({f"monitor_{k}": v for k, v in self.monitor.items()})
        row.update(lr=self.lr, seconds=self.seconds, interactions_per_s=self.interactions_per_s)
        return row


EpochCallback = Callable[[EpochRow, Path], None]
BatchHook = Callable[[int, States, Batch], object]  # (steps done, the step's forward states, its batch)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch finds no CUDA GPU")
    return torch.device(name)


ON_DEVICE_SHARE = 0.25  # of the GPU's free memory the encoded splits may take (trials may share it)


def _fits_on(device: torch.device, *plans: BatchPlan) -> bool:
    """Whether the plans' encoded splits fit in a small share of the device's free memory."""
    free, _ = torch.cuda.mem_get_info(device)
    return sum(plan.encoded_bytes for plan in plans) < ON_DEVICE_SHARE * free


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The dtype the forward pass runs in under autocast, or None for plain fp32."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device (on the CPU use bf16 or fp32)")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def set_matmul_precision(precision: Precision, device: torch.device) -> None:
    """TF32 matrix products on CUDA with precision auto (a process-wide torch setting)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "auto"


def _save_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class Trainer:
    """Trains one run; `run()` goes from the first (or resumed) epoch to the end or early stop.

    `batch_hooks` is called in order after each optimisation step; it starts with the monitor's
    (`monitor.after_batch`), then those given here. Wrap or add to it before training.
    """

    def __init__(
        self,
        config: TrainConfig,
        dataset: Dataset,
        baseline_mastery_corr: float,
        on_epoch: EpochCallback | None = None,
        batch_hooks: Sequence[BatchHook] = (),
        run_info: Mapping[str, Any] | None = None,
    ) -> None:
        """`baseline_mastery_corr`: the best lookup's `mastery_corr` on the validation windows
        (`gainakt.baselines.fold_baseline`), which `mastery_lift` is measured against; a sweep fits
        the lookups once for all its trials. `run_info`: what the wandb run's config holds beside
        the settings (a sweep's trial id, number and where the trial's folder is)."""
        if config.out is None:
            raise ConfigError("'out' (the run folder) is required")
        self.config = config
        self.run_info = dict(run_info or {})
        self.out = Path(config.out)
        self.on_epoch = on_epoch
        self.dataset = dataset
        train_windows, valid_windows = self.dataset.split(config.fold)
        self.device = resolve_device(config.device)
        self.amp_dtype = autocast_dtype(config.precision, self.device)
        # fp16's narrow range needs its gradients scaled; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        with torch.random.fork_rng():  # the seed's initial weights, leaving the caller's RNG as it was
            torch.manual_seed(config.seed)
            model = build_model(config.model, self.dataset.num_concepts)
            # Training's random stream continues from here, so dropout never reuses the draws of the weights.
            self._train_rng = torch.get_rng_state()
        self.model = model.to(self.device)
        # fused: one kernel for every parameter's update instead of a dozen per parameter
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        self.scheduler = self._make_scheduler()
        self.train_plan = BatchPlan(
            train_windows, config.batch_size, config.padding, shuffle=True, seed=config.seed
        )
        self.valid_plan = BatchPlan(valid_windows, max(config.batch_size, 128), "bucketed", shuffle=False)
        if config.compile:
            self.train_plan = replace(self.train_plan, few_lengths=True)
        if self.device.type == "cuda" and _fits_on(self.device, self.train_plan, self.valid_plan):
            # Batches built on the GPU from the split held there: no host-to-device copy per batch.
            self.train_plan = self.train_plan.on_device(self.device)
            self.valid_plan = self.valid_plan.on_device(self.device)
        # Every real position weighs the same: a batch's summed loss over a fixed expected count.
        self.positions_per_batch = config.batch_size * float((train_windows.lengths - 1).mean())
        self.baseline_mastery_corr = baseline_mastery_corr
        self.wandb = WandbSink()  # inactive until run() opens the run's
        # The monitor logs through `self.wandb` as it is at each call: the sink that run() opened.
        self.monitor = Monitor(
            config.monitor_interval, [log_sink, lambda step, values: self.wandb(step, values)]
        )
        self.batch_hooks: list[BatchHook] = [self.monitor.after_batch, *batch_hooks]
        self.epoch = 0  # epochs done
        self.step = 0  # batches done
        self.best_auc = -math.inf
        self.best_epoch = 0
        self.stale_epochs = 0
        self.stopped_early = False
        self._weighed_losses = [name for name, weight in config.weights.items() if weight]  # computed alone
        self._forward_loss = self.forward_loss
        if config.compile:  # CUDA graphs replay a step's kernels with one launch
            # Compiled code is kept per function, whatever the trainer: in a process that trains runs
            # one after another (a reused Ray worker) the earlier runs' graphs would count towards
            # torch's limit of recompilations, past which it runs the step eagerly, silently.
            torch._dynamo.reset()
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._forward_loss = torch.compile(self.forward_loss, mode=mode, dynamic=False)
        self._factors: dict[float, torch.Tensor] = {}  # the warm-up factors, as tensors on the device
        self._steps_on_device = torch.zeros((), dtype=torch.long, device=self.device)
        self._first_nonfinite = torch.zeros(2, device=self.device)  # (step, its loss); step 0: none yet

    def _make_scheduler(self) -> Any:
        c = self.config
        if c.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=c.step_size, gamma=c.gamma)
        if c.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=c.gamma, patience=1
            )
        return None

    # ------------------------------------------------------------------ the loop

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train to the end; with `resume`, continue from `last.pt` in the run folder if it has one.

        Seeds torch (or restores the RNG of `last.pt`), sets its thread count and its matrix
        precision on CUDA (`set_matmul_precision`) and opens the wandb run, which it closes whether
        training ends, stops early or raises.
        """
        c = self.config
        last = self.out / "last.pt"
        if last.is_file() and not resume:
            raise ConfigError(
                f"{self.out}: already holds a run (last.pt); resume it or choose another folder"
            )
        if c.threads:
            torch.set_num_threads(c.threads)
        set_matmul_precision(c.precision, self.device)
        torch.manual_seed(c.seed)  # for the CUDA generators; the CPU one continues after the initial weights
        torch.set_rng_state(self._train_rng)
        if last.is_file():
            self._load_last(last)
        self.out.mkdir(parents=True, exist_ok=True)
        self.wandb = WandbSink(
            c.wandb,
            c.wandb_project,
            {**c.to_dict(), **self.run_info},
            c.wandb_dir or str(self.out),
            group=c.wandb_group,
            name=c.wandb_name,
            tags=list(c.wandb_tags) or None,
        )
        try:
            started = time.time()
            while self.epoch < c.epochs and not self.stopped_early:
                self._record(self.train_epoch())
            if self.stopped_early:
                log.info(
                    "early stop after epoch %d: no better validation AUC for %d epochs",
                    self.epoch,
                    self.stale_epochs,
                )
            results = self._results(time.time() - started)
            text = strict_json.dumps(results, indent=2)
            (self.out / "results.json").write_text(text + "\n")
        finally:
            self.wandb.finish()
        return results

    def train_epoch(self) -> EpochRow:
        """One epoch of training, then validation; advances the scheduler and `epoch` and returns
        the epoch's row, without writing the run folder (that is `run()`'s)."""
        c = self.config
        self.model.train()
        factor = warmup_factor(self.epoch, c.warmup_epochs) if c.warmup_epochs else 1.0
        sums = torch.zeros(len(LOSS_COMPONENTS), device=self.device)  # summed on the device, read once
        batches = 0
        started = time.perf_counter()
        batches_of_epoch = self.train_plan.batches(self.epoch)
        for batch in _progress(batches_of_epoch, len(self.train_plan), f"epoch {self.epoch + 1}"):
            sums += self.train_step(batch, factor)
            batches += 1
        self.check_finite()
        means = (sums / batches).tolist()
        seconds = time.perf_counter() - started
        valid = self.evaluate()
        components = dict(zip(LOSS_COMPONENTS, means, strict=True))
        lr = self.optimizer.param_groups[0]["lr"]
        self._step_scheduler(valid.auc)
        self.epoch += 1
        return EpochRow(
            epoch=self.epoch,
            train_loss=sum(means),
            components=components,
            shares=loss_shares(components),
            valid=valid,
            monitor=self.monitor.epoch_means(),
            lr=lr,
            seconds=seconds,
            interactions_per_s=self.train_plan.real_positions / seconds if seconds > 0 else float("nan"),
        )

    def evaluate(self) -> EvalMetrics:
        """Every metric of the model as it is now, on the validation windows."""
        return evaluate(self.model, self.valid_plan, self.device, self.baseline_mastery_corr)

    def train_step(self, batch: Batch, factor: float = 1.0) -> torch.Tensor:
        """One optimisation step on one batch, then the batch hooks; returns the weighted loss
        components [len(LOSS_COMPONENTS)], in that order, on the device.

        Nothing is read back from the device here (on a GPU that would wait for the step to finish):
        a loss that is not finite is noted on the device and raised by `check_finite`, which runs
        every `monitor_interval` steps and at the end of each epoch.
        """
        c = self.config
        batch = batch.to(self.device)
        if factor not in self._factors:  # copied to the device once, not at every step
            self._factors[factor] = torch.tensor(factor, device=self.device)
        total, components, states = self._forward_loss(batch, self._factors[factor])
        self._note_nonfinite(total.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # fp16: the scaler reads its overflow flag back at every step
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)  # clipping needs the true gradients
            self._clip_gradients()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            total.backward()
            self._clip_gradients()
            self.optimizer.step()
        self.step += 1
        for hook in self.batch_hooks:
            hook(self.step, states, batch)
        if self.step % c.monitor_interval == 0:
            self.check_finite()
        return components.detach()

    def _clip_gradients(self) -> None:
        """Scale the gradients down to a total norm of at most `clip_norm`, as
        `torch.nn.utils.clip_grad_norm_` does, in four operations on the device (torch's moves each
        parameter's norm to one device first, an operation per parameter even where all share one)."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_mul_(grads, torch.clamp(self.config.clip_norm / (total + 1e-6), max=1.0))

    def forward_loss(self, batch: Batch, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, States]:
        """The forward pass and the losses of one batch, under the run's autocast: the total for
        backward, the weighted components [len(LOSS_COMPONENTS)] and the states. `factor` (a 0-d
        tensor): the share of the auxiliary weights in force. What `compile` compiles."""
        c = self.config
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            states = self.model.forward_with_states(batch)
            bce = prediction_loss(states, batch, self.positions_per_batch)
            aux = auxiliary_losses(states, batch, c.model.mastery_step, self._weighed_losses)
            composition = compose(bce, aux, c.weights, factor)
        return composition.total, composition.vector, states

    def _note_nonfinite(self, total: torch.Tensor) -> None:
        """Keep, on the device, the first step whose total loss was not finite and that loss."""
        self._steps_on_device += 1
        first = ~torch.isfinite(total) & (self._first_nonfinite[0] == 0)
        noted = torch.stack([self._steps_on_device.to(total.dtype), total.float()])
        self._first_nonfinite = torch.where(first, noted, self._first_nonfinite)

    def check_finite(self) -> None:
        """Raise FloatingPointError if a step's loss was not finite (one read from the device)."""
        step, loss = self._first_nonfinite.tolist()
        if step:
            epoch = self.epoch + 1
            raise FloatingPointError(f"loss is {loss} at epoch {epoch}, step {int(step)}")

    def _step_scheduler(self, auc: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(auc if not math.isnan(auc) else -math.inf)
        elif self.scheduler is not None:
            self.scheduler.step()

    def _record(self, row: EpochRow) -> None:
        """CSV row, best.pt when better, last.pt, then the callback: in that order, so a resume is exact."""
        flat = row.flat()
        _append_csv(self.out / "metrics_epoch.csv", flat)
        auc = flat[SELECTION_METRIC]
        if improves(auc, self.best_auc):
            self.best_auc, self.best_epoch, self.stale_epochs = auc, row.epoch, 0
            weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            _save_atomic(
                {
                    "model": weights,
                    "config": self.config.to_dict(),
                    "num_concepts": self.dataset.num_concepts,
                    "epoch": row.epoch,
                    "metrics": flat,
                    "fingerprint": self.dataset.fingerprint,
                    "version": __version__,
                },
                self.out / "best.pt",
            )
        else:
            self.stale_epochs += 1
        self.stopped_early = 0 < self.config.patience <= self.stale_epochs
        _save_atomic(self._last_state(), self.out / "last.pt")
        self.wandb.log({k: v for k, v in flat.items() if k != "epoch"} | {"epoch": row.epoch}, step=self.step)
        log.info(
            "epoch %d/%d  loss %.4f  val auc %.4f  mastery_corr %.3f  neg_gain_rate %.3f  "
            "%.0f interactions/s",
            row.epoch,
            self.config.epochs,
            row.train_loss,
            auc,
            row.valid.mastery_corr,
            row.valid.neg_gain_rate,
            row.interactions_per_s,
        )
        if self.on_epoch is not None:
            self.on_epoch(row, self.out)

    # ------------------------------------------------------------------ checkpoints

    def _last_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "best_auc": self.best_auc,
            "best_epoch": self.best_epoch,
            "stale_epochs": self.stale_epochs,
            "stopped_early": self.stopped_early,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "config": self.config.to_dict(),
            "fingerprint": self.dataset.fingerprint,
            "num_concepts": self.dataset.num_concepts,  # so that load_run can read it as it reads best.pt
        }

    def _load_last(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["fingerprint"] != self.dataset.fingerprint:
            raise ConfigError(f"{path}: was trained on other data (fingerprint {state['fingerprint']})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self._steps_on_device.fill_(self.step)
        self.best_auc, self.best_epoch = state["best_auc"], state["best_epoch"]
        self.stale_epochs = state["stale_epochs"]
        self.stopped_early = state["stopped_early"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        _truncate_csv(self.out / "metrics_epoch.csv", self.epoch)
        log.info("resumed %s after epoch %d", self.out, self.epoch)

    def _results(self, seconds: float) -> dict[str, Any]:
        path = self.out / "best.pt"
        best = torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None
        return {
            "best_epoch": self.best_epoch,
            "best": best["metrics"] if best else None,
            "epochs_run": self.epoch,
            "stopped_early": self.stopped_early,
            "seconds": seconds,
            "data": self.dataset.source,
            "fingerprint": self.dataset.fingerprint,
            "version": __version__,
            "device": str(self.device),
            "config": self.config.to_dict(),
        }


def train(
    config: TrainConfig,
    dataset: Dataset | None = None,
    on_epoch: EpochCallback | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """One run from its configuration: the dataset is read and the lookups fitted when not given."""
    if dataset is None:
        dataset = load_dataset(config.data, config.num_concepts)
    return Trainer(config, dataset, fold_baseline(dataset, config.fold), on_epoch).run(resume=resume)


def _append_csv(path: Path, row: dict[str, float]) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_csv(path: Path, epochs: int) -> None:
    """Keep the rows of the first `epochs` epochs (a crash may have written one more)."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [r for r in rows if int(r["epoch"]) <= epochs]
    if len(kept) == len(rows):
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)


def _progress(items: Any, total: int, desc: str) -> Any:
    if not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, leave=False, unit="batch")
