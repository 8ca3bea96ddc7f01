"""The built-in spaces: auxiliary-loss weights and head options, optionally with optimiser and size."""

from __future__ import annotations

from typing import Any

import optuna

from gainakt.schema import LOSS_NAMES

from . import register

WEIGHT_RANGE = (1e-3, 1.0)  # log-uniform; below 1e-3 a loss hardly moves the total, above 1 it drowns the BCE


def sample_weights(trial: optuna.Trial, switchable: bool = True) -> dict[str, float]:
    """A weight per auxiliary loss; with `switchable`, each loss may also be switched off (weight 0)."""
    weights = {}
    for name in LOSS_NAMES:
        on = trial.suggest_categorical(f"use_{name}", [True, False]) if switchable else True
        weights[f"weights.{name}"] = (
            trial.suggest_float(f"weights.{name}", *WEIGHT_RANGE, log=True) if on else 0.0
        )
    return weights


@register("aux_weights")
def aux_weights(trial: optuna.Trial) -> dict[str, Any]:
    """The six auxiliary weights, their warm-up, and the gain, mastery and attention modes."""
    return {
        **sample_weights(trial),
        "warmup_epochs": trial.suggest_int("warmup_epochs", 0, 3),
        "model.gains": trial.suggest_categorical("model.gains", ["relu", "softplus", "linear"]),
        "model.mastery": trial.suggest_categorical("model.mastery", ["cumulative", "direct"]),
        "model.attention": trial.suggest_categorical("model.attention", ["legacy", "intrinsic"]),
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
