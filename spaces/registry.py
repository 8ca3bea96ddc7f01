"""The registry of search spaces by name, and the check a space passes before a sweep uses it."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

import optuna

Space = Callable[[optuna.Trial], dict[str, Any]]

_REGISTRY: dict[str, Space] = {}
# A trial's user attribute the sweep sets before its space runs: whether the study's objectives or
# constraints judge the gains (a space may then avoid settings whose gains no loss trains).
GAINS_JUDGED = "gains_judged"


class SpaceError(ValueError):
    """A space name that resolves to nothing, or a space that fails when sampled."""


def register(name: str) -> Callable[[Space], Space]:
    """Decorator: make a space available under `name`."""

    def add(space: Space) -> Space:
        _REGISTRY[name] = space
        return space

    return add


def names() -> list[str]:
    return sorted(_REGISTRY)


def get_space(name: str) -> Space:
    """The registered space `name`, or the function a `module:function` name points at."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" not in name:
        raise SpaceError(f"unknown space {name!r} (known: {', '.join(names())}, or module:function)")
    module_name, _, attr = name.partition(":")
    try:
        space = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise SpaceError(f"space {name!r}: cannot import it ({err})") from None
    if not callable(space):
        raise SpaceError(f"space {name!r}: not a function")
    return space


def sample_once(
    space: Space, seed: int = 0, fixed: dict[str, Any] | None = None, gains_judged: bool = False
) -> dict[str, Any]:
    """Sample `space` on a throw-away in-memory study: a broken space fails here, not inside a trial.

    With `fixed`, those Optuna parameters take the values given (as a start point would); a name
    the space never samples, or a value outside its range, is an error.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    label = repr(getattr(space, "__name__", space))
    if fixed:
        study.enqueue_trial(fixed, skip_if_exists=False)
    trial = study.ask()
    trial.set_user_attr(GAINS_JUDGED, gains_judged)  # as the sweep's trials have it
    try:
        with (
            warnings.catch_warnings()
        ):  # Optuna warns of an out-of-range start value; the check below says it
            warnings.simplefilter("ignore", UserWarning)
            settings = space(trial)
    except Exception as err:  # any failure of user code is a bad space
        raise SpaceError(f"space {label} fails when sampled: {err}") from err
    if not isinstance(settings, dict) or not all(isinstance(key, str) for key in settings):
        raise SpaceError(f"space {label} must return a dict of settings, got {settings!r}")
    for name, value in (fixed or {}).items():
        if name not in trial.params:
            raise SpaceError(
                f"start point {fixed}: space {label} samples no parameter {name!r} there "
                f"(it sampled: {', '.join(trial.params)})"
            )
        dist = trial.distributions[name]
        low, high = getattr(dist, "low", value), getattr(dist, "high", value)
        if trial.params[name] != value or not low <= value <= high:
            raise SpaceError(f"start point {fixed}: {name} = {value!r} is outside the space's range for it")
    return settings
