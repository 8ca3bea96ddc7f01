"""Bucketed and fixed batching: the same real positions, pyKT's shift, seeded order."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gainakt.batching import Batch, BatchPlan
from gainakt.sequences import Dataset, Sequences


def real_positions(batches) -> Counter:
    """Multiset of (concept, response, next concept, next response) over real positions."""
    counts: Counter = Counter()
    for b in batches:
        m = b.mask
        rows = zip(
            b.concepts[m].tolist(),
            b.responses[m].tolist(),
            b.next_concepts[m].tolist(),
            b.next_responses[m].tolist(),
        )
        counts.update(rows)
    return counts


def pairs_from_windows(windows: Sequences) -> Counter:
    counts: Counter = Counter()
    for start, length in zip(windows.starts, windows.lengths):
        c = windows.concepts[start : start + length].tolist()
        r = windows.responses[start : start + length].tolist()
        counts.update(zip(c[:-1], r[:-1], c[1:], r[1:]))
    return counts


@pytest.fixture(scope="module")
def windows(small_synthetic: Dataset) -> Sequences:
    return small_synthetic.split(0)[0]


def test_bucketed_and_fixed_hold_the_same_real_positions(windows: Sequences) -> None:
    bucketed = real_positions(BatchPlan(windows, 16, "bucketed", seed=1).batches(epoch=2))
    fixed = real_positions(BatchPlan(windows, 16, "fixed", seed=1).batches(epoch=2))
    assert bucketed == fixed == pairs_from_windows(windows)


def test_same_on_real_training_folds(assist: Dataset) -> None:
    train, _ = assist.split(0)
    bucketed = real_positions(BatchPlan(train, 64, "bucketed").batches(0))
    fixed = real_positions(BatchPlan(train, 64, "fixed").batches(0))
    assert bucketed == fixed
    assert sum(bucketed.values()) == train.num_interactions - len(train)


def test_shift_convention_and_padding(windows: Sequences) -> None:
    for batch in BatchPlan(windows, 8, "bucketed").batches(0):
        longest = int(batch.mask.sum(1).max())
        assert batch.mask.shape[1] == longest  # padded only to the batch's own longest window
        inner = batch.mask[:, 1:]
        assert (batch.next_concepts[:, :-1][inner] == batch.concepts[:, 1:][inner]).all()
        assert (batch.next_responses[:, :-1][inner] == batch.responses[:, 1:][inner]).all()
        # the mask is a prefix: real positions first, then padding
        assert (batch.mask[:, :-1] >= batch.mask[:, 1:]).all()
        assert (batch.next_concepts[~batch.mask] == 0).all()
    fixed = next(BatchPlan(windows, 8, "fixed").batches(0))
    assert fixed.mask.shape[1] == 199


def test_each_window_once_per_epoch_and_seeded_order(windows: Sequences) -> None:
    plan = BatchPlan(windows, 10, "bucketed", seed=5)
    groups = plan.groups(epoch=0)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(windows)))
    assert all(len(g) <= 10 for g in groups)
    again = BatchPlan(windows, 10, "bucketed", seed=5).groups(epoch=0)
    assert all((a == b).all() for a, b in zip(groups, again))
    next_epoch = plan.groups(epoch=1)
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(groups, next_epoch))
    in_order = BatchPlan(windows, 10, "bucketed", shuffle=False)
    assert all((a == b).all() for a, b in zip(in_order.groups(0), in_order.groups(7)))


def test_batches_carry_students_and_simulator_truth(windows: Sequences) -> None:
    batch: Batch = next(BatchPlan(windows, 4, "fixed", shuffle=False).batches(0))
    assert batch.students.tolist() == windows.students[:4].tolist()
    assert batch.next_true_mastery is not None
    first = windows.starts[0]
    assert batch.next_true_mastery[0, 0].item() == pytest.approx(windows.true_mastery[first + 1], rel=1e-6)


def test_bad_plan_arguments() -> None:
    empty = Sequences(*(np.zeros(0, dtype=np.int64) for _ in range(6)), uids=())
    with pytest.raises(ValueError, match="padding"):
        BatchPlan(empty, 4, "ragged")  # type: ignore[arg-type]  # an invalid padding on purpose
    with pytest.raises(ValueError, match="batch_size"):
        BatchPlan(empty, 0)


@pytest.mark.parametrize("padding", ["bucketed", "fixed"])
def test_batches_built_by_torch_from_the_split_on_a_device_equal_the_numpy_ones(
    windows: Sequences, assist: Dataset, padding: str
) -> None:
    """The GPU path (`BatchPlan.on_device`) run on the CPU: every tensor of every batch equal, in
    dtype too, on the simulator (with its truth arrays) and on ASSIST2015."""
    import torch

    real, _ = assist.split(0)
    for split in (windows, real):
        plan = BatchPlan(split, batch_size=32, padding=padding, seed=3, max_len=split.lengths.max())
        assert plan.encoded_bytes > 0
        for group in plan.groups(epoch=1):
            ours, theirs = plan.batch_on(group, torch.device("cpu")), plan.make_batch(group)
            for name, value in vars(theirs).items():
                other = getattr(ours, name)
                if value is None:
                    assert other is None, name
                else:
                    assert other.dtype == value.dtype and torch.equal(other, value), name
