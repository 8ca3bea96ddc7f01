"""What holds by construction: metrics a model's architecture fixes and auxiliary losses it makes
identically zero, whatever the weights and the data.

Such a metric cannot tell two trials apart and such a loss's weight does nothing, so the search
must not optimise or sample them there (docs/metrics.md has the table). Torch-free: the search
space and the sweep's checks use it before anything trains.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
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

    @property
    def attention(self) -> str: ...


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


# The auxiliary losses that read the gains, and those that read the mastery (gainakt/losses.py).
GAIN_LOSSES = ("non_negative", "gain_performance", "sparsity", "consistency")
GAIN_LOSS = "gain_performance"  # the one a space turns on where nothing else would train the gains
MASTERY_LOSSES = ("monotonicity", "mastery_performance", "mastery_performance_current", "consistency")
# The figures that describe the gains: an untrained gain head makes them describe nothing.
GAIN_METRICS = ("gain_corr", "neg_gain_rate", "gain_recovery")


def inert_gains(
    attention: str, mastery: str, head: str, gains: str, losses: Collection[str], kind: str = "gainakt2exp"
) -> str | None:
    """Why the gain head of this setting gets no gradient from any of its losses (the prediction's
    and the auxiliary `losses` with a weight above 0), or None when it gets one.

    With intrinsic attention the gains are the value stream the prediction reads. With legacy
    attention they are a head beside it, read only by cumulative mastery (which a mastery or mixed
    head, or a mastery loss, trains) and by the gain losses; a loss identically zero for the setting
    (`zero_losses`) trains nothing.
    """
    if kind == "dkt" or attention == "intrinsic":
        return None
    active = set(losses) - zero_losses(gains, mastery, head)
    if active & set(GAIN_LOSSES):
        return None
    if mastery == "cumulative" and (head != "free" or active & set(MASTERY_LOSSES)):
        return None
    read = (
        "the free head does not read the mastery"
        if mastery == "cumulative"
        else f"{mastery} mastery does not read them"
    )
    return (
        f"legacy attention's gains reach the prediction only through the mastery, {read}, and no loss "
        "of the setting acts on them"
    )


def untrained_metrics(
    attention: str, mastery: str, head: str, gains: str, losses: Collection[str], kind: str = "gainakt2exp"
) -> tuple[str, ...]:
    """The gain figures of a setting whose gain head no loss trains (`inert_gains`), less those its
    model fixes by construction: the trial table's `untrained` column."""
    if inert_gains(attention, mastery, head, gains, losses, kind) is None:
        return ()
    fixed = {g.metric for g in guarantees(gains, mastery, head, kind)}
    return tuple(m for m in GAIN_METRICS if m not in fixed)


def untrained_of(options: ModelModes, weights: Mapping[str, float]) -> tuple[str, ...]:
    """`untrained_metrics` of a model with these auxiliary loss weights (a loss counts where > 0)."""
    active = [name for name, weight in weights.items() if weight > 0]
    return untrained_metrics(
        options.attention, options.mastery, options.head, options.gains, active, options.kind
    )
