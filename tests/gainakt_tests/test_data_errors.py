"""Bad input: one DataError line naming the file, the line and the field; the CLI exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gainakt.data import load_dataset
from search.cli import main

GOOD = ['0,a,"1,2,3,4","0,1,1,0"', '1,b,"2,2,3","1,1,0"']
HEADER = "fold,uid,concepts,responses"


def write(folder: Path, lines: list[str], name: str = "train_valid.csv") -> Path:
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def run_cli(capsys, *args: str) -> str:
    code = main(["data", "check", *args])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("gainakt-search: error: ")
    return lines[0]


CASES = {
    "missing column": (["fold,uid,concepts", '0,a,"1,2,3"'], 1, "responses", "missing column"),
    "non-integer token": (
        [HEADER, GOOD[0], '1,b,"2,x,3","1,1,0"'],
        3,
        "concepts",
        "token 'x' at position 2 is not an integer",
    ),
    "multi-concept token": ([HEADER, '0,a,"1,2_5,3","1,1,0"'], 2, "concepts", "token '2_5' at position 2"),
    "response outside 0/1": (
        [HEADER, GOOD[0], GOOD[1], '1,c,"2,2,3","1,2,0"'],
        4,
        "responses",
        "value 2 at position 2 is not 0 or 1",
    ),
    "padding in per-student file": (
        [HEADER, '0,a,"1,2,3,4","0,1,1,-1"'],
        2,
        "responses",
        "value -1 at position 4",
    ),
    "different lengths": (
        [HEADER, '0,a,"1,2,3,4","0,1,1"'],
        2,
        "responses",
        "3 entries, but 'concepts' has 4",
    ),
    "negative concept": (
        [HEADER, GOOD[0], '1,b,"2,-2,3","1,1,0"'],
        3,
        "concepts",
        "negative concept id -2 at position 2",
    ),
    "non-integer fold": ([HEADER, 'x,a,"1,2,3","0,1,1"'], 2, "fold", "'x' is not an integer"),
    "empty field": ([HEADER, '0,a,"","0,1,1"'], 2, "concepts", "empty"),
    "extra field": ([HEADER, '0,a,"1,2,3","0,1,1",9'], 2, None, "5 fields, but the header has 4"),
}


@pytest.mark.parametrize("kind", CASES)
def test_bad_row_names_file_line_and_field(kind: str, tmp_path: Path, capsys) -> None:
    lines, line, field, phrase = CASES[kind]
    path = write(tmp_path, lines)
    message = run_cli(capsys, str(tmp_path))
    assert f"{path} line {line}" in message
    if field:
        assert f"field '{field}'" in message
    assert phrase in message


def test_concept_out_of_range_when_number_is_given(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, [HEADER, GOOD[0], '1,b,"2,7,3","1,1,0"'])
    message = run_cli(capsys, str(path), "--num-concepts", "5")
    assert (
        f"{path} line 3, field 'concepts': concept id 7 at position 2 is out of range (num_concepts=5)"
        in message
    )
    assert main(["data", "check", str(path), "--num-concepts", "8"]) == 0


def test_empty_file_and_header_only(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, [])
    assert f"{path}: empty file" in run_cli(capsys, str(path))
    write(tmp_path, [HEADER])
    assert f"{path}: empty file (a header but no rows)" in run_cli(capsys, str(path))


def test_no_student_left_after_length_rule(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, [HEADER, '0,a,"1,2","0,1"', '1,b,"3","1"'])
    assert f"{path}: no student left with at least 3 interactions" in run_cli(capsys, str(tmp_path))


def test_validation_fold_absent(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, [HEADER, *GOOD])
    message = run_cli(capsys, str(tmp_path), "--fold", "3")
    assert f"{path}, field 'fold': validation fold 3 is absent (folds present: 0, 1)" in message


def test_missing_path_and_folder_without_data(tmp_path: Path, capsys) -> None:
    assert "no such dataset file or folder" in run_cli(capsys, str(tmp_path / "nowhere"))
    assert "neither train_valid.csv nor train_valid_sequences.csv" in run_cli(capsys, str(tmp_path))


def test_windowed_file_allows_trailing_padding_only(tmp_path: Path, capsys) -> None:
    header = "fold,uid,concepts,responses,selectmasks"
    good = '0,a,"1,2,3,-1,-1","0,1,1,-1,-1","1,1,1,-1,-1"'
    write(tmp_path, [header, good, good.replace("0,a", "1,b")], "train_valid_sequences.csv")
    data = load_dataset(tmp_path)
    assert data.train_valid.lengths.tolist() == [3, 3]
    path = write(
        tmp_path,
        [header, good, '1,b,"2,-1,3,-1,-1","1,-1,0,-1,-1","1,1,1,-1,-1"'],
        "train_valid_sequences.csv",
    )
    assert f"{path} line 3, field 'concepts': real entry 3 at position 3 after padding -1" in run_cli(
        capsys, str(tmp_path)
    )
    write(
        tmp_path,
        [header, good, '1,b,"2,4,3,-1,-1","1,-1,0,-1,-1","1,1,1,-1,-1"'],
        "train_valid_sequences.csv",
    )
    assert (
        "line 3, field 'responses': value -1 at position 2 is not 0 or 1 (-1 only as trailing padding)"
        in run_cli(capsys, str(tmp_path))
    )


@pytest.mark.parametrize("args", [["data", "check", "{bad}"], ["data", "check", "synthetic:students=x"]])
def test_entry_point_exits_2_without_traceback(args: list[str], tmp_path: Path) -> None:
    bad = write(tmp_path, [HEADER, '0,a,"1,2,3","0,1,7"'])
    argv = [a.replace("{bad}", str(bad)) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "search.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_byte_order_mark_and_a_student_longer_than_the_csv_field_limit_are_accepted(tmp_path):
    """Excel writes a UTF-8 BOM before the header; csv's default field limit (131,072 characters)
    would cut off a student with more than about 65,000 answers."""
    long = 70_000
    lines = [HEADER, f'0,long,"{",".join(["1"] * long)}","{",".join(["0", "1"] * (long // 2))}"', GOOD[1]]
    path = tmp_path / "train_valid.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(line + "\n" for line in lines).encode())
    dataset = load_dataset(path)
    assert dataset.train_valid.uids == ("long", "b")
    assert int(dataset.train_valid.lengths.sum()) == long + 3


def test_a_simulation_this_machine_cannot_hold_is_refused_with_its_size_before_any_allocation(capsys) -> None:
    """`synthetic:concepts=1000000000` was killed by the kernel at 23.6 GB; now refused at once."""
    from gainakt.memory import available_bytes
    from gainakt.synthetic import SyntheticConfig

    config = SyntheticConfig.parse("synthetic:concepts=1000000000")
    assert config.memory_estimate() > 1e14  # 2,500 students x 1e9 concepts: hundreds of TB
    assert available_bytes() is not None
    assert main(["data", "check", config.spec]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "needs about " in line and " TB (2,500 students, 1,000,000,000 concepts)" in line
    assert "this machine has available" in line
    # the default simulator is far from any limit: 21 MB, as the module's docstring has it (18 MB)
    assert 1e7 < SyntheticConfig().memory_estimate() < 5e7
