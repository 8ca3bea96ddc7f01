"""Benchmark: GainAKT2Exp's default preset on the real ASSIST2015 data (run by hand, not a test).

Reads `../shared/data/assist2015` (relative to the repository root), trains on folds 1-4 and
validates on fold 0, and prints in one run:

1. training throughput (real interactions per second) with bucketed and with fixed padding,
   on the same settings and a fixed number of batches each, and their ratio (target >= 4x);
2. the monitor's share of a training epoch's time (target < 5%);
3. peak memory: resident set size high-water mark (and CUDA peak allocation on a GPU);
4. unless `--skip-full`: a full training run of the preset (`Trainer(config).run()`), its best
   epoch's validation AUC (target >= 0.725) and interpretability metrics.

Example:
    .venv/bin/python benchmarks/train_assist2015.py --skip-full
    .venv/bin/python benchmarks/train_assist2015.py --set weights.non_negative=0.1 --out runs/a15

Throughput counts real prediction positions (`Batch.num_real`, what the trainer's
`interactions_per_s` counts), and times the whole training step, batch construction included,
exactly as `Trainer._train_epoch` takes it. The exit code is 0 whether targets are met or not;
2 for missing data or a bad setting.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = (REPO / ".." / "shared" / "data" / "assist2015").resolve()
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import torch  # noqa: E402

from gainakt.data import Batch, BatchPlan, Dataset, load_dataset  # noqa: E402
from gainakt.errors import UserError  # noqa: E402
from gainakt.losses import warmup_factor  # noqa: E402
from gainakt.train import PRESETS, Trainer, TrainConfig, make_config, resolve_device  # noqa: E402

PRESET = "cpu-small"
VALID_FOLD = 0
TARGET_RATIO = 4.0
TARGET_MONITOR_SHARE = 0.05
TARGET_AUC = 0.725
# DESIGN.md's interpretability targets; None: reported only.
INTERPRETABILITY_TARGETS: dict[str, tuple[str, float] | None] = {
    "mastery_corr": (">=", 0.4),
    "pred_corr": None,
    "mastery_corr_student": None,
    "gain_corr": (">=", 0.3),
    "neg_gain_rate": ("<", 0.10),
    "monotonicity_violation_rate": ("<", 0.20),
}

# Settings the benchmark fixes itself; a --set of them would be silently overridden, so it is refused.
FIXED_SETTINGS = {
    "data": "the data is fixed to ASSIST2015 at ../shared/data/assist2015",
    "fold": f"the validation fold is fixed to {VALID_FOLD}",
    "out": "use --out",
    "threads": "use --threads",
}

log = logging.getLogger("benchmark")


# ---------------------------------------------------------------------------- figures


@dataclass
class Figure:
    name: str
    value: float
    shown: str
    target: tuple[str, float] | None = None  # (">=", 4.0) etc.; None: reported only
    target_text: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        op, bound = self.target
        if not math.isfinite(self.value):
            return "MISS"
        ok = {">=": self.value >= bound, ">": self.value > bound, "<": self.value < bound, "<=": self.value <= bound}[op]
        return "PASS" if ok else "MISS"


@dataclass
class Report:
    sections: dict[str, list[Figure]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, section: str, figure: Figure) -> None:
        self.sections.setdefault(section, []).append(figure)

    def render(self) -> str:
        width = max((len(f.name) for figs in self.sections.values() for f in figs), default=20) + 2
        lines = []
        for section, figures in self.sections.items():
            lines.append(f"[{section}]")
            for f in figures:
                target = f.target_text or (f"{f.target[0]} {f.target[1]:g}" if f.target else "reported")
                lines.append(f"  {f.name:<{width}}{f.shown:>16}   target {target:<10} {f.verdict}".rstrip())
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


# ---------------------------------------------------------------------------- memory


def rss_high_water_mib() -> float:
    """ru_maxrss in MiB (KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class MemoryMarks:
    """RSS high-water mark after each phase; on a GPU, each phase's own CUDA peak allocation."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, float, float | None]] = []

    def start(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def mark(self, phase: str) -> None:
        cuda = torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None
        self.marks.append((phase, rss_high_water_mib(), cuda))
        extra = f", CUDA peak allocated in this phase {cuda:.0f} MiB" if cuda is not None else ""
        log.info("memory after %s: RSS high-water %.0f MiB%s", phase, self.marks[-1][1], extra)


# ---------------------------------------------------------------------------- contention


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux /proc/stat), steal included."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Contention:
    """CPU time other processes (and the hypervisor's steal) took while a timed span ran.

    Timings on a shared machine are worth little when another job competes for the cores;
    this says so instead of letting a slow figure pass for the library's.
    """

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []  # (span, wall seconds, others' CPU seconds)
        self._start: tuple[float, float | None, float] | None = None

    def begin(self) -> None:
        self._start = (time.perf_counter(), _machine_busy_seconds(), _own_cpu_seconds())

    def end(self, span: str) -> None:
        assert self._start is not None
        wall0, busy0, own0 = self._start
        wall, busy = time.perf_counter() - wall0, _machine_busy_seconds()
        if busy is None or busy0 is None:
            return
        others = max(0.0, (busy - busy0) - (_own_cpu_seconds() - own0))
        self.spans.append((span, wall, others))
        log.info("%s: other processes used %.1f CPU-s in %.1f s (%.0f%% of one core)", span, others, wall, 100 * others / wall)

    def warnings(self, threshold: float = 0.15) -> list[str]:
        return [
            f"{span}: other processes took {100 * others / wall:.0f}% of a core while it was timed; "
            "its figures are slowed by contention, run again on an idle machine"
            for span, wall, others in self.spans
            if wall > 0 and others / wall > threshold
        ]


CONTENTION = Contention()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------- 1. throughput


def endless_batches(plan: BatchPlan) -> Iterator[Batch]:
    for epoch in itertools.count():
        yield from plan.batches(epoch)


@dataclass(frozen=True)
class Throughput:
    padding: str
    batches: int
    interactions: int  # real prediction positions
    padded_positions: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.interactions / self.seconds if self.seconds > 0 else float("nan")


def measure_throughput(config: TrainConfig, dataset: Dataset, padding: str, batches: int, warmup: int, scratch: Path) -> Throughput:
    """Real interactions per second over `batches` training steps after `warmup` untimed ones."""
    trainer = Trainer(replace(config, padding=padding, wandb="off", out=str(scratch / f"throughput-{padding}")), dataset)
    trainer.model.train()
    factor = warmup_factor(0, config.warmup_epochs) if config.warmup_epochs else 1.0
    stream = endless_batches(trainer.train_plan)
    log.info("throughput, %s padding: %d warm-up batches, then %d timed batches", padding, warmup, batches)
    for batch in itertools.islice(stream, warmup):
        trainer.train_step(batch, factor)
    interactions = padded = 0
    synchronize(trainer.device)
    CONTENTION.begin()
    started = time.perf_counter()
    for batch in itertools.islice(stream, batches):  # batch construction is inside the timed span, as in training
        trainer.train_step(batch, factor)
        interactions += batch.num_real
        padded += batch.mask.numel()
    synchronize(trainer.device)
    result = Throughput(padding, batches, interactions, padded, time.perf_counter() - started)
    CONTENTION.end(f"{padding} throughput")
    log.info(
        "throughput, %s padding: %d real of %d positions in %.1f s: %.0f interactions/s",
        padding, interactions, padded, result.seconds, result.per_second,
    )
    return result


# ---------------------------------------------------------------------------- 2. monitor share


class TimedMonitor:
    """Wraps a trainer's `monitor.after_batch` (an instance attribute patch) and adds up its time."""

    def __init__(self, trainer: Trainer) -> None:
        self.seconds = 0.0
        self.samples = 0
        self._device = trainer.device
        self._inner = trainer.monitor.after_batch
        trainer.monitor.after_batch = self  # type: ignore[method-assign]

    def __call__(self, step: int, states: Any, batch: Batch) -> Any:
        # On a GPU, wait for the step's queued work first so it is not billed to the monitor;
        # the trainer reads the loss back right after, so the wait would happen anyway.
        synchronize(self._device)
        started = time.perf_counter()
        values = self._inner(step, states, batch)
        self.seconds += time.perf_counter() - started
        self.samples += values is not None
        return values


@dataclass(frozen=True)
class MonitorShare:
    interval: int
    samples: int
    monitor_seconds: float
    train_seconds: float  # the epoch row's `seconds`: the training loop, validation excluded
    epoch_seconds: float  # `_train_epoch` wall time, validation included
    interactions_per_s: float
    monitor_means: dict[str, float]

    @property
    def share(self) -> float:
        return self.monitor_seconds / self.train_seconds if self.train_seconds > 0 else float("nan")


def measure_monitor_share(config: TrainConfig, dataset: Dataset, scratch: Path) -> MonitorShare:
    """One real training epoch through `Trainer._train_epoch`, with the monitor's calls timed."""
    trainer = Trainer(replace(config, wandb="off", out=str(scratch / "monitor")), dataset)
    timer = TimedMonitor(trainer)
    log.info(
        "monitor share: one training epoch (%d batches, %s padding), monitor every %d batches",
        len(trainer.train_plan), config.padding, config.monitor_interval,
    )
    CONTENTION.begin()
    started = time.perf_counter()
    row = trainer._train_epoch()  # the trainer's own epoch; no public way to run one without writing a run folder
    wall = time.perf_counter() - started
    CONTENTION.end("monitored epoch")
    result = MonitorShare(
        config.monitor_interval, timer.samples, timer.seconds, row.seconds, wall, row.interactions_per_s, row.monitor
    )
    log.info(
        "monitor share: %d samples, %.3f s of %.1f s training (%.2f%%); epoch %.0f interactions/s, val auc %.4f",
        result.samples, result.monitor_seconds, result.train_seconds, 100 * result.share,
        result.interactions_per_s, row.valid.auc,
    )
    return result


# ---------------------------------------------------------------------------- 4. full training


@dataclass(frozen=True)
class FullRun:
    out: Path
    results: dict[str, Any]
    rows: list[dict[str, str]]  # metrics_epoch.csv
    best: dict[str, str]  # the best epoch's row
    monitor_seconds: float
    monitor_samples: int


def full_training(config: TrainConfig, dataset: Dataset) -> FullRun:
    trainer = Trainer(config, dataset)
    timer = TimedMonitor(trainer)
    log.info(
        "full training: up to %d epochs (patience %d) of %d batches, %s padding, run folder %s",
        config.epochs, config.patience, len(trainer.train_plan), config.padding, config.out,
    )
    CONTENTION.begin()
    trainer.run()
    CONTENTION.end("full training")
    out = Path(config.out)
    results = json.loads((out / "results.json").read_text())
    with open(out / "metrics_epoch.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    best = next((r for r in rows if int(float(r["epoch"])) == results["best_epoch"]), None)
    if best is None:  # no epoch with a finite validation AUC: fall back to what results.json holds
        best = {k: str(v) for k, v in (results.get("best") or {}).items()}
    return FullRun(out, results, rows, best, timer.seconds, timer.samples)


def log_learning_curve(run: FullRun) -> None:
    for r in run.rows:
        log.info(
            "  epoch %s: train loss %.4f  val auc %.4f  mastery_corr %.3f  lr %.2g  %.0f s  %.0f interactions/s",
            r["epoch"], float(r["train_loss"]), float(r["auc"]), float(r["mastery_corr"]), float(r["lr"]),
            float(r["seconds"]), float(r["interactions_per_s"]),
        )


# ---------------------------------------------------------------------------- the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            f"Throughput, monitor overhead, peak memory and (unless --skip-full) a full training of the "
            f"'{PRESET}' preset on ASSIST2015 ({DATA}), folds 1-4 for training, fold 0 for validation."
        )
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the full training (default: the preset's)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2; 0 keeps torch's default)")
    parser.add_argument("--skip-full", action="store_true", help="only the throughput, monitor and memory parts")
    parser.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
        help="a training setting for make_config, e.g. weights.non_negative=0.1 or model.d_model=256 (repeatable); "
        "applies to every part (padding is forced per throughput measurement)",
    )
    parser.add_argument("--out", default=None, help="run folder of the full training (default: a new temporary folder, kept)")
    parser.add_argument("--batches", type=int, default=60, help="timed batches per throughput measurement (default 60)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up batches before them (default 5)")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.warmup < 0 or args.threads < 0:
        parser.error("--batches must be >= 1, --warmup and --threads >= 0")
    return args


def data_present() -> bool:
    return any((DATA / name).is_file() for name in ("train_valid.csv", "train_valid_sequences.csv"))


def git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def command_line() -> str:
    return f"cd {shlex.quote(os.getcwd())} && " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])


def pct(x: float) -> str:
    return f"{100 * x:.2f}%" if math.isfinite(x) else "nan"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not data_present():
        print(f"train_assist2015: no ASSIST2015 data at {DATA} (expected train_valid.csv there)", file=sys.stderr)
        return 2
    for text in args.assignments:
        key = text.partition("=")[0].strip()
        if key in FIXED_SETTINGS:
            print(f"train_assist2015: --set {text}: {FIXED_SETTINGS[key]}", file=sys.stderr)
            return 2
    if args.out and not args.skip_full and (Path(args.out) / "last.pt").is_file():
        print(f"train_assist2015: --out {args.out}: already holds a run (last.pt); choose another folder", file=sys.stderr)
        return 2
    values: dict[str, Any] = {"data": str(DATA), "fold": VALID_FOLD, "threads": args.threads}
    if args.epochs is not None:
        values["epochs"] = args.epochs
    try:
        config = make_config(PRESET, assignments=args.assignments, **values)
        log.info("loading %s", DATA)
        started = time.perf_counter()
        dataset = load_dataset(config.data, config.num_concepts)
        train_windows, valid_windows = dataset.split(config.fold)
    except UserError as err:
        print(f"train_assist2015: {err}", file=sys.stderr)
        return 2
    log.info(
        "loaded in %.1f s: %d concepts, %d training windows (%d interactions), %d validation windows (%d interactions)",
        time.perf_counter() - started, dataset.num_concepts, len(train_windows), train_windows.num_interactions,
        len(valid_windows), valid_windows.num_interactions,
    )
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        device = resolve_device(config.device)
    except UserError as err:
        print(f"train_assist2015: {err}", file=sys.stderr)
        return 2
    memory = MemoryMarks(device)
    memory.mark("loading the data")
    report = Report()
    full: FullRun | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="gainakt-bench-") as tmp:
            scratch = Path(tmp)
            # Bucketed phases first, then the full run, then fixed padding: the RSS high-water mark
            # only grows, so this order lets each mark say what bucketed training itself needs.
            memory.start()
            bucketed = measure_throughput(config, dataset, "bucketed", args.batches, args.warmup, scratch)
            memory.mark("bucketed throughput")
            memory.start()
            monitor = measure_monitor_share(config, dataset, scratch)
            memory.mark("monitored epoch")
            if not args.skip_full:
                out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gainakt-assist2015-"))
                memory.start()
                full = full_training(replace(config, out=str(out)), dataset)
                memory.mark("full training")
                log.info("full training done: best epoch %d of %d, run folder %s",
                         full.results["best_epoch"], full.results["epochs_run"], full.out)
                log_learning_curve(full)
            memory.start()
            fixed = measure_throughput(config, dataset, "fixed", args.batches, args.warmup, scratch)
            memory.mark("fixed throughput")
    except UserError as err:
        print(f"train_assist2015: {err}", file=sys.stderr)
        return 2

    # ------------------------------------------------------------------ report
    ratio = bucketed.per_second / fixed.per_second
    section = f"1. training throughput ({args.batches} batches after {args.warmup} warm-up, batch {config.batch_size})"
    for t in (bucketed, fixed):
        report.add(section, Figure(f"{t.padding} padding, real interactions/s", t.per_second, f"{t.per_second:,.0f}"))
        report.add(section, Figure(f"{t.padding} padding, padding share", 1 - t.interactions / t.padded_positions,
                                   pct(1 - t.interactions / t.padded_positions)))
    report.add(section, Figure("bucketed / fixed", ratio, f"{ratio:.2f}x", (">=", TARGET_RATIO), f">= {TARGET_RATIO:g}x"))

    section = f"2. monitor (interval {monitor.interval}, one epoch, {monitor.samples} samples)"
    report.add(section, Figure("monitor seconds", monitor.monitor_seconds, f"{monitor.monitor_seconds:.3f} s"))
    report.add(section, Figure("training-loop seconds", monitor.train_seconds, f"{monitor.train_seconds:.1f} s"))
    if monitor.samples == 0:
        report.notes.append(f"the monitor took no sample in the epoch (fewer than {monitor.interval} batches): its share says nothing")
    share = monitor.share if monitor.samples else float("nan")
    report.add(section, Figure("monitor share of training loop", share, pct(share),
                               ("<", TARGET_MONITOR_SHARE), f"< {100 * TARGET_MONITOR_SHARE:g}%"))
    whole = monitor.monitor_seconds / monitor.epoch_seconds
    report.add(section, Figure("monitor share incl. validation", whole, pct(whole)))
    report.add(section, Figure("epoch interactions/s (bucketed)", monitor.interactions_per_s, f"{monitor.interactions_per_s:,.0f}"))
    if full is not None:
        train_seconds = sum(float(r["seconds"]) for r in full.rows)
        share = full.monitor_seconds / train_seconds if train_seconds > 0 else float("nan")
        report.add(section, Figure(f"full run: share over {len(full.rows)} epochs", share, pct(share),
                                   ("<", TARGET_MONITOR_SHARE), f"< {100 * TARGET_MONITOR_SHARE:g}%"))

    section = "3. peak memory (high-water mark after each phase)"
    for phase, rss, cuda in memory.marks:
        report.add(section, Figure(f"RSS after {phase}", rss, f"{rss:,.0f} MiB"))
        if cuda is not None:
            report.add(section, Figure(f"CUDA peak allocated, {phase}", cuda, f"{cuda:,.0f} MiB"))

    if full is not None:
        best = full.best
        section = f"4. full training (best epoch {full.results['best_epoch']} of {full.results['epochs_run']}, " \
                  f"{'stopped early' if full.results['stopped_early'] else 'all epochs'}, {full.results['seconds']:.0f} s)"
        auc = float(best.get("auc", "nan"))
        report.add(section, Figure("validation auc", auc, f"{auc:.4f}", (">=", TARGET_AUC)))
        for name, target in INTERPRETABILITY_TARGETS.items():
            value = float(best.get(name, "nan"))
            report.add(section, Figure(name, value, f"{value:.4f}", target))
        report.notes.append(f"run folder: {full.out} (results.json, metrics_epoch.csv, best.pt)")
    else:
        report.notes.append("full training skipped (--skip-full)")
    report.notes.extend(CONTENTION.warnings())

    overrides = {k: v for k, v in config.to_dict().items() if k not in ("data", "out")}
    print()
    print("=" * 100)
    print(f"GainAKT2Exp on ASSIST2015, preset '{PRESET}', validation fold {config.fold}")
    print(f"command: {command_line()}")
    print(
        f"git {git_revision()}, python {platform.python_version()}, torch {torch.__version__}, device {device}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
    )
    print(
        f"data: {DATA}: {len(train_windows)} training windows ({train_windows.num_interactions} interactions), "
        f"{len(valid_windows)} validation windows, {dataset.num_concepts} concepts"
    )
    print(f"preset settings: {PRESETS[PRESET] or '(the TrainConfig defaults)'}; --set: {args.assignments or 'none'}")
    print(f"config: {json.dumps(overrides, default=str)}")
    print("=" * 100)
    print(report.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
