"""`gainakt-search`: the command line. It parses arguments and calls; what is printed comes from
`search.report.terminal`. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gainakt import strict_json
from gainakt.errors import StorageFull, UserError, is_no_space

PROG = "gainakt-search"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]  # typeshed says NoReturn; it exits
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return handler(args) or 0
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except StorageFull as err:
        print(f"{PROG}: error: {err}; free space, then {err.then}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:  # a second Ctrl-C, or one before the work could stop gracefully
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"{PROG}: stopped at once by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly with the code a Unix tool
        # killed by SIGPIPE has, and leave Python nothing to flush into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as err:  # a full disk where no store write saw it (a run folder, a report)
        if not is_no_space(err):
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(
            f"{PROG}: error: {where}no space left on the device; free space, then run the command again",
            file=sys.stderr,
        )
        return 1


def _version() -> str:
    from gainakt import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Interpretable knowledge tracing (GainAKT2Exp) and a multi-objective search over its "
        "interpretability-loss weights.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    _add_data(commands)
    _add_baselines(commands)
    _add_train(commands)
    _add_eval(commands)
    _add_check(commands)
    _add_run(commands)
    _add_resume(commands)
    _add_status(commands)
    _add_confirm(commands)
    _add_pareto(commands)
    _add_report(commands)
    _add_doctor(commands)
    return parser


# ---------------------------------------------------------------------------- data


def _add_data(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data", help="inspect and validate datasets", description="Inspect and validate datasets."
    )
    sub = data.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    check = sub.add_parser(
        "check",
        help="validate a dataset and print its summary",
        description="Read a dataset, validate every row, and print its size, lengths, folds, share of "
        "correct answers and content fingerprint. For the simulator, also the Bayes-optimal AUC (true "
        "probabilities against responses on the validation fold), the ceiling any model can reach.",
    )
    check.add_argument(
        "source",
        metavar="PATH|synthetic[:key=value,...]",
        help="a pyKT dataset folder (train_valid.csv or train_valid_sequences.csv, optional test.csv), one "
        "such CSV file, or the simulator, e.g. synthetic:students=2000,concepts=50,seed=0",
    )
    check.add_argument(
        "--num-concepts", type=int, help="number of concepts; inferred from the data when omitted"
    )
    check.add_argument("--fold", type=int, default=0, help="validation fold (default %(default)s)")
    check.add_argument("--json", action="store_true", help="print the summary as JSON, for scripts")
    check.set_defaults(handler=_data_check)
    data.set_defaults(handler=lambda _: data.print_help() or 2)


def _data_check(args: argparse.Namespace) -> int:
    from gainakt.data import load_dataset
    from search.report.terminal import data_summary_lines

    dataset = load_dataset(args.source, num_concepts=args.num_concepts)
    dataset.split(args.fold)  # an absent validation fold is an error here too
    summary = dataset.summary(fold=args.fold)
    _print(strict_json.dumps(summary, indent=2) if args.json else data_summary_lines(summary))
    return 0


def _add_baselines(commands: argparse._SubParsersAction) -> None:
    baselines = commands.add_parser(
        "baselines",
        help="every metric of the lookup baselines a model's mastery must beat",
        description="Fit four lookup baselines on the training folds only (every fold but --fold) and "
        "score them with the model's metrics on validation fold --fold or the test split. base_rate: the "
        "concept's share of correct answers in training. running_accuracy: the student's accuracy on the "
        "concept so far in the window, smoothed towards the base rate by k pseudo-attempts (k picked on "
        "training). last_response: the student's last answer on the concept in the window (the base rate "
        "before one). pfa: a logistic regression on the concept and the log counts of the student's "
        "earlier successes and failures on it in the window. History counts within the 200-long window, "
        "as the model sees it. Ends with the best baseline by mastery_corr.",
    )
    baselines.add_argument(
        "source",
        metavar="PATH|synthetic[:key=value,...]",
        help="a pyKT dataset folder, one such CSV file, or the simulator (as for 'data check')",
    )
    baselines.add_argument(
        "--num-concepts", type=int, help="number of concepts; inferred from the data when omitted"
    )
    baselines.add_argument("--fold", type=int, default=0, help="validation fold (default %(default)s)")
    baselines.add_argument(
        "--split", choices=["valid", "test"], default="valid", help="split to score (default %(default)s)"
    )
    baselines.add_argument(
        "--json", action="store_true", help="print {baseline: metrics} as JSON, for scripts"
    )
    baselines.set_defaults(handler=_baselines)


def _baselines(args: argparse.Namespace) -> int:
    from gainakt.baselines import baseline_metrics, best_baseline
    from gainakt.data import load_dataset
    from search.report.terminal import baseline_lines

    dataset = load_dataset(args.source, num_concepts=args.num_concepts)
    train, valid = dataset.split(args.fold)
    windows = valid if args.split == "valid" else dataset.test_windows()
    scores = baseline_metrics(train, windows, dataset.num_concepts)
    if args.json:
        _print(strict_json.dumps({name: m.as_dict() for name, m in scores.items()}, indent=2))
        return 0
    try:
        best: str | None = best_baseline(scores)[0]
    except ValueError:  # no baseline has a defined mastery_corr
        best = None
    where = f"validation fold {args.fold}" if args.split == "valid" else "the test split"
    title = f"baselines on {dataset.source}, {where} (fitted on every fold but {args.fold}):"
    _print(baseline_lines(title, {name: m.as_dict() for name, m in scores.items()}, best))
    return 0


# ---------------------------------------------------------------------------- train, eval


def _add_train(commands: argparse._SubParsersAction) -> None:
    from gainakt.presets import DEFAULT_PRESET, PRESETS

    train = commands.add_parser(
        "train",
        help="train one GainAKT2Exp run",
        description="Train one GainAKT2Exp run. Settings come from the preset, then the TOML file, then "
        "--set, later winning. The run folder receives metrics_epoch.csv (a row per epoch), best.pt (best "
        "validation AUC), last.pt (for --resume) and results.json.",
    )
    train.add_argument(
        "--data", help="dataset folder, CSV file or synthetic[:key=value,...] (default: synthetic)"
    )
    train.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help="starting settings (default %(default)s)",
    )
    train.add_argument(
        "--config", metavar="FILE.toml", help="TOML file of settings (tables [model] and [weights])"
    )
    train.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set epochs=5 --set model.gains=linear --set weights.sparsity=0.01",
    )
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt if it has one (a finished run just reports)",
    )
    train.add_argument(
        "--wandb", choices=["off", "offline", "online"], help="log to Weights & Biases (default off)"
    )
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from gainakt.train import make_config, train
    from search.report.terminal import training_lines

    values = {"out": args.out, "data": args.data, "wandb": args.wandb}
    config = make_config(
        args.preset, args.config, args.assignments, **{k: v for k, v in values.items() if v is not None}
    )
    _print(training_lines(train(config, resume=args.resume), args.out))
    return 0


def _add_eval(commands: argparse._SubParsersAction) -> None:
    ev = commands.add_parser(
        "eval",
        help="every metric of a run's best.pt on a split",
        description="Load RUN_DIR/best.pt and compute every metric of docs/metrics.md on the validation "
        "fold it was trained against, or on the test split, each beside the best of the baselines fitted "
        "on its training folds.",
    )
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--data", help="dataset (default: the one the run was trained on)")
    ev.add_argument("--split", choices=["valid", "test"], default="valid")
    ev.add_argument("--json", action="store_true", help="print JSON, for scripts")
    ev.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="add a 95%% interval to every metric from N resamples of the students (0: none; 200 is a "
        "sensible number; each resample recomputes every metric, so it takes a while on real data)",
    )
    ev.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from gainakt.run_folder import evaluate_run
    from search.report.terminal import metric_lines

    if args.bootstrap < 0 or args.bootstrap == 1:
        raise UserError(f"--bootstrap {args.bootstrap}: give 0 (no intervals) or at least 2 resamples")
    from gainakt.bootstrap import stderr_progress

    progress = stderr_progress(args.bootstrap) if args.bootstrap else None
    result = evaluate_run(args.run_dir, args.split, args.data, args.bootstrap, progress)
    metrics = result.metrics.as_dict()
    baselines = {name: scores.as_dict() for name, scores in result.baselines.items()}
    intervals = {k: (i.low, i.high) for k, i in (result.intervals or {}).items()}
    if args.json:
        where = {
            "run": args.run_dir,
            "split": args.split,
            "fold": result.fold,
            "epoch": result.epoch,
            "data": result.source,
        }
        extra = {"intervals": intervals, "bootstrap": args.bootstrap} if intervals else {}
        _print(strict_json.dumps({**where, **metrics, "baselines": baselines, **extra}, indent=2))
    else:
        positions = f"{result.metrics.positions:,} predicted answers"
        title = (
            f"{args.run_dir}: best.pt (epoch {result.epoch}) on {result.source}, "
            f"{result.split_label} ({positions}), beside the lookups fitted on its training folds:"
        )
        _print(metric_lines(title, metrics, baselines, intervals))
    return 0


def _add_check(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser(
        "check",
        help="quick setup test: one OK or FAIL line per component",
        description="Build a tiny model in each mode, run one training step on simulated data, and print one "
        "OK or FAIL line per component. Exit code 1 if anything fails.",
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from gainakt.selfcheck import run_checks
    from search.report.terminal import check_lines

    results = run_checks()
    _print(check_lines(results))
    return 0 if all(r.ok for r in results) else 1


# ---------------------------------------------------------------------------- search


def _add_run(commands: argparse._SubParsersAction) -> None:
    from search.spec import BUILT_IN_SPACES, SAMPLERS, SCHEDULERS, SEED_MODES, SweepSpec

    default = SweepSpec()  # every "(default ...)" below is read from it
    listed = ", ".join

    run = commands.add_parser(
        "run",
        help="run (or continue) a multi-objective search; with no arguments, the quick-start sweep",
        description="Run a multi-objective search over the auxiliary-loss weights: Ray Tune runs the trials, "
        "Optuna proposes them, every epoch and trial goes into the study's Parquet store, and the "
        "non-dominated trials are printed at the end with the path of the study report (report.html). "
        "Settings come from the defaults, then SPEC.toml, then the flags. With no arguments: "
        f"{default.trials} short trials, {default.concurrent} at a time, on the simulator (a few minutes on "
        "two cores). A study that already exists under the "
        "same name is continued where it stopped. Ctrl-C or SIGTERM stops it gracefully (resumable; "
        "exit code 130 or 143); a sweep with a trial that failed (after its retries) exits with 1, "
        "bad input with 2.",
    )
    run.add_argument(
        "spec", nargs="?", metavar="SPEC.toml", help="sweep spec (see search/spec.py or the README)"
    )
    run.add_argument("--name", help=f"study name; the study folder is STORAGE/NAME (default {default.name})")
    run.add_argument(
        "--data", help=f"dataset folder, CSV file or synthetic[:key=value,...] (default {default.data})"
    )
    run.add_argument(
        "--space",
        help=f"search space: {', '.join(BUILT_IN_SPACES)} (spaces/aux_weights.py) or package.module:function "
        f"(default {default.space})",
    )
    run.add_argument("--preset", help=f"training preset the trials start from (default {default.preset})")
    run.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fixed training setting for every trial, e.g. --set epochs=6 --set model.d_model=128",
    )
    _add_list_flag(
        run,
        "--objectives",
        "--objective",
        dest="objectives",
        metavar="METRIC[:max|min],...",
        help="objectives, comma-separated or the flag repeated, as pareto takes them; a bare metric "
        f"takes its better direction (replaces the default {listed(map(str, default.objectives))}; every "
        "metric is defined in docs/metrics.md)",
    )
    run.add_argument(
        "--constraint",
        dest="constraints",
        action="append",
        metavar="'METRIC >= VALUE'",
        help="a target (repeat for several; replaces the defaults "
        f"{listed(map(str, default.constraints))}; metrics in docs/metrics.md)",
    )
    run.add_argument("--no-constraints", action="store_true", help="search without targets")
    run.add_argument("--trials", type=int, help=f"trials in total (default {default.trials})")
    run.add_argument("--concurrent", type=int, help=f"trials at a time (default {default.concurrent})")
    run.add_argument(
        "--cpus", type=float, help=f"CPUs per trial; also its torch threads (default {default.cpus:g})"
    )
    run.add_argument(
        "--gpus", type=float, help=f"GPUs per trial; a fraction shares one GPU (default {default.gpus:g})"
    )
    run.add_argument("--sampler", choices=SAMPLERS, help=f"Optuna sampler (default {default.sampler})")
    run.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help="fifo: run every trial to its end; asha: stop trials weak on AUC alone; mo-asha: stop trials "
        "weak on all the objectives, with the constraints (spec: grace_period, reduction_factor) "
        f"(default {default.scheduler})",
    )
    run.add_argument(
        "--seed", type=int, help=f"seed of the sampler and of every trial's training (default {default.seed})"
    )
    run.add_argument(
        "--seed-mode",
        choices=SEED_MODES,
        help="common: every trial trains with --seed, so trials differ by their settings only; "
        f"per-trial: trial n trains with seed + n (default {default.seed_mode})",
    )
    run.add_argument(
        "--storage",
        help=f"folder or URI (s3://..., gs://...) holding study folders (default {default.storage})",
    )
    run.add_argument(
        "--keep-checkpoints",
        type=int,
        help="epoch checkpoints kept per trial, best AUC first; 0 keeps all "
        f"(default {default.keep_checkpoints})",
    )
    run.add_argument(
        "--retries",
        type=int,
        help="times a failed trial (a dead worker, an error) starts again from its last checkpoint "
        f"before it is an error (default {default.retries})",
    )
    _add_cluster_flags(run)
    run.set_defaults(handler=_run)


class _ExtendList(argparse.Action):
    """A flag whose values are comma-separated, repeatable, and never take the next positional
    argument (`--objectives auc,mastery_corr NAME`); the default is replaced, not extended."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        given = getattr(namespace, self.dest)
        current = [] if given is self.default else list(given)
        setattr(namespace, self.dest, current + list(values))


def _add_list_flag(
    parser: argparse.ArgumentParser, *flags: str, item: Callable[[str], Any] = str, **kwargs: Any
) -> None:
    def items(text: str) -> list[Any]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        try:
            return [item(part) for part in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value in {text!r}") from None

    parser.add_argument(*flags, action=_ExtendList, type=items, **kwargs)


def _directed(objective: str) -> str:
    """`metric:max|min` as given, or a bare metric with its better direction (`auc` -> `auc:max`)."""
    from gainakt.schema import METRIC_DIRECTIONS

    bare = objective.strip()
    if ":" in bare:
        return bare
    return f"{bare}:{METRIC_DIRECTIONS.get(bare, 'max')}"  # an unknown one is then named as unknown


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_cluster_flags(parser: argparse.ArgumentParser, wandb: bool = True) -> None:
    parser.add_argument("--address", help="address of an existing Ray cluster (default: start a local Ray)")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the cluster at --address before giving up (default %(default)g)",
    )
    parser.add_argument(
        "--num-cpus", type=_positive_int, help="CPUs of the local Ray (default: all of this machine)"
    )
    if not wandb:
        return
    parser.add_argument(
        "--wandb",
        choices=["off", "offline", "online"],
        default="off",
        help="log every trial to Weights & Biases, grouped by study (default %(default)s)",
    )


def _add_study_args(parser: argparse.ArgumentParser) -> None:
    """NAME and --storage: which study a command reads."""
    parser.add_argument("name", metavar="NAME", help="study name")
    from search.spec import SweepSpec

    parser.add_argument(
        "--storage", default=SweepSpec.storage, help="folder or URI holding the study (default %(default)s)"
    )


def _add_resume(commands: argparse._SubParsersAction) -> None:
    resume = commands.add_parser(
        "resume",
        help="continue an interrupted search",
        description="Continue a study where it stopped: finished trials are kept, unfinished ones continue "
        "from their last checkpoint, errored ones are retried once (on every resume), and the total number "
        "of trials stays as asked. The study may have been copied or moved since; its data must be the "
        "same (data.json), and no other driver may be at work on it (lease.json).",
    )
    _add_study_args(resume)
    resume.add_argument(
        "--trials",
        type=_positive_int,
        metavar="N",
        help="grow the study to N trials in all (more than it asked for); spec.json records the new total "
        "and each earlier one",
    )
    _add_cluster_flags(resume)
    resume.set_defaults(handler=_resume)


def _add_status(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status",
        help="how a study stands, from its Parquet store",
        description="Trials by status, the best value so far on each objective, how many trials meet the "
        "targets, elapsed time and an estimate of the time left. Reads only the study's Parquet store.",
    )
    _add_study_args(status)
    status.set_defaults(handler=_status)


def _spec_from_args(args: argparse.Namespace):
    from dataclasses import replace

    from search.spec import QUICKSTART_START, Constraint, Objective, SweepSpec, load_spec

    spec = load_spec(args.spec)
    objectives = tuple(Objective.parse(_directed(o)) for o in args.objectives) if args.objectives else None
    if args.no_constraints:
        constraints: tuple | None = ()
    else:
        constraints = tuple(Constraint.parse(c) for c in args.constraints) if args.constraints else None
    spec = spec.with_overrides(
        name=args.name,
        data=args.data,
        space=args.space,
        preset=args.preset,
        assignments=args.assignments,
        objectives=objectives,
        constraints=constraints,
        trials=args.trials,
        concurrent=args.concurrent,
        cpus=args.cpus,
        gpus=args.gpus,
        sampler=args.sampler,
        scheduler=args.scheduler,
        seed=args.seed,
        seed_mode=args.seed_mode,
        storage=args.storage,
        keep_checkpoints=args.keep_checkpoints,
        retries=args.retries,
    )
    if args.spec is None and spec.space == SweepSpec().space and spec.gains_judged:
        spec = replace(spec, start=(QUICKSTART_START,))  # the quickstart's known-good trial, first
    return spec


def _run(args: argparse.Namespace) -> int:
    from search.run.sweep import prepare

    return _sweep(prepare(_spec_from_args(args), wandb=args.wandb), args)


def _resume(args: argparse.Namespace) -> int:
    from search.run.sweep import prepare
    from search.spec import SweepSpec

    spec = SweepSpec(name=args.name, storage=args.storage)
    prepared = prepare(spec, wandb=args.wandb, must_exist=True, spec_given=False, trials=args.trials)
    return _sweep(prepared, args)


def _sweep(prepared: Any, args: argparse.Namespace) -> int:
    from search.analysis.pareto import load_analysis
    from search.report import terminal as views
    from search.report.live import SweepConsole
    from search.report.page import write_report
    from search.report.sections import recommendation_lines
    from search.run.lease import refuse_if_held
    from search.run.signals import exit_code
    from search.run.sweep import run_sweep
    from search.store.segments import Store

    spec = prepared.spec
    refuse_if_held(prepared.study)  # refused before anything is said of the study (run_sweep checks again)
    _print(views.sweep_start_line(spec, prepared.dataset.source, prepared.resumed))
    console = SweepConsole()  # a live progress bar on a terminal, a line per ended trial otherwise
    try:
        outcome = run_sweep(
            prepared,
            address=args.address,
            num_cpus=args.num_cpus,
            connect_timeout=args.connect_timeout,
            echo=console.echo,
            progress=console.show,
        )
    except StorageFull as full:
        full.then = f"'{views.resume_command(spec)}' continues the study"
        raise
    finally:
        console.close()
    trials = Store(outcome.study).trials()
    _print("\ntrials: " + views.status_counts(trials))
    if len(trials):
        analysis = load_analysis(outcome.study, epochs=False, every_setting=False)[1]
        wide = f"'gainakt-search pareto {spec.name}{views.storage_flag(spec)} --wide'"
        _print(views.front_lines(analysis, views.terminal_width(), wide))
        _print(recommendation_lines(spec, analysis))
    _print(f"study folder: {outcome.study.display()}")
    if len(trials):
        _print(f"report: {write_report(outcome.study).html}")
    if outcome.interrupted:
        _print(views.resume_hint(spec))
    if outcome.stopped_by is not None:
        name = signal.Signals(outcome.stopped_by).name
        print(f"{PROG}: stopped by {name}; what was done is saved", file=sys.stderr)
        return exit_code(outcome.stopped_by)
    failed = views.failed_line(trials, spec)
    if failed:
        print(f"{PROG}: {failed}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from search.report.terminal import status_columns, status_lines
    from search.run.lease import read_lease
    from search.store.segments import Store
    from search.store.study import open_study

    study = open_study(args.storage, args.name)
    lease = read_lease(study)
    spec = study.read_spec()
    store = Store(study)
    trials = store.trials(columns=status_columns(spec))
    store.warn_lacking_epochs(trials)  # from the epoch folder's listing: no epoch file is opened
    _print(status_lines(spec, trials, study.display(), lease))
    return 0


def _add_confirm(commands: argparse._SubParsersAction) -> None:
    confirm = commands.add_parser(
        "confirm",
        help="re-train chosen trials with new seeds and report them on the test split, with intervals",
        description="Re-train the settings of chosen trials of a study with new seeds (the same for every "
        "trial, so differences are paired) and optionally on other validation folds, as Ray Tune trials "
        "with the study's resources; score each model on its validation fold and on the test split, beside "
        "the baselines on the same splits; store one row per (trial, seed, fold) in the study's confirm "
        "table (store/confirm/). Run it again to continue an interrupted confirmation. Ends with the "
        "robust front: means with 95% t intervals over seeds x folds, and the trials no paired interval "
        "tells apart.",
    )
    _add_study_args(confirm)
    _add_list_flag(
        confirm,
        "--trials",
        default=["front"],
        metavar="front|feasible|ID,...",
        help="which trials, comma-separated or the flag repeated: front (the non-dominated ones, default), "
        "feasible (those meeting the targets among them) or trial ids",
    )
    confirm.add_argument(
        "--seeds", type=int, default=5, help="new seeds per trial and fold (default %(default)s)"
    )
    _add_list_flag(
        confirm,
        "--folds",
        item=int,
        default=[],
        metavar="F,...",
        help="validation folds, comma-separated or the flag repeated (default: the two folds after the "
        "sweep's, which it selected its trials on: 1,2 for a sweep on fold 0)",
    )
    confirm.add_argument(
        "--split",
        choices=["test", "valid"],
        default="test",
        help="test (default): score on the validation fold and the test split; valid: the fold only",
    )
    confirm.add_argument(
        "--no-dkt", action="store_true", help="do not train a DKT with the same seeds and folds beside them"
    )
    confirm.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="also a student-level interval per run from N resamples of the students (default 0: none; "
        "the variation between students, which the intervals over seeds leave out)",
    )
    confirm.add_argument("--concurrent", type=int, help="runs at a time (default: the study's)")
    _add_cluster_flags(confirm, wandb=False)
    confirm.set_defaults(handler=_confirm)


def _confirm(args: argparse.Namespace) -> int:
    from search.run.confirm import plan_confirmation, run_confirmation
    from search.store.segments import Store
    from search.store.study import open_study

    study = open_study(args.storage, args.name)
    plan = plan_confirmation(
        study, args.trials, args.seeds, args.folds, args.split, dkt=not args.no_dkt, bootstrap=args.bootstrap
    )
    run_confirmation(
        plan,
        concurrent=args.concurrent,
        address=args.address,
        num_cpus=args.num_cpus,
        connect_timeout=args.connect_timeout,
        echo=_print,
    )
    _print(_confirmed(study, plan.spec.objectives, Store(study).confirm(), plan.splits[-1]))
    return 0


def _confirmed(study: Any, objectives: Any, table: Any, split: str) -> list[str]:
    """`confirmed_lines` of a study's confirm table, with its constraints and what its trials fix."""
    from search.analysis.statistics import source_fixed
    from search.report.terminal import confirmed_lines
    from search.schema import GUARANTEED, TRIAL_KEY
    from search.store.segments import Store

    trials = Store(study).trials(columns=[TRIAL_KEY, GUARANTEED])
    spec = study.read_spec()
    return confirmed_lines(table, objectives, split, spec.constraints, source_fixed(trials))


def _add_pareto(commands: argparse._SubParsersAction) -> None:
    pareto = commands.add_parser(
        "pareto",
        help="the non-dominated trials of a study, from its Parquet store",
        description="Print the non-dominated completed trials (or, with --epoch-level, checkpointed epochs) "
        "of a study for its objectives or those given, with the trials meeting the targets, the hypervolume "
        "and its reference point, and the trials left out for a missing objective. Reads only the Parquet "
        "store.",
    )
    _add_study_args(pareto)
    _add_list_flag(
        pareto,
        "--objectives",
        "--objective",
        metavar="METRIC[:max|min],...",
        help="objectives to rank on, comma-separated or the flag repeated (default: the study's); a bare "
        "metric takes the study's direction",
    )
    pareto.add_argument(
        "--epoch-level", action="store_true", help="every checkpointed epoch of every trial is a candidate"
    )
    pareto.add_argument(
        "--feasible", action="store_true", help="only the candidates that meet every constraint"
    )
    pareto.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="output format (default %(default)s)",
    )
    pareto.add_argument(
        "--wide",
        action="store_true",
        help="every column of the table, however wide (default: what fits the terminal, or 100 columns)",
    )
    pareto.add_argument(
        "--confirmed",
        action="store_true",
        help="the robust front of the study's confirmation runs (gainakt-search confirm) instead",
    )
    pareto.set_defaults(handler=_pareto)


def _recorded_metrics(study: Any) -> tuple[str, ...]:
    """The metrics some trial of the study holds a value of (the simulator's recovery metrics only
    on simulated data); every metric while it has no trial."""
    from gainakt.schema import METRICS
    from search.store.segments import Store

    store = Store(study)
    names = [m for m in METRICS if m in store.schema("trials").names]
    trials = store.trials(columns=names)
    held = tuple(m for m in names if m in trials and trials[m].notna().any())
    return held or METRICS


def _pareto(args: argparse.Namespace) -> int:
    from search.analysis.pareto import load_analysis
    from search.report.terminal import pareto_output, terminal_width
    from search.store.study import open_study

    study = open_study(args.storage, args.name)
    recorded = _recorded_metrics(study) if args.objectives else ()
    objectives = study.read_spec().named_objectives(args.objectives, recorded)
    if args.confirmed:
        from search.analysis.statistics import confirmed_split
        from search.store.segments import Store

        table = Store(study).confirm()
        if not len(table):
            raise UserError(
                f"study {args.name!r} has no confirmation runs (gainakt-search confirm {args.name})"
            )
        _print(_confirmed(study, objectives, table, confirmed_split(table)))
        return 0
    _, analysis = load_analysis(study, objectives, epochs=args.epoch_level, every_setting=False)
    width = None if args.wide else terminal_width()
    _print(pareto_output(analysis, args.epoch_level, args.feasible, args.format, width))
    if args.format == "table":
        from search.report.sections import recommendation_lines

        _print(recommendation_lines(study.read_spec(), analysis))
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="write a study's HTML report and Markdown summary",
        description="Write one self-contained HTML file (opens with no network): the front in 2-D and 3-D, "
        "parallel coordinates, hypervolume over trials, learning curves of the front, a table of the front, "
        "provenance; and a Markdown summary next to it. Reads only the Parquet store.",
    )
    _add_study_args(report)
    report.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="HTML file; the summary goes to FILE with .md (default: STUDY_FOLDER/report.html and report.md)",
    )
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from search.report.page import write_report
    from search.store.study import open_study

    written = write_report(open_study(args.storage, args.name), args.output)
    _print([f"report: {written.html}", f"summary: {written.markdown}"])
    return 0


def _add_doctor(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check a study folder, and with --repair make it resumable",
        description="Check a study folder: its spec, pinned data, lease, every store file, the Optuna "
        "journal, Tune's saved state and the checkpoints its rows name; one OK or FAIL line each, exit "
        "code 1 if any fails. With --repair (refused while a driver holds the study), move unreadable "
        "store files to quarantine/, drop a torn last journal line, and rebuild the trial and epoch rows "
        "the store lacks from each trial's checkpointed metrics_epoch.csv (how a trial ended from the "
        "journal; node, device, timings and error text, which no checkpoint keeps, stay empty), then "
        "check again.",
    )
    _add_study_args(doctor)
    doctor.add_argument("--repair", action="store_true", help="make the safe repairs, then check again")
    doctor.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from search.repair.doctor import examine, repair
    from search.store.study import open_study

    study = open_study(args.storage, args.name)
    if args.repair:
        made = repair(study, echo=_print)
        _print(f"{made} repair(s) made" if made else "nothing to repair")
    findings = examine(study)
    _print([f"{'OK  ' if f.ok else 'FAIL'}  {f.check}: {f.detail}" for f in findings])
    if any(f.repairable and not f.ok for f in findings):
        _print(
            f"'gainakt-search doctor {args.name} --repair' makes the repairs marked FAIL above that it can"
        )
    return 0 if all(f.ok for f in findings) else 1


def _print(text: str | Sequence[str]) -> None:
    print(text if isinstance(text, str) else "\n".join(text), flush=True)


if __name__ == "__main__":
    sys.exit(main())
