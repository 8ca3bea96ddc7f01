"""Knowledge-tracing data: pyKT files, 200-long windows, fold splits and padded batches.

A dataset folder in pyKT's layout holds `train_valid.csv` (one row per student:
`fold,uid,concepts,responses`, optionally `questions,timestamps`) or
`train_valid_sequences.csv` (one row per window, padded with -1, with
`selectmasks`), and optionally `test.csv` or `test_sequences.csv`.
The source `synthetic[:key=value,...]` names the built-in simulator instead.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .config import MAX_INT
from .errors import DataError

MAX_WINDOW = 200  # pyKT's maxlen
MIN_WINDOW = 3  # pyKT's min_seq_len: shorter trailing windows are dropped
PAD = -1
# Concept ids must lie below this. The model keeps a [batch, window, concepts] float mastery tensor
# (and its gradient) per step: at 32 x 200 x 100,000 that is 2.6 GB each, the most a 24 GB machine
# trains; an id of 10**9 would ask for terabytes.
MAX_CONCEPTS = 100_000
_FIELD_LIMIT = 2**31 - 1  # csv's default (131,072 characters) cuts off a student past ~65k answers

Padding = Literal["bucketed", "fixed"]
PADDINGS: tuple[Padding, ...] = ("bucketed", "fixed")

REQUIRED_COLUMNS = ("fold", "uid", "concepts", "responses")
OPTIONAL_LIST_COLUMNS = ("questions", "timestamps", "selectmasks")
_INT_LIST = re.compile(r"\s*-?\d+\s*(?:,\s*-?\d+\s*)*")
_INT = re.compile(r"\s*-?\d+\s*")


@dataclass(frozen=True)
class Sequences:
    """Interaction sequences over shared flat arrays.

    Sequence i is positions `starts[i] : starts[i] + lengths[i]` of the flat arrays,
    so cutting students into windows copies no interaction.
    """

    concepts: np.ndarray  # int64 [N]
    responses: np.ndarray  # int64 [N], 0 or 1
    starts: np.ndarray  # int64 [S]
    lengths: np.ndarray  # int64 [S]
    folds: np.ndarray  # int64 [S]
    students: np.ndarray  # int64 [S], index into uids
    uids: tuple[str, ...]
    true_mastery: np.ndarray | None = (
        None  # float64 [N], simulator only: mastery of the answered concept before answering
    )
    true_prob: np.ndarray | None = None  # float64 [N], simulator only: probability of a correct answer
    # simulator only, float64 [N]: rise of the answered concept's true mastery caused by the interaction
    true_gain: np.ndarray | None = None
    # simulator only, float32 [N, C]: true mastery of every concept before the interaction
    true_mastery_all: np.ndarray | None = None
    # simulator only, int64 [N]: second concept of a two-concept item, -1 for a one-concept item
    true_second_concept: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def num_interactions(self) -> int:
        return int(self.lengths.sum())

    def positions(self) -> np.ndarray:
        """Flat indices of every interaction, sequence by sequence."""
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        ends = np.cumsum(self.lengths)
        return np.arange(ends[-1]) - np.repeat(ends - self.lengths - self.starts, self.lengths)

    def student_lengths(self) -> np.ndarray:
        """Interactions per student (windows of one student added up)."""
        per_uid = np.bincount(self.students, weights=self.lengths, minlength=len(self.uids))
        return per_uid[np.unique(self.students)].astype(np.int64)

    def subset(self, keep: np.ndarray) -> Sequences:
        """The sequences where the boolean mask `keep` is true."""
        return replace(
            self,
            starts=self.starts[keep],
            lengths=self.lengths[keep],
            folds=self.folds[keep],
            students=self.students[keep],
        )

    def windows(self, max_len: int = MAX_WINDOW, min_len: int = MIN_WINDOW) -> Sequences:
        """Consecutive windows of at most `max_len`; a trailing window shorter than `min_len` is dropped."""
        counts = -(-self.lengths // max_len)  # ceil
        seq = np.repeat(np.arange(len(self)), counts)
        first = np.cumsum(counts) - counts
        index_in_seq = np.arange(counts.sum()) - np.repeat(first, counts)
        offset = index_in_seq * max_len
        lengths = np.minimum(max_len, self.lengths[seq] - offset)
        keep = lengths >= min_len
        seq = seq[keep]
        return replace(
            self,
            starts=self.starts[seq] + offset[keep],
            lengths=lengths[keep],
            folds=self.folds[seq],
            students=self.students[seq],
        )

    def fingerprint(self) -> str:
        """SHA-256 over folds, lengths, concepts and responses, in order."""
        digest = hashlib.sha256()
        pos = self.positions()
        for array in (self.folds, self.lengths, self.concepts[pos], self.responses[pos]):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class Dataset:
    """A knowledge-tracing dataset: students for training and validation, and an optional test split."""

    source: str  # as the user named it
    num_concepts: int
    train_valid: Sequences  # one sequence per row of the file (a student, or a window for *_sequences.csv)
    train_valid_file: str
    test: Sequences | None = None
    test_file: str | None = None

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"concepts={self.num_concepts}".encode())
        digest.update(self.train_valid.fingerprint().encode())
        if self.test is not None:
            digest.update(self.test.fingerprint().encode())
        return digest.hexdigest()[:16]

    @property
    def is_synthetic(self) -> bool:
        return self.train_valid.true_prob is not None

    def split(self, fold: int = 0) -> tuple[Sequences, Sequences]:
        """Training windows (every other fold) and validation windows (`fold`)."""
        present = np.unique(self.train_valid.folds)
        if fold not in present:
            raise DataError(
                f"{self.train_valid_file}, field 'fold': validation fold {fold} is absent "
                f"(folds present: {', '.join(map(str, present))})"
            )
        windows = self.train_valid.windows()
        return windows.subset(windows.folds != fold), windows.subset(windows.folds == fold)

    def test_windows(self) -> Sequences:
        if self.test is None:
            raise DataError(f"{self.source}: no test split (test.csv or test_sequences.csv)")
        return self.test.windows()

    def summary(self, fold: int = 0) -> dict:
        """Figures for `data check`: sizes, lengths, folds, correct share, fingerprint."""
        out = {"source": self.source, "file": self.train_valid_file, **_describe(self.train_valid)}
        out["concepts"] = self.num_concepts
        out["folds"] = {
            int(f): int(n) for f, n in zip(*np.unique(self.train_valid.folds, return_counts=True))
        }
        out["fingerprint"] = self.fingerprint
        if self.test is not None:
            out["test"] = {"file": self.test_file, **_describe(self.test)}
        if self.is_synthetic:
            from .metrics import roc_auc

            _, valid = self.split(fold)
            targets = _target_positions(valid)
            assert valid.true_prob is not None  # simulated data keeps the true probabilities
            out["bayes_auc"] = roc_auc(valid.responses[targets], valid.true_prob[targets])
            out["bayes_auc_fold"] = fold
        return out


def _describe(seqs: Sequences) -> dict:
    lengths = seqs.student_lengths()
    pos = seqs.positions()
    return {
        "students": int(len(lengths)),
        "interactions": seqs.num_interactions,
        "windows": len(seqs.windows()),
        "length_min": int(lengths.min()),
        "length_median": float(np.median(lengths)),
        "length_mean": round(float(lengths.mean()), 2),
        "length_max": int(lengths.max()),
        "correct_share": round(float(seqs.responses[pos].mean()), 4),
    }


def _target_positions(windows: Sequences) -> np.ndarray:
    """Flat indices of the interactions a model predicts: every one but the first of each window."""
    return replace(windows, starts=windows.starts + 1, lengths=windows.lengths - 1).positions()


# ---------------------------------------------------------------------------- reading


def load_dataset(source: str | Path, num_concepts: int | None = None) -> Dataset:
    """Read a pyKT dataset folder or file, or simulate `synthetic[:key=value,...]`."""
    source = str(source)
    if source == "synthetic" or source.startswith("synthetic:"):
        from .synthetic import SyntheticConfig, simulate

        return simulate(SyntheticConfig.parse(source), num_concepts=num_concepts)
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


# ---------------------------------------------------------------------------- batching


@dataclass(frozen=True)
class Batch:
    """One padded batch in pyKT's shift convention: inputs at t, targets at t+1.

    T is the longest window in the batch minus one. Padded entries hold 0 and are
    False in `mask`; only masked-in positions count anywhere.
    """

    concepts: torch.Tensor  # long [B, T], c[t]
    responses: torch.Tensor  # long [B, T], r[t]
    next_concepts: torch.Tensor  # long [B, T], c[t+1]
    next_responses: torch.Tensor  # long [B, T], r[t+1]
    mask: torch.Tensor  # bool [B, T], True where t+1 is a real interaction
    students: torch.Tensor  # long [B], student index of each window
    windows: torch.Tensor  # long [B], index of each window in its split
    # simulator only (None elsewhere): the truth the recovery metrics compare the model with
    next_true_mastery: torch.Tensor | None = None  # float [B, T], of c[t+1] before answering it
    true_gain: torch.Tensor | None = None  # float [B, T], rise of c[t]'s true mastery caused by step t
    next_true_mastery_all: torch.Tensor | None = None  # float [B, T, C], every concept's before step t+1

    @property
    def num_real(self) -> int:
        return int(self.mask.sum())

    def to(self, device: torch.device | str) -> Batch:
        moved = {
            name: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for name, value in vars(self).items()
        }
        return Batch(**moved)


@dataclass(frozen=True)
class BatchPlan:
    """How the windows of a split are grouped into batches.

    `bucketed` sorts windows by length (ties broken at random) so each batch pads
    only to its own longest window; `fixed` pads every window to `max_len`, as pyKT
    does. With `shuffle`, each epoch draws its order from a generator seeded by
    (seed, epoch), so a resumed run sees the same batches.
    """

    windows: Sequences
    batch_size: int
    padding: Padding = "bucketed"
    shuffle: bool = True
    seed: int = 0
    max_len: int = MAX_WINDOW
    # Where batches are built: "cpu" (from the numpy arrays, then copied to the model's device),
    # or a device holding the whole encoded split (`on_device`), which builds them there.
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    def __len__(self) -> int:
        return -(-len(self.windows) // self.batch_size)

    def groups(self, epoch: int = 0) -> list[np.ndarray]:
        """Window indices of each batch, in the order the epoch visits them."""
        n = len(self.windows)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.padding == "bucketed":
            order = order[np.argsort(self.windows.lengths[order], kind="stable")]
        groups = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.shuffle and self.padding == "bucketed":
            groups = [groups[k] for k in rng.permutation(len(groups))]
        return groups

    def padded_length(self, group: np.ndarray) -> int:
        return self.max_len if self.padding == "fixed" else int(self.windows.lengths[group].max())

    def padding_share(self, epoch: int = 0) -> float:
        """Padded prediction positions over all prediction positions in an epoch."""
        groups = self.groups(epoch)
        total = sum(len(g) * (self.padded_length(g) - 1) for g in groups)
        real = int((self.windows.lengths - 1).sum())
        return 1.0 - real / total

    def batches(self, epoch: int = 0) -> Iterator[Batch]:
        for group in self.groups(epoch):
            yield self.make_batch(group)

    @property
    def encoded_bytes(self) -> int:
        """What the split's arrays take, on the host or on a device."""
        w = self.windows
        arrays = (w.concepts, w.responses, w.starts, w.lengths, w.students, w.true_mastery, w.true_gain)
        return sum(a.nbytes for a in (*arrays, w.true_mastery_all) if a is not None)

    def on_device(self, device: torch.device | str) -> BatchPlan:
        """The same plan, its split kept on `device` and its batches built there: no copy per batch."""
        return replace(self, device=str(device))

    def make_batch(self, group: np.ndarray) -> Batch:
        if self.device != "cpu":
            return self.batch_on(group, torch.device(self.device))
        w = self.windows
        length = self.padded_length(group)
        steps = np.arange(length)
        real = steps[None, :] < w.lengths[group][:, None]  # [B, L]
        flat = np.where(real, w.starts[group][:, None] + steps[None, :], 0)
        concepts = torch.from_numpy(np.where(real, w.concepts[flat], 0))
        responses = torch.from_numpy(np.where(real, w.responses[flat], 0))
        truth: dict[str, torch.Tensor] = {}
        if w.true_mastery is not None:
            truth["next_true_mastery"] = _truth(w.true_mastery, flat, real)[:, 1:]
        if w.true_gain is not None:
            truth["true_gain"] = _truth(w.true_gain, flat, real)[:, :-1]
        if w.true_mastery_all is not None:
            truth["next_true_mastery_all"] = _truth(w.true_mastery_all, flat, real)[:, 1:]
        return Batch(
            concepts=concepts[:, :-1],
            responses=responses[:, :-1],
            next_concepts=concepts[:, 1:],
            next_responses=responses[:, 1:],
            mask=torch.from_numpy(real[:, 1:]),
            students=torch.from_numpy(w.students[group]),
            windows=torch.from_numpy(np.asarray(group, dtype=np.int64)),
            **truth,
        )

    @functools.cached_property
    def _on_devices(self) -> dict[str, dict[str, torch.Tensor]]:
        return {}  # device -> the split's arrays there (a cache of this plan's, not a field)

    def _held(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The split's arrays as tensors on `device`, copied there once."""
        if str(device) not in self._on_devices:
            w = self.windows
            arrays = {
                "concepts": w.concepts,
                "responses": w.responses,
                "starts": w.starts,
                "lengths": w.lengths,
                "students": w.students,
                "true_mastery": w.true_mastery,
                "true_gain": w.true_gain,
                "true_mastery_all": w.true_mastery_all,
            }
            self._on_devices[str(device)] = {
                n: torch.as_tensor(a).to(device) for n, a in arrays.items() if a is not None
            }
        return self._on_devices[str(device)]

    def batch_on(self, group: np.ndarray, device: torch.device) -> Batch:
        """`make_batch` computed with torch on `device` from the split's arrays kept there (equal
        to it, on any device)."""
        held = self._held(device)
        g = torch.as_tensor(np.asarray(group, dtype=np.int64), device=device)
        steps = torch.arange(self.padded_length(group), device=device)
        real = steps[None, :] < held["lengths"][g][:, None]  # [B, L]
        flat = torch.where(real, held["starts"][g][:, None] + steps[None, :], 0)
        concepts = torch.where(real, held["concepts"][flat], 0)
        responses = torch.where(real, held["responses"][flat], 0)
        truth: dict[str, torch.Tensor] = {}
        for name, shift in (("true_mastery", slice(1, None)), ("true_gain", slice(None, -1))):
            if name in held:
                picked = torch.where(real, held[name][flat], 0.0).float()
                truth["next_true_mastery" if name == "true_mastery" else name] = picked[:, shift]
        if "true_mastery_all" in held:
            picked = torch.where(real[..., None], held["true_mastery_all"][flat], 0.0).float()
            truth["next_true_mastery_all"] = picked[:, 1:]
        return Batch(
            concepts=concepts[:, :-1],
            responses=responses[:, :-1],
            next_concepts=concepts[:, 1:],
            next_responses=responses[:, 1:],
            mask=real[:, 1:],
            students=held["students"][g],
            windows=g,
            **truth,
        )


def _truth(values: np.ndarray, flat: np.ndarray, real: np.ndarray) -> torch.Tensor:
    """`values` (indexed by flat position, [N] or [N, C]) laid out as a batch [B, L(, C)], 0 at padding."""
    picked = values[flat]
    mask = real if picked.ndim == 2 else real[..., None]
    return torch.from_numpy(np.where(mask, picked, 0.0)).float()
