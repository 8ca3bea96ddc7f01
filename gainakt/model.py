"""GainAKT2Exp: a two-stream causal transformer with per-concept learning gains and mastery.

Shapes: B batch, T positions, D d_model, H heads, C concepts.
Interaction token `c + C * r`; the context stream feeds queries and keys, the value
stream feeds values. The model predicts r[t+1] from interactions 0..t and c[t+1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Batch
from .errors import ConfigError
from .guarantees import NON_NEGATIVE_GAINS

Attention = Literal["legacy", "intrinsic"]
GainActivation = Literal["relu", "softplus", "linear"]
MasteryMode = Literal["cumulative", "direct"]


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


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "softplus": nn.Softplus, "linear": nn.Identity}


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class Block(nn.Module):
    """Causal attention with queries and keys from the context stream and values from the value
    stream, then a feed-forward sub-layer on the context stream. A subclass says what the values are:
    its `build_values` makes their parameters and its `attend` turns the attention into
    (the update of the context stream, the next value stream)."""

    values_are_gains: bool  # the value stream is the C-wide gains, not a D-wide embedding

    def __init__(self, cfg: ModelOptions, num_concepts: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.heads = cfg.heads
        self.dropout = cfg.dropout  # of the attention weights
        # The creation order is the parameter order (optimizer states follow it) and the order the
        # initialisation draws from the random generator, so `build_values` comes in between.
        self.query_key = nn.Linear(d, 2 * d)
        self.build_values(d, num_concepts)
        self.norm_attn = nn.LayerNorm(d)
        self.ff = FeedForward(d, cfg.d_ff, cfg.dropout)
        self.norm_ff = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def build_values(self, d: int, c: int) -> None:
        raise NotImplementedError

    def attend(self, q: Tensor, k: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def attention(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)

    def forward(self, context: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        b, t, d = context.shape
        qk = self.query_key(context).view(b, t, 2, self.heads, d // self.heads)
        q, k = qk.permute(2, 0, 3, 1, 4)  # each [B, H, T, D/H]
        update, value = self.attend(q, k, value)  # [B, T, D], [B, T, D or C]
        context = self.norm_attn(context + update)
        context = self.norm_ff(context + self.drop(self.ff(context)))
        return context, value


class LegacyBlock(Block):
    """Values are the D-wide value stream; the attention output updates both streams."""

    values_are_gains = False

    def build_values(self, d: int, c: int) -> None:
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.norm_value = nn.LayerNorm(d)

    def attend(self, q: Tensor, k: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        b, h, t, dh = q.shape
        v = self.value(value).view(b, t, h, dh).transpose(1, 2)  # [B, H, T, D/H]
        attended = self.attention(q, k, v).transpose(1, 2).reshape(b, t, h * dh)  # [B, T, D]
        update = self.drop(self.out(attended))
        return update, self.norm_value(value + update)


class IntrinsicBlock(Block):
    """Values are the C-wide gains; each head aggregates them with its own non-negative
    per-concept scale, and the mean over the heads is the next gains."""

    values_are_gains = True

    def build_values(self, d: int, c: int) -> None:
        self.gain_scale = nn.Parameter(torch.zeros(self.heads, 1, c))  # softplus(0) ~ 0.69 per head
        self.out = nn.Linear(c, d)

    def attend(self, q: Tensor, k: Tensor, gains: Tensor) -> tuple[Tensor, Tensor]:
        v = gains.unsqueeze(1) * F.softplus(self.gain_scale)  # [B, H, T, C]
        gains = self.attention(q, k, v).mean(1)  # [B, T, C]
        return self.drop(self.out(gains)), gains


BLOCKS: dict[str, type[Block]] = {"legacy": LegacyBlock, "intrinsic": IntrinsicBlock}


class GainAKT2Exp(nn.Module):
    def __init__(self, cfg: ModelOptions, num_concepts: int) -> None:
        super().__init__()
        if num_concepts < 1:
            raise ValueError(f"num_concepts must be at least 1, got {num_concepts}")
        self.cfg = cfg
        self.num_concepts = num_concepts
        d, c = cfg.d_model, num_concepts
        block = BLOCKS[cfg.attention]
        self.values_are_gains = block.values_are_gains
        self.activate = ACTIVATIONS[cfg.gains]()  # of the gains
        self.context_embedding = nn.Embedding(2 * c, d)
        value_width = c if block.values_are_gains else d
        self.value_embedding = nn.Embedding(2 * c, value_width)
        self.context_position = nn.Embedding(cfg.max_len, d)
        self.value_position = nn.Embedding(cfg.max_len, value_width)
        self.concept_embedding = nn.Embedding(c, d)
        self.blocks = nn.ModuleList(block(cfg, c) for _ in range(cfg.blocks))
        self.head = nn.Sequential(
            nn.Linear(3 * d, d),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(d, d // 2),
            nn.GELU(),
            nn.Linear(d // 2, 1),
        )
        if block.values_are_gains:
            self.gain_projection = nn.Linear(c, d)  # gains -> the value input of the prediction head
        else:
            self.gain_head = nn.Linear(d, c)
        if cfg.mastery == "cumulative":
            self.initial_mastery = nn.Linear(d, c)
        else:
            self.mastery_head = nn.Linear(d, c)

    def forward_with_states(self, batch: Batch) -> States:
        return self(batch.concepts, batch.responses, batch.next_concepts)

    def forward(self, concepts: torch.Tensor, responses: torch.Tensor, next_concepts: torch.Tensor) -> States:
        """concepts, responses, next_concepts: long [B, T] -> States."""
        t = concepts.shape[1]
        if t > self.cfg.max_len:
            raise ValueError(f"{t} positions exceed the model's max_len {self.cfg.max_len}")
        tokens = concepts + self.num_concepts * responses  # [B, T]
        positions = torch.arange(t, device=concepts.device)
        context = self.context_embedding(tokens) + self.context_position(positions)  # [B, T, D]
        value = self.value_embedding(tokens) + self.value_position(positions)  # [B, T, D or C]
        if self.values_are_gains:
            value = self.activate(value)
        for block in self.blocks:
            context, value = block(context, value)

        if self.values_are_gains:
            gains = value  # the last block's aggregated gains, returned up the stack
            value = self.gain_projection(gains)  # [B, T, D]
        else:
            gains = self.activate(self.gain_head(value))  # [B, T, C]
        mastery = self._mastery(context, gains)

        head_input = torch.cat([context, value, self.concept_embedding(next_concepts)], dim=-1)  # [B, T, 3D]
        logits = self.head(head_input).squeeze(-1)  # [B, T]
        return States(logits=logits, mastery=mastery, gains=gains, context=context, value=value)

    def _mastery(self, context: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        """Mastery [B, T, C] in [0, 1] after each interaction: a head on the context (direct), or
        the clipped recursion m[t] = clip(m[t-1] + s * g[t], 0, 1) from m[-1] = sigmoid(initial
        mastery of the context at interaction 0) (cumulative)."""
        if self.cfg.mastery == "direct":
            return torch.sigmoid(self.mastery_head(context))
        initial = torch.sigmoid(self.initial_mastery(context[:, :1]))  # [B, 1, C], m[-1]
        s = self.cfg.mastery_step
        if self.cfg.gains in NON_NEGATIVE_GAINS:
            # Closed form m[t] = clip(m[-1] + s * sum_{k<=t} g[k], 0, 1), exact for gains >= 0: the
            # unclipped sums never decrease and start at m[-1] >= 0, so the lower clip never binds, and
            # once a sum reaches 1 every later one stays >= 1, as the recursion stays at 1.
            return torch.clamp(initial + s * torch.cumsum(gains, dim=1), 0.0, 1.0)
        # Linear gains can be negative: after a clip binds the closed form would remember the excess
        # (a mastery pinned at 1 would need the gains above 1 undone before it could fall), so loop.
        mastery = initial[:, 0]  # [B, C]
        steps = []
        for t in range(gains.shape[1]):
            mastery = torch.clamp(mastery + s * gains[:, t], 0.0, 1.0)
            steps.append(mastery)
        return torch.stack(steps, dim=1)  # [B, T, C]
