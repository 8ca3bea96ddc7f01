"""The commands that only read a study stay light: no torch or Ray, plain JSON, flags that spare NAME."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from study_helpers import fake_study

from search.cli import main

PROBE = """
import sys
from search.cli import main
code = main({argv!r})
heavy = [m for m in ("torch", "ray") if m in sys.modules]
print("HEAVY", ",".join(heavy) or "none")
sys.exit(code)
"""


@pytest.mark.parametrize("command", ["status", "pareto", "report"])
def test_reading_commands_import_neither_torch_nor_ray(tmp_path, command):
    fake_study(tmp_path, "light", trials=6)
    argv = [command, "light", "--storage", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY none"


def test_objectives_take_a_comma_list_or_repeats_and_leave_the_study_name_alone(tmp_path, capsys):
    fake_study(tmp_path, "flags", trials=6)
    assert main(["pareto", "--objectives", "auc,mastery_corr", "flags", "--storage", str(tmp_path)]) == 0
    comma = capsys.readouterr().out
    assert "non-dominated trials and lookups (auc:max, mastery_corr:max):" in comma
    argv = [
        "pareto",
        "--objective",
        "auc",
        "--objective",
        "mastery_corr",
        "flags",
        "--storage",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out == comma
    with pytest.raises(SystemExit) as stop:
        main(["pareto", "--objectives", ",", "flags", "--storage", str(tmp_path)])
    assert stop.value.code == 2 and "--objectives" in capsys.readouterr().err


def test_pareto_json_keeps_paths_plain(tmp_path, capsys):
    study = fake_study(tmp_path, "plain", trials=6)
    assert main(["pareto", "plain", "--storage", str(tmp_path), "--format", "json"]) == 0
    text = capsys.readouterr().out
    assert "\\/" not in text
    rows = json.loads(text)
    assert rows and all(row["checkpoint"].startswith(f"{study.root}/tune/") for row in rows)


def test_version_prints_the_package_version(capsys):
    from gainakt import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"gainakt-search {__version__}"


@pytest.mark.parametrize("command", ["status", "pareto"])
def test_output_into_a_closed_pipe_ends_quietly_with_sigpipes_code(tmp_path, command):
    """`gainakt-search status NAME | head -1`: the reader is gone before the output is written."""
    import os

    fake_study(tmp_path, "piped", trials=6)
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write into the pipe now fails (EPIPE)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "search.cli", command, "piped", "--storage", str(tmp_path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""  # no traceback, no "Exception ignored" at exit


def test_run_takes_objectives_as_pareto_does_and_a_bare_metric_takes_its_better_direction():
    from search.cli import _spec_from_args, build_parser

    def objectives(*flags: str) -> list[str]:
        return [str(o) for o in _spec_from_args(build_parser().parse_args(["run", *flags])).objectives]

    expected = ["auc:max", "neg_gain_rate:min", "mastery_corr:max"]
    assert objectives("--objectives", "auc,neg_gain_rate,mastery_corr:max") == expected
    assert objectives("--objective", "auc", "--objective", "neg_gain_rate:min,mastery_corr") == expected


def test_the_front_table_fits_the_terminal_and_wide_shows_every_column(tmp_path, capsys, monkeypatch):
    fake_study(tmp_path, "narrow", trials=12)
    argv = ["pareto", "narrow", "--storage", str(tmp_path)]
    monkeypatch.setenv("COLUMNS", "80")
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    [note] = [i for i, line in enumerate(lines) if " columns left out to fit 80 characters; " in line]
    assert lines[note].endswith("; --wide shows them)")
    left_out = int(lines[note].removeprefix("(").split()[0])
    table = lines[1:note]
    assert len(table) >= 2 and all(len(line) <= 80 for line in table)
    assert table[0].split()[:4] == ["trial_id", "auc", "mastery_corr", "neg_gain_rate"]  # objectives kept
    assert main([*argv, "--wide"]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert not any(" columns left out " in line for line in wide)
    assert max(len(line) for line in wide[1 : 1 + len(table)]) > 80
    assert len(wide[1].split()) == len(table[0].split()) + left_out  # every column, the left-out ones too
