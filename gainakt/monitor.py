"""The training-time interpretability monitor: every N batches, the interpretability metrics
(`schema.MONITOR_METRICS`) of the current batch, sent to its sinks (the log, wandb, the epoch row)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

from .batching import Batch
from .evaluate import Observations
from .schema import MONITOR_METRICS
from .tracer import States

Sink = Callable[[int, dict[str, float]], None]  # (global batch step, metrics)
log = logging.getLogger("gainakt.monitor")


def log_sink(step: int, values: dict[str, float]) -> None:
    log.debug("step %d monitor %s", step, " ".join(f"{k}={v:.4f}" for k, v in values.items()))


class Monitor:
    """Samples interpretability metrics on the training batch every `interval` batches.

    It reads the states of the forward pass that training already made, without
    gradients, so it adds no forward pass of its own.
    """

    def __init__(self, interval: int = 25, sinks: Sequence[Sink] = (log_sink,)) -> None:
        if interval < 1:
            raise ValueError(f"monitor interval must be at least 1, got {interval}")
        self.interval = interval
        self.sinks = list(sinks)
        self._samples: list[dict[str, float]] = []

    def after_batch(self, step: int, states: States, batch: Batch) -> dict[str, float] | None:
        if step % self.interval:
            return None
        values = Observations.of(states, batch).interpretability()
        self._samples.append(values)
        for sink in self.sinks:
            sink(step, values)
        return values

    def epoch_means(self) -> dict[str, float]:
        """Mean of the epoch's samples per metric (NaN samples skipped), then forget them."""
        means = {}
        for name in MONITOR_METRICS:
            finite = [s[name] for s in self._samples if not math.isnan(s[name])]
            means[name] = float(np.mean(finite)) if finite else float("nan")
        self._samples.clear()
        return means
