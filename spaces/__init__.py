"""Optuna define-by-run search spaces for the auxiliary-loss weights, registered by name.

A space is a plain function `space(trial) -> dict` that samples with `trial.suggest_*`
and returns the training settings the trial trains with, as dotted keys of the
trainer's configuration (`"weights.sparsity": 0.01`, `"model.gains": "softplus"`).
Sampled values that are not settings (such as whether a loss is switched on) stay
Optuna parameters only. A space can also be named `package.module:function`.
"""

from spaces import aux_weights  # noqa: F401  (imported for its side effect: the built-in spaces register)
from spaces.registry import GAINS_JUDGED, Space, SpaceError, get_space, names, register, sample_once

__all__ = ["GAINS_JUDGED", "Space", "SpaceError", "get_space", "names", "register", "sample_once"]
