"""`gainakt-search`: the command line. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from gainakt.errors import UserError

PROG = "gainakt-search"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args) or 0
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Interpretable knowledge tracing (GainAKT2Exp) and a multi-objective search over its "
        "interpretability-loss weights.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    _add_data(commands)
    return parser


# ---------------------------------------------------------------------------- data


def _add_data(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect and validate datasets", description="Inspect and validate datasets.")
    sub = data.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    check = sub.add_parser(
        "check",
        help="validate a dataset and print its summary",
        description="Read a dataset, validate every row, and print its size, lengths, folds, share of correct "
        "answers and content fingerprint. For the simulator, also the Bayes-optimal AUC (true probabilities "
        "against responses on the validation fold), the ceiling any model can reach.",
    )
    check.add_argument(
        "source",
        metavar="PATH|synthetic[:key=value,...]",
        help="a pyKT dataset folder (train_valid.csv or train_valid_sequences.csv, optional test.csv), one such "
        "CSV file, or the simulator, e.g. synthetic:students=2000,concepts=50,seed=0",
    )
    check.add_argument("--num-concepts", type=int, help="number of concepts; inferred from the data when omitted")
    check.add_argument("--fold", type=int, default=0, help="validation fold (default 0)")
    check.add_argument("--json", action="store_true", help="print the summary as JSON, for scripts")
    check.set_defaults(handler=_data_check)
    data.set_defaults(handler=lambda _: data.print_help() or 2)


def _data_check(args: argparse.Namespace) -> int:
    from gainakt.data import load_dataset

    dataset = load_dataset(args.source, num_concepts=args.num_concepts)
    dataset.split(args.fold)  # an absent validation fold is an error here too
    summary = dataset.summary(fold=args.fold)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    def block(part: dict) -> list[str]:
        return [
            f"  students      {part['students']:,}",
            f"  interactions  {part['interactions']:,}",
            f"  windows       {part['windows']:,} (at most 200 interactions; a trailing window under 3 dropped)",
            f"  length        min {part['length_min']}, median {part['length_median']:g}, "
            f"mean {part['length_mean']:g}, max {part['length_max']}",
            f"  correct       {part['correct_share']:.1%}",
        ]

    folds = ", ".join(f"{fold}: {count:,}" for fold, count in summary["folds"].items())
    lines = [f"{summary['source']}", f"train/valid     {summary['file']}", *block(summary)]
    lines += [f"  folds         {folds} (students)", f"  concepts      {summary['concepts']}"]
    if "test" in summary:
        lines += [f"test            {summary['test']['file']}", *block(summary["test"])]
    lines.append(f"fingerprint     {summary['fingerprint']}")
    if "bayes_auc" in summary:
        lines.append(
            f"Bayes-optimal AUC {summary['bayes_auc']:.4f} (true probabilities, validation fold {summary['bayes_auc_fold']})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
