"""Benchmark: GainAKT2Exp's default preset on the real ASSIST2015 data (run by hand, not a test).

Reads `../shared/data/assist2015` (relative to the repository root), trains on folds 1-4 and
validates on fold 0, and prints in one run:

1. training throughput (real interactions per second) with bucketed and with fixed padding,
   on the same settings and a fixed number of `Trainer.train_step` calls each, and their ratio
   (target >= 4x);
2. the monitor's share of a training epoch's time (target < 5%): one `Trainer.train_epoch()`
   with the monitor's batch hook wrapped in a timer;
3. peak memory: resident set size high-water mark (and CUDA peak allocation on a GPU);
4. unless `--skip-full`: a full training run of the preset (`Trainer.run()`), its best
   epoch's validation AUC and interpretability metrics, each judged by the sweep's `Constraint`
   (`auc >= 0.725`, `mastery_corr >= 0.4`, ...).

It runs on the installed package, through the trainer's public API only:
    .venv/bin/python benchmarks/train_assist2015.py --skip-full
    .venv/bin/python benchmarks/train_assist2015.py --set weights.non_negative=0.1 --out runs/a15

Throughput counts real prediction positions (`Batch.num_real`, what the trainer's
`interactions_per_s` counts), and times the whole training step, batch construction included,
as `Trainer.train_epoch` does. The exit code is 0 whether targets are met or not; 2 for missing
data or a bad setting.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from gainakt.baselines import fold_baseline
from gainakt.batching import Batch, Padding
from gainakt.data import load_dataset
from gainakt.errors import UserError
from gainakt.losses import warmup_factor
from gainakt.presets import DEFAULT_PRESET, PRESETS
from gainakt.sequences import Dataset
from gainakt.tracer import States
from gainakt.train import BatchHook, EpochRow, TrainConfig, Trainer, make_config, resolve_device
from search.spec import Constraint

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "assist2015"
PRESET = DEFAULT_PRESET
VALID_FOLD = 0
TARGET_RATIO = 4.0
TARGET_MONITOR_SHARE = 0.05
TARGET_AUC = Constraint.parse("auc >= 0.725")
# The interpretability targets of docs/metrics.md, then the metrics reported without one.
INTERPRETABILITY_TARGETS = tuple(
    Constraint.parse(text)
    for text in (
        "mastery_corr >= 0.4",
        "gain_corr >= 0.3",
        "neg_gain_rate < 0.10",
        "monotonicity_violation_rate < 0.20",
    )
)
REPORTED_ONLY = ("pred_corr", "mastery_corr_student")

# Settings the benchmark fixes itself; a --set of them would be silently overridden, so it is refused.
FIXED_SETTINGS = {
    "data": "the data is fixed to ASSIST2015 at ../shared/data/assist2015",
    "fold": f"the validation fold is fixed to {VALID_FOLD}",
    "out": "use --out",
    "threads": "use --threads",
}

log = logging.getLogger("benchmark")
T = TypeVar("T")


# ---------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figure:
    """One printed figure; `met` is None for a figure reported without a target."""

    name: str
    shown: str
    target: str = "reported"
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.met is None else "PASS" if self.met else "MISS"


def judged(name: str, value: float, shown: str, constraint: Constraint) -> Figure:
    return Figure(name, shown, f"{constraint.op} {constraint.threshold:g}", constraint.met(value))


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
                lines.append(f"  {f.name:<{width}}{f.shown:>16}   target {f.target:<10} {f.verdict}".rstrip())
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def pct(x: float) -> str:
    return f"{100 * x:.2f}%" if math.isfinite(x) else "nan"


# ---------------------------------------------------------------------------- memory and contention


def rss_high_water_mib() -> float:
    """ru_maxrss in MiB (KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class MemoryMarks:
    """RSS high-water mark after each phase; on a GPU, each phase's own CUDA peak allocation."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, float, float | None]] = []  # (phase, RSS MiB, CUDA MiB)

    def phase(self, name: str, measure: Callable[[], T]) -> T:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        result = measure()
        self.mark(name)
        return result

    def mark(self, phase: str) -> None:
        cuda = torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None
        self.marks.append((phase, rss_high_water_mib(), cuda))
        extra = f", CUDA peak allocated in this phase {cuda:.0f} MiB" if cuda is not None else ""
        log.info("memory after %s: RSS high-water %.0f MiB%s", phase, self.marks[-1][1], extra)


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux /proc/stat), steal included."""
    try:
        with open("/proc/stat") as handle:
            ticks = [int(x) for x in handle.readline().split()[1:]]
    except OSError:
        return None
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
        log.info(
            "%s: other processes used %.1f CPU-s in %.1f s (%.0f%% of one core)",
            span,
            others,
            wall,
            100 * others / wall,
        )

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


@dataclass(frozen=True)
class Throughput:
    padding: Padding
    interactions: int  # real prediction positions
    padded_positions: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.interactions / self.seconds if self.seconds > 0 else float("nan")

    @property
    def padding_share(self) -> float:
        return 1 - self.interactions / self.padded_positions


def measure_throughput(
    config: TrainConfig, dataset: Dataset, padding: Padding, batches: int, warmup: int
) -> Throughput:
    """Real interactions per second over `batches` training steps after `warmup` untimed ones."""
    trainer = Trainer(replace(config, padding=padding), dataset, fold_baseline(dataset, config.fold))
    trainer.model.train()
    factor = warmup_factor(0, config.warmup_epochs) if config.warmup_epochs else 1.0
    stream = itertools.chain.from_iterable(trainer.train_plan.batches(epoch) for epoch in itertools.count())
    log.info("throughput, %s padding: %d warm-up batches, then %d timed batches", padding, warmup, batches)
    for batch in itertools.islice(stream, warmup):
        trainer.train_step(batch, factor)
    interactions = padded = 0
    synchronize(trainer.device)
    CONTENTION.begin()
    started = time.perf_counter()
    for batch in itertools.islice(stream, batches):  # batch construction is timed too, as in training
        trainer.train_step(batch, factor)
        interactions += batch.num_real
        padded += batch.mask.numel()
    synchronize(trainer.device)
    result = Throughput(padding, interactions, padded, time.perf_counter() - started)
    CONTENTION.end(f"{padding} throughput")
    log.info(
        "throughput, %s padding: %d real of %d positions in %.1f s: %.0f interactions/s",
        padding,
        interactions,
        padded,
        result.seconds,
        result.per_second,
    )
    return result


# ---------------------------------------------------------------------------- 2. monitor share


class TimedHook:
    """A batch hook that calls `hook` and adds up its time and the samples it returned."""

    def __init__(self, hook: BatchHook, device: torch.device) -> None:
        self.hook = hook
        self.device = device
        self.seconds = 0.0
        self.samples = 0

    def __call__(self, step: int, states: States, batch: Batch) -> object:
        # On a GPU, wait for the step's queued work first so it is not billed to the monitor;
        # the trainer reads the loss back right after, so the wait would happen anyway.
        synchronize(self.device)
        started = time.perf_counter()
        values = self.hook(step, states, batch)
        self.seconds += time.perf_counter() - started
        self.samples += values is not None
        return values


def time_monitor(trainer: Trainer) -> TimedHook:
    """Put a timed wrapper of the monitor's hook in its place among the trainer's batch hooks."""
    timed = TimedHook(trainer.monitor.after_batch, trainer.device)
    trainer.batch_hooks[trainer.batch_hooks.index(trainer.monitor.after_batch)] = timed
    return timed


@dataclass(frozen=True)
class MonitorShare:
    interval: int
    monitor: TimedHook
    row: EpochRow  # its `seconds`: the training loop, validation excluded
    epoch_seconds: float  # `train_epoch()` wall time, validation included

    @property
    def share(self) -> float:
        """Of the training loop; NaN without a sample, when it says nothing."""
        if not self.monitor.samples or self.row.seconds <= 0:
            return math.nan
        return self.monitor.seconds / self.row.seconds


def measure_monitor_share(config: TrainConfig, dataset: Dataset) -> MonitorShare:
    """One real training epoch (`Trainer.train_epoch()`), with the monitor's hook timed."""
    trainer = Trainer(config, dataset, fold_baseline(dataset, config.fold))
    timer = time_monitor(trainer)
    log.info(
        "monitor share: one training epoch (%d batches, %s padding), monitor every %d batches",
        len(trainer.train_plan),
        config.padding,
        config.monitor_interval,
    )
    CONTENTION.begin()
    started = time.perf_counter()
    row = trainer.train_epoch()
    result = MonitorShare(config.monitor_interval, timer, row, time.perf_counter() - started)
    CONTENTION.end("monitored epoch")
    log.info(
        "monitor share: %d samples, %.3f s of %.1f s training (%s); epoch %.0f interactions/s, val auc %.4f",
        timer.samples,
        timer.seconds,
        row.seconds,
        pct(result.share),
        row.interactions_per_s,
        row.valid.auc,
    )
    return result


# ---------------------------------------------------------------------------- 4. full training


@dataclass(frozen=True)
class FullRun:
    out: str
    results: dict[str, Any]  # what `Trainer.run()` returns; `best` is the best epoch's row
    rows: list[EpochRow]
    monitor: TimedHook


def full_training(config: TrainConfig, dataset: Dataset) -> FullRun:
    rows: list[EpochRow] = []
    baseline = fold_baseline(dataset, config.fold)
    trainer = Trainer(config, dataset, baseline, on_epoch=lambda row, _: rows.append(row))
    timer = time_monitor(trainer)
    log.info(
        "full training: up to %d epochs (patience %d) of %d batches, %s padding, run folder %s",
        config.epochs,
        config.patience,
        len(trainer.train_plan),
        config.padding,
        config.out,
    )
    CONTENTION.begin()
    results = trainer.run()
    CONTENTION.end("full training")
    log.info(
        "full training done: best epoch %d of %d, run folder %s",
        results["best_epoch"],
        results["epochs_run"],
        config.out,
    )
    for r in rows:
        log.info(
            "  epoch %d: train loss %.4f  val auc %.4f  mastery_corr %.3f  lr %.2g  %.0f s  "
            "%.0f interactions/s",
            r.epoch,
            r.train_loss,
            r.valid.auc,
            r.valid.mastery_corr,
            r.lr,
            r.seconds,
            r.interactions_per_s,
        )
    return FullRun(str(config.out), results, rows, timer)


# ---------------------------------------------------------------------------- the phases


@dataclass(frozen=True)
class Measurements:
    bucketed: Throughput
    fixed: Throughput
    monitor: MonitorShare
    full: FullRun | None
    memory: list[tuple[str, float, float | None]]  # MemoryMarks.marks


def measure(config: TrainConfig, dataset: Dataset, args: argparse.Namespace) -> Measurements:
    """Bucketed phases first, then the full run, then fixed padding: the RSS high-water mark only
    grows, so this order lets each mark say what bucketed training itself needs."""
    memory = MemoryMarks(resolve_device(config.device))
    memory.mark("loading the data")
    full: FullRun | None = None
    with tempfile.TemporaryDirectory(prefix="gainakt-bench-") as scratch:
        unrun = replace(config, out=scratch)  # for the trainers that never run()

        def throughput(padding: Padding) -> Throughput:
            return measure_throughput(unrun, dataset, padding, args.batches, args.warmup)

        bucketed = memory.phase("bucketed throughput", lambda: throughput("bucketed"))
        monitor = memory.phase("monitored epoch", lambda: measure_monitor_share(unrun, dataset))
        if not args.skip_full:
            out = args.out or tempfile.mkdtemp(prefix="gainakt-assist2015-")
            full = memory.phase("full training", lambda: full_training(replace(config, out=out), dataset))
        fixed = memory.phase("fixed throughput", lambda: throughput("fixed"))
    return Measurements(bucketed, fixed, monitor, full, memory.marks)


# ---------------------------------------------------------------------------- the report


def throughput_section(report: Report, m: Measurements, batch_size: int, args: argparse.Namespace) -> None:
    section = (
        f"1. training throughput ({args.batches} batches after {args.warmup} warm-up, batch {batch_size})"
    )
    for t in (m.bucketed, m.fixed):
        report.add(section, Figure(f"{t.padding} padding, real interactions/s", f"{t.per_second:,.0f}"))
        report.add(section, Figure(f"{t.padding} padding, padding share", pct(t.padding_share)))
    ratio = m.bucketed.per_second / m.fixed.per_second
    target = f">= {TARGET_RATIO:g}x"
    report.add(section, Figure("bucketed / fixed", f"{ratio:.2f}x", target, ratio >= TARGET_RATIO))


def monitor_section(report: Report, m: Measurements) -> None:
    monitor, target = m.monitor, f"< {100 * TARGET_MONITOR_SHARE:g}%"
    section = f"2. monitor (interval {monitor.interval}, one epoch, {monitor.monitor.samples} samples)"
    report.add(section, Figure("monitor seconds", f"{monitor.monitor.seconds:.3f} s"))
    report.add(section, Figure("training-loop seconds", f"{monitor.row.seconds:.1f} s"))
    if not monitor.monitor.samples:
        report.notes.append(
            f"the monitor took no sample in the epoch (fewer than {monitor.interval} "
            "batches): its share says nothing"
        )
    share, whole = monitor.share, monitor.monitor.seconds / monitor.epoch_seconds
    met = share < TARGET_MONITOR_SHARE
    report.add(section, Figure("monitor share of training loop", pct(share), target, met))
    report.add(section, Figure("monitor share incl. validation", pct(whole)))
    report.add(section, Figure("epoch interactions/s (bucketed)", f"{monitor.row.interactions_per_s:,.0f}"))
    if m.full is not None:
        train_seconds = sum(row.seconds for row in m.full.rows)
        share = m.full.monitor.seconds / train_seconds if train_seconds > 0 else math.nan
        report.add(
            section,
            Figure(
                f"full run: share over {len(m.full.rows)} epochs",
                pct(share),
                target,
                share < TARGET_MONITOR_SHARE,
            ),
        )


def memory_section(report: Report, m: Measurements) -> None:
    section = "3. peak memory (high-water mark after each phase)"
    for phase, rss, cuda in m.memory:
        report.add(section, Figure(f"RSS after {phase}", f"{rss:,.0f} MiB"))
        if cuda is not None:
            report.add(section, Figure(f"CUDA peak allocated, {phase}", f"{cuda:,.0f} MiB"))


def full_section(report: Report, full: FullRun) -> None:
    results, best = full.results, full.results["best"] or {}  # no best: no epoch had a finite validation AUC
    ending = "stopped early" if results["stopped_early"] else "all epochs"
    section = (
        f"4. full training (best epoch {results['best_epoch']} of {results['epochs_run']}, {ending}, "
        f"{results['seconds']:.0f} s)"
    )

    def value(name: str) -> float:
        return float(best.get(name, math.nan))

    report.add(section, judged("validation auc", value("auc"), f"{value('auc'):.4f}", TARGET_AUC))
    for target in INTERPRETABILITY_TARGETS:
        name = target.metric
        report.add(section, judged(name, value(name), f"{value(name):.4f}", target))
    for name in REPORTED_ONLY:
        report.add(section, Figure(name, f"{value(name):.4f}"))
    report.notes.append(f"run folder: {full.out} (results.json, metrics_epoch.csv, best.pt)")


def build_report(m: Measurements, config: TrainConfig, args: argparse.Namespace) -> Report:
    report = Report()
    throughput_section(report, m, config.batch_size, args)
    monitor_section(report, m)
    memory_section(report, m)
    if m.full is not None:
        full_section(report, m.full)
    else:
        report.notes.append("full training skipped (--skip-full)")
    report.notes.extend(CONTENTION.warnings())
    return report


def git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (uncommitted changes)" if dirty else "")


def header(config: TrainConfig, dataset: Dataset, args: argparse.Namespace) -> str:
    train_windows, valid_windows = dataset.split(config.fold)
    overrides = {k: v for k, v in config.to_dict().items() if k not in ("data", "out")}
    command = f"cd {shlex.quote(os.getcwd())} && {shlex.join([sys.executable, *sys.argv])}"
    return "\n".join(
        [
            "=" * 100,
            f"GainAKT2Exp on ASSIST2015, preset '{PRESET}', validation fold {config.fold}",
            f"command: {command}",
            f"git {git_revision()}, python {platform.python_version()}, torch {torch.__version__}, "
            f"device {resolve_device(config.device)}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs",
            f"data: {DATA}: {len(train_windows)} training windows ({train_windows.num_interactions} "
            f"interactions), {len(valid_windows)} validation windows, {dataset.num_concepts} concepts",
            f"preset settings: {PRESETS[PRESET] or '(the TrainConfig defaults)'}; "
            f"--set: {args.assignments or 'none'}",
            f"config: {json.dumps(overrides, default=str)}",
            "=" * 100,
        ]
    )


# ---------------------------------------------------------------------------- the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            f"Throughput, monitor overhead, peak memory and (unless --skip-full) a full training of the "
            f"'{PRESET}' preset on ASSIST2015 ({DATA}), folds 1-4 for training, fold 0 for validation."
        )
    )
    add = parser.add_argument
    add("--epochs", type=int, default=None, help="epochs of the full training (default: the preset's)")
    add("--threads", type=int, default=2, help="torch CPU threads (default 2; 0 keeps torch's default)")
    add("--skip-full", action="store_true", help="only the throughput, monitor and memory parts")
    add(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting for make_config, e.g. weights.non_negative=0.1 or model.d_model=256 "
        "(repeatable); applies to every part (padding is forced per throughput measurement)",
    )
    add("--out", default=None, help="run folder of the full training (default: a new temporary folder, kept)")
    add("--batches", type=int, default=60, help="timed batches per throughput measurement (default 60)")
    add("--warmup", type=int, default=5, help="untimed warm-up batches before them (default 5)")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.warmup < 0 or args.threads < 0:
        parser.error("--batches must be >= 1, --warmup and --threads >= 0")
    return args


def setup(args: argparse.Namespace) -> tuple[TrainConfig, Dataset]:
    """The configuration and the data; a `UserError` for missing data or a bad setting."""
    if not any((DATA / name).is_file() for name in ("train_valid.csv", "train_valid_sequences.csv")):
        raise UserError(f"no ASSIST2015 data at {DATA} (expected train_valid.csv there)")
    for text in args.assignments:
        key = text.partition("=")[0].strip()
        if key in FIXED_SETTINGS:
            raise UserError(f"--set {text}: {FIXED_SETTINGS[key]}")
    if args.out and not args.skip_full and (Path(args.out) / "last.pt").is_file():
        raise UserError(f"--out {args.out}: already holds a run (last.pt); choose another folder")
    values: dict[str, Any] = {"data": str(DATA), "fold": VALID_FOLD, "threads": args.threads}
    if args.epochs is not None:
        values["epochs"] = args.epochs
    config = make_config(PRESET, assignments=args.assignments, **values)
    resolve_device(config.device)
    log.info("loading %s", DATA)
    started = time.perf_counter()
    dataset = load_dataset(config.data, config.num_concepts)
    train_windows, valid_windows = dataset.split(config.fold)
    log.info(
        "loaded in %.1f s: %d concepts, %d training windows (%d interactions), %d validation windows "
        "(%d interactions)",
        time.perf_counter() - started,
        dataset.num_concepts,
        len(train_windows),
        train_windows.num_interactions,
        len(valid_windows),
        valid_windows.num_interactions,
    )
    return config, dataset


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        config, dataset = setup(args)
        # What `Trainer.run()` does first; the throughput and monitor phases train without it.
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        measured = measure(config, dataset, args)
    except UserError as err:
        print(f"train_assist2015: {err}", file=sys.stderr)
        return 2
    print(f"\n{header(config, dataset, args)}")
    print(build_report(measured, config, args).render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
