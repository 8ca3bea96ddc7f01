"""The prediction loss, the eight auxiliary interpretability losses, and how they add up.

Every auxiliary loss is a non-negative scalar (a mean of relu or absolute values)
over real positions only, so the total `bce + sum_k w_k L_k` is never below the
prediction loss and every logged share lies in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .batching import Batch
from .schema import PREDICTION_LOSS, LossWeights, loss_shares
from .tracer import States

GAIN_MARGIN = 0.1  # gains after a correct answer should exceed those after a wrong one by this much


def prediction_loss(states: States, batch: Batch, positions_per_batch: float | None = None) -> torch.Tensor:
    """Binary cross-entropy of the logits against r[t+1] on real positions.

    With `positions_per_batch`, the sum is divided by that fixed count, so every real
    position weighs the same whatever the batch's length; otherwise the mean.
    """
    mask = batch.mask
    each = F.binary_cross_entropy_with_logits(
        states.logits.float(), batch.next_responses.float(), reduction="none"
    )
    total = torch.where(mask, each, 0.0).sum()
    return total / (positions_per_batch if positions_per_batch else mask.sum().clamp(min=1))


def auxiliary_losses(states: States, batch: Batch, mastery_step: float) -> dict[str, torch.Tensor]:
    """The eight unweighted auxiliary losses, each a non-negative scalar over real positions.

    `mastery_performance` is prospective and class-balanced: the mastery of the next concept,
    m[t, c[t+1]], before r[t+1] is seen, scored against r[t+1] as mean(1 - m | r[t+1] = 1) +
    mean(m | r[t+1] = 0). `mastery_performance_current` is the seeds' form, kept for reproduction:
    copyable (r[t] is an input), the pooled mean of |r[t] - m[t, c[t]]|. `residual` is the mean
    |residual logit| of a `mixed` head; a constant 0 (no parameter reaches it) for a `mastery` head,
    whose residual is 0, and a `free` one, which has none (`states.residual` is None).

    Every mean is a masked sum over a count, with no boolean index: the selection's size would have
    to be read back from the device at every step.
    """
    mask = batch.mask  # [B, T]
    gains, mastery = states.gains.float(), states.mastery.float()  # [B, T, C]
    correct = batch.responses.bool()  # [B, T], r[t]
    next_correct = batch.next_responses.bool()  # [B, T], r[t+1]
    gain_here = gains.gather(-1, batch.concepts.unsqueeze(-1)).squeeze(-1)  # [B, T]
    mastery_here = mastery.gather(-1, batch.concepts.unsqueeze(-1)).squeeze(-1)  # [B, T], m[t, c[t]]
    mastery_next = mastery.gather(-1, batch.next_concepts.unsqueeze(-1)).squeeze(-1)  # [B, T], m[t, c[t+1]]
    pairs = (mask[:, 1:] & mask[:, :-1]).unsqueeze(-1)  # consecutive real positions (t-1, t), [B, T-1, 1]
    change = mastery[:, 1:] - mastery[:, :-1]  # [B, T-1, C]
    # the gains of the concepts not practised at t: all of them but the practised one's
    unpractised_gains = gains.abs().sum(-1) - gain_here.abs()  # [B, T]
    concepts = gains.shape[-1]

    return {
        "non_negative": _masked_mean(F.relu(-gains), mask.unsqueeze(-1)),
        "monotonicity": _masked_mean(F.relu(-change), pairs),
        "mastery_performance": _balanced_miss(mastery_next, next_correct, mask),
        "mastery_performance_current": _masked_mean(
            torch.where(correct, 1 - mastery_here, mastery_here), mask
        ),
        "gain_performance": _gain_order_hinge(gain_here, correct, mask),
        "sparsity": _masked_sum(unpractised_gains, mask) / (mask.sum() * (concepts - 1)).clamp(min=1),
        "consistency": _masked_mean((change - mastery_step * gains[:, 1:]).abs(), pairs),
        "residual": _masked_mean(states.residual.float().abs(), mask)
        if states.residual is not None
        else torch.zeros((), device=mask.device),
    }


def _masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values, 0.0).sum()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the entries of `values` where `mask` (broadcast to its shape) holds; 0, with a
    gradient path, where it holds nowhere."""
    count = mask.expand(values.shape).sum()
    return _masked_sum(values, mask) / count.clamp(min=1)


def _balanced_miss(mastery: torch.Tensor, correct: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean(1 - m) over correct answers + mean(m) over wrong ones; a missing class adds 0."""
    return _masked_mean(1 - mastery, mask & correct) + _masked_mean(mastery, mask & ~correct)


def _gain_order_hinge(gain: torch.Tensor, correct: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """relu(margin - (mean gain after correct - mean gain after wrong)); 0 when one kind is missing."""
    right, wrong = mask & correct, mask & ~correct
    hinge = F.relu(GAIN_MARGIN - (_masked_mean(gain, right) - _masked_mean(gain, wrong)))
    return torch.where(right.any() & wrong.any(), hinge, 0.0)


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """Share of the auxiliary weights in force at a 0-based epoch: linear up to 1 over `warmup_epochs`."""
    return min(1.0, (epoch + 1) / (warmup_epochs + 1))


@dataclass(frozen=True)
class Composition:
    """The total for backward and, for logging, each weighted component and its share of the total."""

    total: torch.Tensor
    components: dict[str, torch.Tensor]  # the prediction loss and each weighted auxiliary loss, all >= 0

    def shares(self) -> dict[str, float]:
        return loss_shares({name: float(value.detach()) for name, value in self.components.items()})


def compose(
    bce: torch.Tensor,
    aux: Mapping[str, torch.Tensor],
    weights: LossWeights,
    factor: float | torch.Tensor = 1.0,
) -> Composition:
    """total = bce + sum_k factor * w_k * L_k; the value that reaches backward holds every term."""
    components = {PREDICTION_LOSS: bce}
    for name, weight in weights.items():
        components[name] = (factor * weight) * aux[name]
    total = torch.stack(list(components.values())).sum()
    return Composition(total=total, components=components)
