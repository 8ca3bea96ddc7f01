"""The prediction loss, the eight auxiliary interpretability losses, and how they add up.

Every auxiliary loss is a non-negative scalar (a mean of relu or absolute values)
over real positions only, so the total `bce + sum_k w_k L_k` is never below the
prediction loss and every logged share lies in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .batching import Batch
from .schema import LOSS_NAMES, PREDICTION_LOSS, LossWeights, loss_shares
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


def auxiliary_losses(
    states: States, batch: Batch, mastery_step: float, names: Iterable[str] = LOSS_NAMES
) -> dict[str, torch.Tensor]:
    """The unweighted auxiliary losses `names` (default all eight), each a non-negative scalar over
    real positions.

    `mastery_performance` is prospective and class-balanced: the mastery of the next concept,
    m[t, c[t+1]], before r[t+1] is seen, scored against r[t+1] as mean(1 - m | r[t+1] = 1) +
    mean(m | r[t+1] = 0). `mastery_performance_current` is the seeds' form, kept for reproduction:
    copyable (r[t] is an input), the pooled mean of |r[t] - m[t, c[t]]|. `residual` is the mean
    |residual logit| of a `mixed` head; a constant 0 (no parameter reaches it) for a `mastery` head,
    whose residual is 0, and a `free` one, which has none (`states.residual` is None).

    Every mean is a masked sum over a count, with no boolean index: the selection's size would have
    to be read back from the device at every step.
    """
    terms = _Terms(states, batch, mastery_step)
    return {name: getattr(terms, name)() for name in names}


class _Terms:
    """The auxiliary losses of one batch; what several of them share is computed once, when first
    needed, so that a run computes only the losses it weighs."""

    def __init__(self, states: States, batch: Batch, mastery_step: float) -> None:
        self.states, self.batch, self.mastery_step = states, batch, mastery_step
        self.concepts = states.gains.shape[-1]
        self._made: dict[str, torch.Tensor] = {}

    def _once(self, name: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        # not functools.cached_property: its lock stops torch.compile's tracing (Python 3.11)
        if name not in self._made:
            self._made[name] = make()
        return self._made[name]

    @property
    def gains(self) -> torch.Tensor:  # [B, T, C]
        return self._once("gains", lambda: self.states.gains.float())

    @property
    def mastery(self) -> torch.Tensor:  # [B, T, C]
        return self._once("mastery", lambda: self.states.mastery.float())

    @property
    def real(self) -> torch.Tensor:  # [B, T], 1 at real positions
        return self._once("real", lambda: self.batch.mask.float())

    @property
    def positions(self) -> torch.Tensor:
        return self._once("positions", lambda: self.real.sum())

    @property
    def pairs(self) -> torch.Tensor:  # [B, T-1, 1], real (t-1, t)
        return self._once("pairs", lambda: (self.real[:, 1:] * self.real[:, :-1]).unsqueeze(-1))

    @property
    def change(self) -> torch.Tensor:  # [B, T-1, C]
        return self._once("change", lambda: self.mastery[:, 1:] - self.mastery[:, :-1])

    @property
    def gain_here(self) -> torch.Tensor:  # [B, T], g[t, c[t]]
        return self._once("gain_here", lambda: _at(self.gains, self.batch.concepts))

    def non_negative(self) -> torch.Tensor:
        return _mean(F.relu(-self.gains), self.real.unsqueeze(-1), self.positions * self.concepts)

    def monotonicity(self) -> torch.Tensor:
        return _mean(F.relu(-self.change), self.pairs, self.pairs.sum() * self.concepts)

    def mastery_performance(self) -> torch.Tensor:
        """mean(1 - m) over correct answers + mean(m) over wrong ones; a missing class adds 0."""
        mastery_next = _at(self.mastery, self.batch.next_concepts)  # [B, T], m[t, c[t+1]]
        right = self.real * self.batch.next_responses  # [B, T], 1 where r[t+1] is a correct answer
        wrong = self.real - right
        return _mean(1 - mastery_next, right, right.sum()) + _mean(mastery_next, wrong, wrong.sum())

    def mastery_performance_current(self) -> torch.Tensor:
        mastery_here = _at(self.mastery, self.batch.concepts)  # [B, T], m[t, c[t]]
        miss = torch.where(self.batch.responses.bool(), 1 - mastery_here, mastery_here)
        return _mean(miss, self.real, self.positions)

    def gain_performance(self) -> torch.Tensor:
        """relu(margin - (mean gain after correct - mean gain after wrong)); 0 when one kind is missing."""
        right = self.real * self.batch.responses  # 1 where r[t] is a correct answer
        wrong = self.real - right
        n_right, n_wrong = right.sum(), wrong.sum()
        gap = _mean(self.gain_here, right, n_right) - _mean(self.gain_here, wrong, n_wrong)
        return torch.where((n_right > 0) & (n_wrong > 0), F.relu(GAIN_MARGIN - gap), 0.0)

    def sparsity(self) -> torch.Tensor:
        """Mean |g[t, k]| over the concepts k not practised at t: all of them but c[t]."""
        unpractised = self.gains.abs().sum(-1) - self.gain_here.abs()  # [B, T]
        return _mean(unpractised, self.real, self.positions * (self.concepts - 1))

    def consistency(self) -> torch.Tensor:
        drift = (self.change - self.mastery_step * self.gains[:, 1:]).abs()
        return _mean(drift, self.pairs, self.pairs.sum() * self.concepts)

    def residual(self) -> torch.Tensor:
        if self.states.residual is None:
            return torch.zeros((), device=self.real.device)
        return _mean(self.states.residual.float().abs(), self.real, self.positions)


def _at(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[b, t, index[b, t]]: [B, T, C] and [B, T] -> [B, T]."""
    return values.gather(-1, index.unsqueeze(-1)).squeeze(-1)


def _mean(values: torch.Tensor, weight: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """sum(values * weight) / count, with `weight` 1 on the entries meant and 0 elsewhere (broadcast
    to the shape of `values`); 0, with a gradient path, when the count is 0."""
    return (values * weight).sum() / count.clamp(min=1)


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """Share of the auxiliary weights in force at a 0-based epoch: linear up to 1 over `warmup_epochs`."""
    return min(1.0, (epoch + 1) / (warmup_epochs + 1))


@dataclass(frozen=True)
class Composition:
    """The total for backward and, for logging, each weighted component and its share of the total."""

    total: torch.Tensor
    components: dict[str, torch.Tensor]  # the prediction loss and each weighted auxiliary loss, all >= 0
    vector: torch.Tensor  # the components stacked, in `schema.LOSS_COMPONENTS` order

    def shares(self) -> dict[str, float]:
        return loss_shares({name: float(value.detach()) for name, value in self.components.items()})


def compose(
    bce: torch.Tensor,
    aux: Mapping[str, torch.Tensor],
    weights: LossWeights,
    factor: float | torch.Tensor = 1.0,
) -> Composition:
    """total = bce + sum_k factor * w_k * L_k; the value that reaches backward holds every term. `aux`
    needs only the losses of non-zero weight: the others' components are 0."""
    zero = torch.zeros((), device=bce.device)
    components = {PREDICTION_LOSS: bce.float()}
    for name, weight in weights.items():
        components[name] = (factor * weight) * aux[name].float() if weight else zero
    vector = torch.stack(list(components.values()))
    return Composition(total=vector.sum(), components=components, vector=vector)
