"""What every knowledge-tracing model of this package is: its options, and the `States` the
trainer, the metrics and the losses read from one forward pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .batching import Batch
from .errors import ConfigError

Attention = Literal["legacy", "intrinsic"]
GainActivation = Literal["relu", "softplus", "linear"]
MasteryMode = Literal["cumulative", "direct", "deep"]
PredictionHead = Literal["free", "mastery", "mixed"]
ModelKind = Literal["gainakt2exp", "dkt"]

SENSITIVITY_STEP = 0.1  # mastery_sensitivity moves m[t, c[t+1]] by this much up and down


@dataclass(frozen=True)
class ModelOptions:
    """Architecture of GainAKT2Exp (the number of concepts comes from the data)."""

    d_model: int = 128
    heads: int = 8
    blocks: int = 2
    d_ff: int = 256
    dropout: float = 0.2
    max_len: int = 200
    attention: Attention = "legacy"
    gains: GainActivation = "relu"
    mastery: MasteryMode = "cumulative"
    mastery_step: float = 0.1  # s in m[t] = clip(m[t-1] + s * g[t], 0, 1)
    head: PredictionHead = "free"  # what the prediction reads: see the module's docstring
    # dkt: the standard LSTM model beside it (gainakt/dkt.py), which reads d_model, dropout, max_len
    kind: ModelKind = "gainakt2exp"

    def __post_init__(self) -> None:
        if self.heads >= 1 and self.d_model % self.heads:
            raise ConfigError(f"model.heads={self.heads} does not divide model.d_model={self.d_model}")
        for name in ("d_model", "heads", "blocks", "d_ff", "max_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not self.mastery_step > 0:
            raise ConfigError(f"model.mastery_step must be > 0, got {self.mastery_step}")


@dataclass(frozen=True)
class States:
    """Everything one forward pass exposes, in every mode."""

    logits: torch.Tensor  # [B, T], of r[t+1]
    mastery: torch.Tensor  # [B, T, C] in [0, 1], after interaction t
    gains: torch.Tensor  # [B, T, C], learning gain credited by interaction t
    context: torch.Tensor  # [B, T, D]
    value: torch.Tensor  # [B, T, D]
    # [B, T], the part of the logit that bypasses the mastery: the free MLP's output with head `mixed`,
    # zeros with head `mastery`; None with head `free`, which has no mastery path (the whole logit
    # bypasses the mastery, so the metric residual_share counts all of it and the loss nothing)
    residual: torch.Tensor | None = None
    # [B, T], the mean |change of p[t]| when m[t, c[t+1]] moves by +-SENSITIVITY_STEP (clipped to
    # [0, 1]) with everything else fixed, through the model's own head; no gradient; 0 with head `free`.
    # None (for states not made by the model): taken as 0, a prediction that does not read the mastery
    mastery_sensitivity: torch.Tensor | None = None


class Tracer(nn.Module):
    """A knowledge-tracing model the trainer, the metrics and the losses read: all of it in `States`."""

    def __init__(self, cfg: ModelOptions, num_concepts: int) -> None:
        super().__init__()
        if num_concepts < 1:
            raise ValueError(f"num_concepts must be at least 1, got {num_concepts}")
        self.cfg = cfg
        self.num_concepts = num_concepts

    def forward_with_states(self, batch: Batch) -> States:
        return self(batch.concepts, batch.responses, batch.next_concepts)
