"""What holds by construction: metrics a model's architecture fixes and auxiliary losses it makes
identically zero, whatever the weights and the data.

Such a metric cannot tell two trials apart and such a loss's weight does nothing, so the search
must not optimise or sample them there (docs/metrics.md has the table). Torch-free: the search
space and the sweep's checks use it before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

NON_NEGATIVE_GAINS = ("relu", "softplus")  # gain activations that are never below 0


class ModelModes(Protocol):
    """The model options a guarantee depends on (`gainakt.tracer.ModelOptions` has them)."""

    @property
    def gains(self) -> str: ...

    @property
    def mastery(self) -> str: ...

    @property
    def head(self) -> str: ...

    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class Guarantee:
    metric: str  # the metric fixed by construction
    value: float  # the value it always takes (`exact`), or lies near
    loss: str | None  # the auxiliary loss that is identically zero for the same reason, if any
    reason: str
    exact: bool = True  # False: the architecture holds the metric near `value`, not at it


def guarantees(
    gains: str, mastery: str, head: str = "free", kind: str = "gainakt2exp"
) -> tuple[Guarantee, ...]:
    """The guarantees of a model with this gain activation, mastery mode and prediction head (of
    GainAKT2Exp; DKT reads none of the three)."""
    if kind == "dkt":
        reason = "DKT's prediction is its mastery of the next concept, with nothing beside it"
        return (
            Guarantee("residual_share", 0.0, "residual", reason),
            Guarantee("mastery_pred_corr", 1.0, None, reason + " (1 up to rounding)", exact=False),
        )
    out = []
    if gains in NON_NEGATIVE_GAINS:
        reason = f"{gains} gains are never negative"
        out.append(Guarantee("neg_gain_rate", 0.0, "non_negative", reason))
        if mastery == "cumulative":
            reason = f"cumulative mastery only adds {gains} gains, so it never goes down"
            out.append(Guarantee("monotonicity_violation_rate", 0.0, "monotonicity", reason))
    if head == "free":
        reason = "a free prediction head does not read the mastery, so it has no mastery path to bypass"
        out.append(Guarantee("faithfulness", 0.0, "residual", reason))
        out.append(Guarantee("residual_share", 1.0, "residual", reason))
    elif head == "mastery":
        reason = "a mastery prediction head reads the prediction out of the mastery alone, with no residual"
        out.append(Guarantee("residual_share", 0.0, "residual", reason))
        reason = (
            "within a concept a mastery head's prediction is a monotone function of the mastery, so their "
            "per-concept correlation is near 1"
        )
        out.append(Guarantee("mastery_pred_corr", 1.0, None, reason, exact=False))
    return tuple(out)


def guarantees_of(options: ModelModes) -> tuple[Guarantee, ...]:
    return guarantees(options.gains, options.mastery, options.head, options.kind)


def guaranteed_metrics(options: ModelModes) -> list[str]:
    """The metric names of `guarantees_of(options)`: the trial table's `guaranteed` column."""
    return [g.metric for g in guarantees_of(options)]


def zero_losses(gains: str, mastery: str, head: str = "free") -> set[str]:
    """The auxiliary losses identically zero for this gain activation, mastery mode and head."""
    return {g.loss for g in guarantees(gains, mastery, head) if g.loss is not None}
