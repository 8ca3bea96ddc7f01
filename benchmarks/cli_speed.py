"""Wall time of the commands that read a finished study, each a fresh process as a user runs it.

Prints the median of `--repeats` runs of `status`, `pareto` and `report` (targets: status and
pareto under 1.5 s on two cores) on a finished study: the one given, or a simulated one of
`--trials` trials written to a temporary folder.

    .venv/bin/python benchmarks/cli_speed.py [--storage studies --name assist2015] [--trials 24] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from fake_study import fake_study

TARGETS = {"status": 1.5, "pareto": 1.5}


def timed(argv: list[str], repeats: int) -> float:
    """Median seconds of `gainakt-search ARGV` from process start to exit."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "search.cli", *argv], check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="folder holding a finished study (default: a simulated one)")
    parser.add_argument("--name", default="speed", help="its name")
    parser.add_argument("--trials", type=int, default=24, help="trials of the simulated study (default 24)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (default 5)")
    args = parser.parse_args(argv)
    temporary = None if args.storage else tempfile.mkdtemp(prefix="cli-speed-")
    storage = args.storage or temporary
    try:
        if temporary:
            fake_study(temporary, args.name, trials=args.trials)
        print(f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"# study {storage}/{args.name}; median of {args.repeats} fresh processes")
        failed = False
        for command in ("status", "pareto", "report"):
            extra = (
                ["-o", f"{temporary or tempfile.gettempdir()}/speed-report.html"]
                if command == "report"
                else []
            )
            seconds = timed([command, args.name, "--storage", storage, *extra], args.repeats)
            target = TARGETS.get(command)
            verdict = "" if target is None else (" PASS" if seconds < target else " FAIL")
            failed |= verdict == " FAIL"
            limit = f" (target < {target} s)" if target else ""
            print(f"{command:7s} {seconds:6.2f} s{limit}{verdict}")
        print(f"command: {' '.join([sys.executable, *sys.argv])}")
        return 1 if failed else 0
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
