"""pyKT's dataset files, parsed and validated.

A dataset folder in pyKT's layout holds `train_valid.csv` (one row per student:
`fold,uid,concepts,responses`, optionally `questions,timestamps`) or
`train_valid_sequences.csv` (one row per window, padded with -1, with
`selectmasks`), and optionally `test.csv` or `test_sequences.csv`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import MAX_INT
from .errors import DataError
from .sequences import MAX_CONCEPTS, MIN_WINDOW, PAD, Dataset, Sequences

_FIELD_LIMIT = 2**31 - 1  # csv's default (131,072 characters) cuts off a student past ~65k answers

REQUIRED_COLUMNS = ("fold", "uid", "concepts", "responses")
OPTIONAL_LIST_COLUMNS = ("questions", "timestamps", "selectmasks")
_INT_LIST = re.compile(r"\s*-?\d+\s*(?:,\s*-?\d+\s*)*")
_INT = re.compile(r"\s*-?\d+\s*")


def read_pykt(source: str, num_concepts: int | None = None) -> Dataset:
    """A pyKT dataset folder or file, validated; concept ids counted from the data unless given."""
    if num_concepts is not None and not 1 <= num_concepts <= MAX_CONCEPTS:
        raise DataError(f"{source}: num_concepts must be from 1 to {MAX_CONCEPTS:,}, got {num_concepts}")
    train_file, test_file = _locate(Path(source))
    train = _read_csv(train_file, num_concepts, split="train_valid")
    if len(train.windows()) == 0:
        raise DataError(f"{train_file}: no student left with at least {MIN_WINDOW} interactions")
    test = _read_csv(test_file, num_concepts, split="test") if test_file else None
    if num_concepts is None:
        num_concepts = 1 + max(int(s.concepts.max(initial=0)) for s in (train, test) if s is not None)
    return Dataset(source, num_concepts, train, str(train_file), test, str(test_file) if test_file else None)


def _locate(path: Path) -> tuple[Path, Path | None]:
    if path.is_file():
        return path, None
    if not path.is_dir():
        raise DataError(f"{path}: no such dataset file or folder")
    train = _first_existing(path, "train_valid.csv", "train_valid_sequences.csv")
    if train is None:
        raise DataError(f"{path}: neither train_valid.csv nor train_valid_sequences.csv is in this folder")
    return train, _first_existing(path, "test.csv", "test_sequences.csv")


def _first_existing(folder: Path, *names: str) -> Path | None:
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _read_csv(path: Path, num_concepts: int | None, split: str) -> Sequences:
    """Parse and validate one pyKT CSV; a `*_sequences.csv` is read as padded windows."""
    windowed = path.name.endswith("_sequences.csv")
    required = [c for c in REQUIRED_COLUMNS if not (split == "test" and c == "fold")]
    parser = _RowParser(path, windowed, num_concepts)
    uids: dict[str, int] = {}
    concepts, responses, folds, students = [], [], [], []
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # -sig: a byte-order mark is skipped
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None or not any(field.strip() for field in header):
                raise DataError(f"{path}: empty file")
            columns = {name.strip(): i for i, name in enumerate(header)}
            for name in required:
                if name not in columns:
                    raise DataError(
                        f"{path} line 1, field '{name}': missing column (found: {', '.join(columns)})"
                    )
            for row in reader:
                if not row or not any(field.strip() for field in row):
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise DataError(
                        f"{path} line {line}: {len(row)} fields, but the header has {len(header)}"
                    )
                c, r = parser.interactions(row, columns, line)
                fold = parser.integer(row[columns["fold"]], line, "fold") if "fold" in columns else -1
                uid = row[columns["uid"]].strip()
                if not uid:
                    raise DataError(f"{path} line {line}, field 'uid': empty")
                concepts.append(c)
                responses.append(r)
                folds.append(fold)
                students.append(uids.setdefault(uid, len(uids)))
        except UnicodeDecodeError:
            raise DataError(f"{path}: not a UTF-8 text file") from None
        except csv.Error as err:
            raise DataError(f"{path} line {reader.line_num}: malformed CSV ({err})") from None
    if not concepts:
        raise DataError(f"{path}: empty file (a header but no rows)")
    lengths = np.array([len(c) for c in concepts], dtype=np.int64)
    return Sequences(
        concepts=np.concatenate(concepts),
        responses=np.concatenate(responses),
        starts=np.cumsum(lengths) - lengths,
        lengths=lengths,
        folds=np.array(folds, dtype=np.int64),
        students=np.array(students, dtype=np.int64),
        uids=tuple(uids),
    )


@dataclass(frozen=True)
class _RowParser:
    """Turns one CSV row into validated concept and response arrays, or a DataError naming line and field."""

    path: Path
    windowed: bool
    num_concepts: int | None

    def fail(self, line: int, field: str, message: str) -> DataError:
        return DataError(f"{self.path} line {line}, field '{field}': {message}")

    def integer(self, text: str, line: int, field: str) -> int:
        if not _INT.fullmatch(text):
            raise self.fail(line, field, f"{text.strip()!r} is not an integer")
        if abs(value := int(text)) > MAX_INT:
            raise self.fail(line, field, f"{value} is out of range")
        return value

    def int_list(self, text: str, line: int, field: str) -> np.ndarray:
        if _INT_LIST.fullmatch(text):
            tokens = text.split(",")
            try:
                return np.array(tokens, dtype=np.int64)
            except OverflowError:
                k, token = next((k, t) for k, t in enumerate(tokens) if abs(int(t)) > MAX_INT)
                raise self.fail(line, field, f"{token.strip()} at position {k + 1} is out of range") from None
        if not text.strip():
            raise self.fail(line, field, "empty")
        tokens = text.split(",")
        k, token = next((k, t) for k, t in enumerate(tokens) if not _INT.fullmatch(t))
        raise self.fail(line, field, f"token {token.strip()!r} at position {k + 1} is not an integer")

    def interactions(
        self, row: list[str], columns: dict[str, int], line: int
    ) -> tuple[np.ndarray, np.ndarray]:
        concepts = self.int_list(row[columns["concepts"]], line, "concepts")
        responses = self.int_list(row[columns["responses"]], line, "responses")
        if len(responses) != len(concepts):
            raise self.fail(
                line, "responses", f"{len(responses)} entries, but 'concepts' has {len(concepts)}"
            )
        for name in OPTIONAL_LIST_COLUMNS:
            if name in columns and row[columns[name]].strip():
                extra = self.int_list(row[columns[name]], line, name)
                if len(extra) != len(concepts):
                    raise self.fail(line, name, f"{len(extra)} entries, but 'concepts' has {len(concepts)}")
        real = len(concepts)
        if self.windowed:
            real = self._padding_start(concepts, responses, line)
            concepts, responses = concepts[:real], responses[:real]
        self._check_values(concepts, responses, line)
        return concepts, responses

    def _padding_start(self, concepts: np.ndarray, responses: np.ndarray, line: int) -> int:
        """Length of the real prefix of a padded window; padding must be trailing and in both fields."""
        pad = concepts == PAD
        real = int(np.argmax(pad)) if pad.any() else len(concepts)
        if pad[real:].size and not pad[real:].all():
            k = real + int(np.argmin(pad[real:]))
            raise self.fail(
                line, "concepts", f"real entry {concepts[k]} at position {k + 1} after padding -1"
            )
        if (responses[real:] != PAD).any():
            k = real + int(np.argmax(responses[real:] != PAD))
            raise self.fail(
                line, "responses", f"value {responses[k]} at position {k + 1} where concepts are padding"
            )
        return real

    def _check_values(self, concepts: np.ndarray, responses: np.ndarray, line: int) -> None:
        bad = (responses != 0) & (responses != 1)
        if bad.any():
            k = int(np.argmax(bad))
            allowed = "0 or 1 (-1 only as trailing padding)" if self.windowed else "0 or 1"
            raise self.fail(line, "responses", f"value {responses[k]} at position {k + 1} is not {allowed}")
        if (concepts < 0).any():
            k = int(np.argmax(concepts < 0))
            raise self.fail(line, "concepts", f"negative concept id {concepts[k]} at position {k + 1}")
        if (concepts >= MAX_CONCEPTS).any():
            k = int(np.argmax(concepts >= MAX_CONCEPTS))
            raise self.fail(
                line,
                "concepts",
                f"concept id {concepts[k]} at position {k + 1} is above the limit of {MAX_CONCEPTS - 1:,} "
                "(the model's per-concept tensors would not fit in memory; renumber the concepts from 0)",
            )
        if self.num_concepts is not None and (concepts >= self.num_concepts).any():
            k = int(np.argmax(concepts >= self.num_concepts))
            raise self.fail(
                line,
                "concepts",
                f"concept id {concepts[k]} at position {k + 1} is out of range "
                f"(num_concepts={self.num_concepts})",
            )
