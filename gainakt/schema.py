"""The model-side names every layer shares, each defined once.

- the auxiliary losses: the fields of `LossWeights` (`LOSS_NAMES`);
- the evaluation metrics and the direction that is better: the fields of `EvalMetrics`
  (`METRICS`, `METRIC_DIRECTIONS`, `MONITOR_METRICS`), as the epoch rows name them;
- the best-epoch rule (`improves`, `select_epoch`, `reported_figures`) and the loss shares (`loss_shares`).

Adding a loss is a field of `LossWeights` plus its term in `gainakt/losses.py`; adding a
metric is a field of `EvalMetrics` plus its computation in `gainakt/evaluate.py`. Search
spaces, the trainer's epoch rows, the sweep's trial table, the report and the CLI follow.
This module imports only the standard library, so `spaces/` and the commands that only
read a study never import torch to know a name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

from .errors import ConfigError

Direction = Literal["max", "min"]
Row = TypeVar("Row", bound=Mapping[str, Any])


@dataclass(frozen=True)
class LossWeights:
    """Weight of each auxiliary loss in the total; 0 switches a loss off."""

    non_negative: float = 0.0
    monotonicity: float = 0.0
    mastery_performance: float = 0.0
    # the seeds' form, kept for reproduction: copyable (r[t] is an input), so no search samples it
    mastery_performance_current: float = field(default=0.0, metadata={"searched": False})
    gain_performance: float = 0.0
    sparsity: float = 0.0
    consistency: float = 0.0
    residual: float = 0.0  # mean |residual logit| of a `mixed` head: pushes the prediction onto the mastery

    def __post_init__(self) -> None:
        for name, value in self.items():
            if not 0 <= value < float("inf"):  # also rejects NaN
                raise ConfigError(f"weights.{name} must be >= 0 and finite, got {value}")

    def items(self) -> list[tuple[str, float]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


LOSS_NAMES: tuple[str, ...] = tuple(f.name for f in fields(LossWeights))
# The losses a search samples weights for: all but those kept only to reproduce earlier results.
SEARCHED_LOSSES: tuple[str, ...] = tuple(
    f.name for f in fields(LossWeights) if f.metadata.get("searched", True)
)
PREDICTION_LOSS = "bce"
LOSS_COMPONENTS: tuple[str, ...] = (PREDICTION_LOSS, *LOSS_NAMES)  # the terms of the total, in logging order


SHARE = (0.0, 1.0)  # a probability, a rate, an area under a curve
CORRELATION = (-1.0, 1.0)
NON_NEGATIVE = (0.0, math.inf)


def _metric(
    better: Direction | None,
    span: tuple[float, float] = CORRELATION,
    monitored: bool = False,
    versus_baselines: bool = True,
    simulated: bool = False,
) -> Any:
    """A metric field: which direction is better (None: not an objective), the values it can take,
    whether the monitor samples it, whether a trial's value is judged against the baselines' (not
    where a lookup has it by construction, or where it is a limit's business), and whether it needs
    the simulator's truth."""
    metadata = {"better": better, "span": span, "monitored": monitored, "versus_baselines": versus_baselines}
    return field(metadata={**metadata, "simulated": simulated})


@dataclass(frozen=True)
class EvalMetrics:
    """Every metric of one evaluation split (NaN where undefined); docs in the README's metric table."""

    loss: float = _metric("min", NON_NEGATIVE)
    auc: float = _metric("max", SHARE)
    acc: float = _metric("max", SHARE)
    mastery_corr: float = _metric("max", monitored=True)
    pred_corr: float = _metric("max")
    mastery_corr_student: float = _metric("max")
    # a baseline's gain is its update (docs/metrics.md), so its gain_corr is that of a lookup by design
    gain_corr: float = _metric("max", monitored=True, versus_baselines=False)
    neg_gain_rate: float = _metric("min", SHARE, monitored=True, versus_baselines=False)
    monotonicity_violation_rate: float = _metric("min", SHARE, monitored=True, versus_baselines=False)
    mastery_pred_corr: float = _metric("max", versus_baselines=False)  # 1 for a lookup: m is its p
    # a difference of two correlations, already against the best baseline
    mastery_lift: float = _metric("max", (-2.0, 2.0), versus_baselines=False)
    copy_corr: float = _metric("min", versus_baselines=False)  # judged by DEGENERACY_LIMITS
    mastery_saturation: float = _metric("min", SHARE, versus_baselines=False)
    prospective_corr: float = _metric("max")
    # against the simulator's truth: the true mastery of c[t+1] pooled, and within each concept
    mastery_recovery: float = _metric("max", simulated=True)
    mastery_recovery_within: float = _metric("max", simulated=True)
    gain_recovery: float = _metric("max", simulated=True)  # g[t, c[t]] against the true gain of step t
    unpractised_recovery: float = _metric("max", simulated=True)  # of concepts not yet practised
    # how much the prediction moves when the mastery is moved (0 for a head that does not read it)
    faithfulness: float = _metric("max", SHARE, versus_baselines=False)
    residual_share: float = _metric("min", NON_NEGATIVE, versus_baselines=False)  # of the logit bypassing m
    positions: int = _metric(None, NON_NEGATIVE)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


VALIDATION_LOSS = "val_loss"  # the epoch row's name of the validation split's `loss`
TRAIN_LOSS = "train_loss"


def epoch_name(metric: str) -> str:
    """The epoch row's column of an `EvalMetrics` field."""
    return VALIDATION_LOSS if metric == "loss" else metric


# Every figure of an epoch row that can be an objective or a constraint, with its better direction.
METRIC_DIRECTIONS: dict[str, Direction] = {
    **{epoch_name(f.name): f.metadata["better"] for f in fields(EvalMetrics) if f.metadata["better"]},
    TRAIN_LOSS: "min",
}
METRICS: tuple[str, ...] = tuple(METRIC_DIRECTIONS)
# The values each of them can take: a constraint outside its metric's span can never be met.
METRIC_SPANS: dict[str, tuple[float, float]] = {
    **{epoch_name(f.name): f.metadata["span"] for f in fields(EvalMetrics) if f.metadata["better"]},
    TRAIN_LOSS: NON_NEGATIVE,
}
MONITOR_METRICS: tuple[str, ...] = tuple(f.name for f in fields(EvalMetrics) if f.metadata["monitored"])
VERSUS_BASELINES: tuple[str, ...] = tuple(
    epoch_name(f.name) for f in fields(EvalMetrics) if f.metadata["better"] and f.metadata["versus_baselines"]
)
# The figures only the simulator's truth defines (NaN on real data).
RECOVERY_METRICS: tuple[str, ...] = tuple(f.name for f in fields(EvalMetrics) if f.metadata["simulated"])
# A metric's ceiling: the prediction's own correlation with the next response bounds how well one
# score per step (the mastery of the next concept) can correlate with it.
CEILINGS: dict[str, str] = {"mastery_corr": "pred_corr"}

# Shown beside every front, objective or not: whether the prediction reads the mastery at all.
CONTEXT_METRICS: tuple[str, ...] = ("faithfulness",)

# Degeneracy guards: a mastery at or above these is copying the last response or pinned to 0 or 1
# (calibrated in docs/metrics.md; the sweep's default constraints keep trials below them).
DEGENERACY_LIMITS: dict[str, float] = {"copy_corr": 0.9, "mastery_saturation": 0.5}

SELECTION_METRIC = "auc"  # the validation figure that picks a run's best epoch (best.pt) and stops it early


def improves(value: float, best: float) -> bool:
    """Whether an epoch's `SELECTION_METRIC` beats the best so far: strictly higher, so the earliest
    epoch wins ties; NaN never improves, and anything improves on NaN or -inf."""
    return not math.isnan(value) and (math.isnan(best) or value > best)


def select_epoch(rows: Sequence[Row]) -> Row:
    """The epoch row a run deploys (its best.pt): the best `SELECTION_METRIC` by `improves`."""
    if not rows:
        raise ValueError("no epoch rows to select from")
    best = rows[0]
    for row in rows[1:]:
        if improves(float(row[SELECTION_METRIC]), float(best[SELECTION_METRIC])):
            best = row
    return best


def reported_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a run reports after its latest epoch: the figures of the epoch it would deploy
    (`select_epoch` of `rows`, the epochs so far), with that epoch as `selected_epoch`."""
    best = select_epoch(rows)
    return {
        **{name: value for name, value in best.items() if name != "epoch"},
        "selected_epoch": int(best["epoch"]),
    }


def loss_shares(components: Mapping[str, float]) -> dict[str, float]:
    """Each loss component over their sum: all >= 0 and summing to 1; all on the prediction loss
    when the total is 0 (nothing to share)."""
    total = sum(components.values())
    if total <= 0:
        return {name: float(name == PREDICTION_LOSS) for name in components}
    return {name: value / total for name, value in components.items()}
