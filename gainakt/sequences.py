"""Interaction sequences and datasets: students cut into pyKT's 200-long windows, and fold splits.

A `Sequences` holds many sequences over shared flat arrays; a `Dataset` holds the training and
validation students (with their folds) and an optional test split. How they are read is
`gainakt.pykt` (pyKT's CSV files) or `gainakt.synthetic` (the simulator); how they are batched is
`gainakt.batching`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from .errors import DataError
from .metrics import roc_auc

MAX_WINDOW = 200  # pyKT's maxlen
MIN_WINDOW = 3  # pyKT's min_seq_len: shorter trailing windows are dropped
PAD = -1
# Concept ids must lie below this. The model keeps a [batch, window, concepts] float mastery tensor
# (and its gradient) per step: at 32 x 200 x 100,000 that is 2.6 GB each, the most a 24 GB machine
# trains; an id of 10**9 would ask for terabytes.
MAX_CONCEPTS = 100_000
_FIELD_LIMIT = 2**31 - 1  # csv's default (131,072 characters) cuts off a student past ~65k answers


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
