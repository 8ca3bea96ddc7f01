"""The built-in spaces: auxiliary-loss weights and model modes, optionally with optimiser and size."""

from __future__ import annotations

from typing import Any

import optuna

from gainakt.guarantees import GAIN_LOSS, inert_gains, zero_losses
from gainakt.schema import SEARCHED_LOSSES
from spaces.registry import GAINS_JUDGED, register

WEIGHT_RANGE = (1e-3, 1.0)  # log-uniform; below 1e-3 a loss hardly moves the total, above 1 it drowns the BCE


def sample_weights(
    trial: optuna.Trial,
    switchable: bool = True,
    idle: frozenset[str] = frozenset(),
    required: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """A weight per auxiliary loss; with `switchable`, each loss may also be switched off (weight 0).

    The losses in `idle` are identically zero for the trial's model (`gainakt.guarantees`): their
    weight would do nothing, so it is not sampled and stays 0. Those in `required` are always on.
    """
    weights = {}
    for name in SEARCHED_LOSSES:
        on = name not in idle and (
            name in required
            or (trial.suggest_categorical(f"use_{name}", [True, False]) if switchable else True)
        )
        weights[f"weights.{name}"] = (
            trial.suggest_float(f"weights.{name}", *WEIGHT_RANGE, log=True) if on else 0.0
        )
    return weights


@register("aux_weights")
def aux_weights(trial: optuna.Trial) -> dict[str, Any]:
    """The gain, mastery (cumulative or direct) and attention modes and the prediction head, then the
    auxiliary weights that can act on that model (a loss the modes make identically zero gets no
    weight: the residual's only with a mixed head; where the study judges the gains, a setting whose
    gains only a gain loss can train always has `gain_performance`), and their warm-up."""
    return modes_and_weights(trial, ("cumulative", "direct"))


@register("aux_weights_deep")
def aux_weights_deep(trial: optuna.Trial) -> dict[str, Any]:
    """`aux_weights` with the deep mastery mode among the mastery modes. A space of its own because an
    Optuna study cannot add a choice to a parameter it has sampled: studies of `aux_weights` resume."""
    return modes_and_weights(trial, ("cumulative", "direct", "deep"))


def modes_and_weights(trial: optuna.Trial, masteries: tuple[str, ...]) -> dict[str, Any]:
    """The modes, the head and the weights that can act on them (see `aux_weights`)."""
    gains = trial.suggest_categorical("model.gains", ["relu", "softplus", "linear"])
    mastery = trial.suggest_categorical("model.mastery", list(masteries))
    attention = trial.suggest_categorical("model.attention", ["legacy", "intrinsic"])
    head = trial.suggest_categorical("model.head", ["free", "mastery", "mixed"])
    # Where the study judges the gains and nothing but a gain loss would train them, one is always
    # on: every gain figure of such a trial describes a trained layer (`gainakt.guarantees.inert_gains`).
    judged = bool(trial.user_attrs.get(GAINS_JUDGED, False))
    needs_gain_loss = judged and inert_gains(attention, mastery, head, gains, ()) is not None
    return {
        **sample_weights(
            trial,
            idle=frozenset(zero_losses(gains, mastery, head)),
            required=frozenset({GAIN_LOSS} if needs_gain_loss else ()),
        ),
        "warmup_epochs": trial.suggest_int("warmup_epochs", 0, 3),
        "model.gains": gains,
        "model.mastery": mastery,
        "model.attention": attention,
        "model.head": head,
    }


@register("aux_weights_lr")
def aux_weights_lr(trial: optuna.Trial) -> dict[str, Any]:
    """`aux_weights` plus learning rate, dropout and model width."""
    return {
        **aux_weights(trial),
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "model.dropout": trial.suggest_float("model.dropout", 0.0, 0.4),
        "model.d_model": trial.suggest_categorical("model.d_model", [64, 128, 256]),
    }
