"""Every bad input is one line on stderr and exit code 2, with no traceback, and writes nothing.

One table of commands, each run in-process against a scratch folder holding a few inputs made
beforehand (spec files, a CSV, existing studies); the folder is compared file by file before
and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gainakt.data import load_dataset
from search.cli import main
from search.spec import SweepSpec
from search.store.study import Study

DATA = "synthetic:students=100,concepts=5,seed=1"
CSV_HEADER = "fold,uid,concepts,responses\n"


@dataclass(frozen=True)
class Bad:
    argv: tuple[str, ...]  # "{tmp}" stands for the scratch folder
    expected: str  # a part of the one line
    files: dict[str, bytes] = field(default_factory=dict)  # made before the command, under {tmp}


def _run_spec(text: str | bytes, expected: str) -> Bad:
    data = text if isinstance(text, bytes) else text.encode()
    return Bad(("run", "{tmp}/spec.toml", "--storage", "{tmp}/st"), expected, {"spec.toml": data})


def _run(*flags: str, expected: str) -> Bad:
    return Bad(("run", "--data", DATA, "--storage", "{tmp}/st", *flags), expected)


# Real data (no simulator, so no ground truth) in pyKT's format: 20 students over 5 folds.
REAL_CSV = CSV_HEADER + "".join(f'{i % 5},s{i},"1,2,1,3","1,0,1,1"\n' for i in range(20))


def _run_real(*flags: str, expected: str) -> Bad:
    return Bad(
        ("run", "--data", "{tmp}/real.csv", "--storage", "{tmp}/st", *flags),
        expected,
        {"real.csv": REAL_CSV.encode()},
    )


def _csv(rows: str, expected: str, *flags: str) -> Bad:
    return Bad(
        ("data", "check", "{tmp}/bad.csv", *flags), expected, {"bad.csv": (CSV_HEADER + rows).encode()}
    )


def _train(*flags: str, expected: str, files: dict[str, bytes] | None = None) -> Bad:
    return Bad(("train", "--data", DATA, "--out", "{tmp}/run", *flags), expected, files or {})


CASES: dict[str, Bad] = {
    # ------------------------------------------------------------------ spec files
    "spec not UTF-8": _run_spec(b'name = "x\xff"\n', "not a UTF-8 text file"),
    "spec not TOML": _run_spec("name = \n", "not valid TOML"),
    "spec missing": Bad(("run", "{tmp}/none.toml", "--storage", "{tmp}/st"), "no such file"),
    "spec is a folder": Bad(("run", "{tmp}", "--storage", "{tmp}/st"), "a folder, not a TOML file"),
    "train not a table": _run_spec("train = 5\n", "[train] must be a table"),
    "negative seed": _run_spec("seed = -5\n", "seed must be from 0 to 4294967295"),
    "seed above 32 bits": _run_spec("seed = 4294967296\n", "seed must be from 0 to 4294967295"),
    "per-trial seeds past 32 bits": _run_spec(
        'seed = 4294967290\nseed_mode = "per-trial"\ntrials = 8\n', "seed + trials - 1"
    ),
    "trials beyond int64": _run_spec("trials = 99999999999999999999\n", "'trials' is out of range"),
    "trials beyond a sane bound": _run_spec("trials = 2000000\n", "trials must be from 1 to 1,000,000"),
    "no concurrency": _run_spec("concurrent = 0\n", "concurrent must be from 1"),
    "infinite cpus": _run_spec("[resources]\ncpus = inf\n", "'cpus' must be a finite number"),
    "seed in [train]": _run_spec("[train]\nseed = 3\n", "training setting 'seed'"),
    "threads in [train]": _run_spec("[train]\nthreads = 2\n", "training setting 'threads'"),
    "unknown setting": _run_spec("colour = 3\n", "unknown setting 'colour'"),
    # ------------------------------------------------------------------ run flags
    "batch size beyond int64": _run(
        "--set", "batch_size=99999999999999999999", expected="'batch_size' is out"
    ),
    "batch size beyond memory": _run("--set", "batch_size=100000", expected="'batch_size' must be at most"),
    "infinite learning rate": _run("--set", "lr=inf", expected="'lr' must be a finite number"),
    "NaN learning rate": _run("--set", "lr=nan", expected="'lr' must be a finite number"),
    "negative learning rate": _run("--set", "lr=-1", expected="'lr' must be > 0"),
    "seed set per run": _run("--set", "seed=3", expected="training setting 'seed'"),
    "device of one GPU": _run("--set", "device=cuda:1", expected="training setting 'device' must be one of"),
    "threads set per run": _run("--set", "threads=4", expected="training setting 'threads'"),
    "no epochs": _run("--set", "epochs=0", expected="'epochs' must be at least 1"),
    "heads not dividing": _run("--set", "model.heads=3", expected="does not divide"),
    "unknown storage scheme": _run("--storage", "foo://bar", expected="pyarrow cannot open it"),
    "storage is a file": Bad(
        ("run", "--data", DATA, "--storage", "{tmp}/afile"), "a file, not a folder", {"afile": b"x"}
    ),
    "infinite threshold": _run("--constraint", "auc >= inf", expected="the threshold must be finite"),
    "a threshold no auc reaches": _run(
        "--constraint", "auc > 2", expected="auc lies in [0, 1], so no trial can meet it"
    ),
    "a rate below zero": _run(
        "--constraint", "neg_gain_rate < 0", expected="neg_gain_rate lies in [0, 1], so no trial can meet it"
    ),
    "a correlation above one": _run(
        "--constraint", "mastery_corr >= 1.5", expected="mastery_corr lies in [-1, 1], so no trial can"
    ),
    "no local CPUs": _run("--num-cpus", "0", expected="--num-cpus: must be at least 1"),
    "CPUs not a number": _run("--num-cpus", "two", expected="'two' is not an integer"),
    "no connect time": _run("--connect-timeout", "0", expected="--connect-timeout must be > 0"),
    "refused address": _run("--address", "127.0.0.1:1", expected="--address 127.0.0.1:1: no Ray cluster"),
    "negative seed flag": _run("--seed", "-1", expected="seed must be from 0"),
    "no trials": _run("--trials", "0", expected="trials must be from 1"),
    "missing data": _run("--data", "/no/such/data", expected="/no/such/data"),
    "unknown objective": _run("--objective", "speed:max", expected="unknown metric 'speed'"),
    "name with a space": _run("--name", "a b", expected="name 'a b'"),
    # ------------------------------------------------------------------ commands on a study
    "status of ../base": Bad(("status", "../base", "--storage", "{tmp}/st"), "name '../base'"),
    "report of ../base": Bad(("report", "../base", "--storage", "{tmp}/st"), "name '../base'"),
    "pareto of a/b": Bad(("pareto", "a/b", "--storage", "{tmp}/st"), "name 'a/b'"),
    "resume of ..": Bad(("resume", "..", "--storage", "{tmp}/st"), "name '..'"),
    "confirm of ../x": Bad(("confirm", "../x", "--storage", "{tmp}/st"), "name '../x'"),
    "report into a folder": Bad(("report", "done", "--storage", "{tmp}/st", "-o", "{tmp}"), "is a folder"),
    "report under a file": Bad(
        ("report", "done", "--storage", "{tmp}/st", "-o", "{tmp}/afile/r.html"),
        "is a file, not a folder",
        {"afile": b"x"},
    ),
    "broken spec.json": Bad(("status", "broken", "--storage", "{tmp}/st"), "not a readable spec"),
    "resume on changed data": Bad(
        ("resume", "moved", "--storage", "{tmp}/st"),
        "changed since study 'moved' started (fingerprint 0000000000000000, now ",
    ),
    "confirm with no seeds": Bad(
        ("confirm", "done", "--storage", "{tmp}/st", "--seeds", "0"), "--seeds must be"
    ),
    "confirm on a missing fold": Bad(
        ("confirm", "done", "--storage", "{tmp}/st", "--folds", "9"), "--folds 9: the data have folds 0-4"
    ),
    "eval with one resample": Bad(("eval", "{tmp}", "--bootstrap", "1"), "--bootstrap 1"),
    # ------------------------------------------------------------------ data
    "concept id beyond int64": _csv(f"0,a,{10**30},1\n", f"{10**30} at position 1 is out of range"),
    "concept id beyond memory": _csv(f"0,a,{10**9},1\n", "above the limit"),
    "concept count beyond memory": _csv(
        "0,a,1,1\n", "num_concepts must be from 1", "--num-concepts", "1000000000"
    ),
    "fold beyond int64": _csv(f"{10**30},a,1,1\n", "field 'fold'"),
    # ------------------------------------------------------------------ metrics
    "objective with a misspelt metric": _run(
        "--objectives",
        "acu:max",
        expected="unknown metric 'acu' (did you mean auc or acc? known: val_loss, auc,",
    ),
    "objective needing the simulator on real data": _run_real(
        "--objectives",
        "mastery_recovery:max",
        expected="objective 'mastery_recovery:max': mastery_recovery needs the simulator's ground truth, "
        "which data",
    ),
    "constraint needing the simulator on real data": _run_real(
        "--constraint",
        "gain_recovery > 0.1",
        expected="constraint 'gain_recovery > 0.1': gain_recovery needs the simulator's ground truth",
    ),
    # ------------------------------------------------------------------ train
    "train with infinite lr": _train("--set", "lr=inf", expected="'lr' must be a finite number"),
    "train with a negative seed": _train("--set", "seed=-1", expected="'seed' must be >= 0"),
    "train with a seed above 32 bits": _train("--set", "seed=4294967296", expected="'seed' must be at most"),
    "train config not UTF-8": _train(
        "--config", "{tmp}/c.toml", expected="not a UTF-8 text file", files={"c.toml": b"lr = \xff\n"}
    ),
}


def _existing_studies(storage: Path) -> None:
    """`done` (a study on DATA, pinned to it), `moved` (pinned to other data) and `broken` (a garbled
    spec.json): what the study commands of the table read."""
    fingerprint = load_dataset(DATA).fingerprint
    for name, pin in (("done", fingerprint), ("moved", "0" * 16)):
        study = Study(str(storage), name)
        study.write_spec(SweepSpec(name=name, data=DATA, storage=str(storage)))
        study.write_data_pin(DATA, pin)
    broken = storage / "broken"
    broken.mkdir()
    (broken / "spec.json").write_text("{not json")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    bad = CASES[case]
    _existing_studies(tmp_path / "st")
    for name, content in bad.files.items():
        (tmp_path / name).write_bytes(content)
    before = _snapshot(tmp_path)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in bad.argv]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert bad.expected in err, err
    assert _snapshot(tmp_path) == before, "a refused command wrote files"


@pytest.mark.parametrize(
    "objective, expected",
    [
        (
            "acu",
            "objective 'acu': unknown metric 'acu' (did you mean auc or acc? this study's metrics: val_loss,",
        ),
        (
            "mastery_recovery_within:max",
            "no trial of this study holds mastery_recovery_within (this study's metrics: val_loss,",
        ),
    ],
    ids=["misspelt", "not recorded by the study"],
)
def test_pareto_names_only_the_metrics_its_study_recorded(objective, expected, tmp_path, capsys):
    from study_helpers import fake_study

    fake_study(tmp_path, "seen", 4)  # no mastery_recovery_within: fake trials do not record it
    assert main(["pareto", "seen", "--storage", str(tmp_path), "--objectives", objective]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert "mastery_recovery_within" not in err.partition("this study's metrics:")[2]
