"""Padded batches of windows in pyKT's shift convention, built on the CPU or on the device."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from .sequences import MAX_WINDOW, Sequences

Padding = Literal["bucketed", "fixed"]
PADDINGS: tuple[Padding, ...] = ("bucketed", "fixed")
LENGTH_STEPS = 4  # the fixed lengths of `few_lengths`: max_len / 4, 2 max_len / 4, ... max_len


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
    # With `few_lengths`, a bucketed batch pads to the next of LENGTH_STEPS fixed lengths instead of
    # its own longest window: a compiled step then meets a few shapes, each compiled once.
    few_lengths: bool = False

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

    @property
    def real_positions(self) -> int:
        """Prediction positions of real interactions in one epoch (every window visited once)."""
        return int((self.windows.lengths - 1).sum())

    def padded_length(self, group: np.ndarray) -> int:
        if self.padding == "fixed":
            return self.max_len
        longest = int(self.windows.lengths[group].max())
        if not self.few_lengths:
            return longest
        step = -(-self.max_len // LENGTH_STEPS)
        return min(self.max_len, -(-longest // step) * step)

    def padding_share(self, epoch: int = 0) -> float:
        """Padded prediction positions over all prediction positions in an epoch."""
        groups = self.groups(epoch)
        total = sum(len(g) * (self.padded_length(g) - 1) for g in groups)
        return 1.0 - self.real_positions / total

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
