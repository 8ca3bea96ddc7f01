"""GainAKT2Exp: a two-stream causal transformer with per-concept learning gains and mastery.

Shapes: B batch, T positions, D d_model, H heads, C concepts.
Interaction token `c + C * r`; the context stream feeds queries and keys, the value
stream feeds values. The model predicts r[t+1] from interactions 0..t and c[t+1].

The prediction head (`ModelOptions.head`) says whether the prediction reads the mastery:
`free` is an MLP on [context; value; embedding(c[t+1])] that does not (the mastery is a probe
beside it); `mastery` reads the prediction out of the mastery of the next concept alone,
logit p[t] = a * logit(m[t, c[t+1]]) + b[c[t+1]] with a > 0; `mixed` adds the free MLP's output
to that as a residual.

The mastery (`ModelOptions.mastery`): `cumulative` adds the gains up, m[t] = clip(m[t-1] + s * g[t],
0, 1), so with non-negative gains it never goes down; `direct` is a linear sigmoid head on the
context stream; `deep` reads an MLP student state of both streams against each concept's embedding,
sigmoid(<state[t], E[k]> / sqrt(D) + bias[k]), as much as the free head sees. A mastery head reading
a direct mastery is a logistic model of the context alone and costs AUC where the free MLP's
non-linearity matters (benchmarks/heads.py); a deep one does not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dkt import DKT
from .guarantees import NON_NEGATIVE_GAINS
from .tracer import SENSITIVITY_STEP, ModelOptions, States, Tracer

MASTERY_EPS = 1e-4  # the mastery read out is clamped to [eps, 1 - eps], so its logit is finite (+-9.2)


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
        q, k = qk.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, D/H]
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


class MasteryReadout(nn.Module):
    """The mastery path of a `mastery` or `mixed` head: logit = a * logit(clamp(m, eps, 1 - eps)) + b[c]
    for the mastery m[t, c[t+1]] of the next concept c[t+1], with one learned a = softplus(raw_scale) > 0
    and a learned bias b per concept. It starts at a = 1 and b = 0, where p = m. It draws nothing from
    the random generator."""

    def __init__(self, num_concepts: int) -> None:
        super().__init__()
        self.raw_scale = nn.Parameter(torch.tensor(math.log(math.e - 1)))  # softplus^-1(1)
        self.bias = nn.Parameter(torch.zeros(num_concepts))

    @property
    def scale(self) -> Tensor:
        return F.softplus(self.raw_scale)

    def forward(self, next_mastery: Tensor, next_concepts: Tensor) -> Tensor:
        """next_mastery m[t, c[t+1]] and next_concepts c[t+1], [B, T] -> the logit [B, T]."""
        # In fp32 whatever the autocast: bf16 rounds 1 - eps to 1 (its spacing below 1 is 2^-8), and
        # the logit of 1 is infinite.
        with torch.autocast(next_mastery.device.type, enabled=False):
            m = next_mastery.float().clamp(MASTERY_EPS, 1 - MASTERY_EPS)
            return self.scale * torch.logit(m) + self.bias[next_concepts]


class GainAKT2Exp(Tracer):
    def __init__(self, cfg: ModelOptions, num_concepts: int) -> None:
        super().__init__(cfg, num_concepts)
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
        if cfg.head != "mastery":  # the free MLP: the whole head of `free`, the residual of `mixed`
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
        elif cfg.mastery == "direct":
            self.mastery_head = nn.Linear(d, c)
        else:  # deep: a student state from both streams, read out per concept
            self.mastery_state = nn.Sequential(
                nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, d)
            )
            self.mastery_bias = nn.Parameter(torch.zeros(c))
        if cfg.head != "free":  # last: a `mixed` model starts as a `free` one of the same seed, plus this
            self.readout = MasteryReadout(c)

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
        mastery = self._mastery(context, value, gains)

        if self.cfg.head == "mastery":
            residual = torch.zeros(next_concepts.shape, device=mastery.device, dtype=mastery.dtype)
        else:
            # the free MLP on [context; value; embedding(c[t+1])], [B, T, 3D] -> [B, T]
            head_input = torch.cat([context, value, self.concept_embedding(next_concepts)], dim=-1)
            residual = self.head(head_input).squeeze(-1)
        if self.cfg.head == "free":  # the free MLP is the whole logit; it does not read the mastery
            sensitivity = torch.zeros_like(residual.detach())
            return States(residual, mastery, gains, context, value, mastery_sensitivity=sensitivity)
        next_mastery = mastery.gather(-1, next_concepts.unsqueeze(-1)).squeeze(-1)  # [B, T], m[t, c[t+1]]
        logits = self.readout(next_mastery, next_concepts) + residual
        sensitivity = self._sensitivity(logits, next_mastery, next_concepts, residual)
        return States(logits, mastery, gains, context, value, residual, sensitivity)

    @torch.no_grad()
    def _sensitivity(
        self, logits: Tensor, next_mastery: Tensor, next_concepts: Tensor, residual: Tensor
    ) -> Tensor:
        """An intervention through the head: (|p(m + s) - p(m)| + |p(m) - p(m - s)|) / 2 per position,
        the moved m clipped to [0, 1], the residual and everything else held fixed -> [B, T]."""
        p = torch.sigmoid(logits)
        up, down = (
            torch.sigmoid(self.readout((next_mastery + step).clamp(0.0, 1.0), next_concepts) + residual)
            for step in (SENSITIVITY_STEP, -SENSITIVITY_STEP)
        )
        return ((up - p).abs() + (p - down).abs()) / 2

    def _mastery(self, context: torch.Tensor, value: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        """Mastery [B, T, C] in [0, 1] after each interaction: a linear head on the context (direct);
        an MLP student state on [context; value] against each concept's embedding, sigmoid(<state[t],
        E[k]> + bias[k]) (deep); or the clipped recursion m[t] = clip(m[t-1] + s * g[t], 0, 1) from
        m[-1] = sigmoid(initial mastery of the context at interaction 0) (cumulative)."""
        if self.cfg.mastery == "direct":
            return torch.sigmoid(self.mastery_head(context))
        if self.cfg.mastery == "deep":
            state = self.mastery_state(torch.cat([context, value], dim=-1))  # [B, T, D]
            # scaled as attention scores are, so that the mastery does not start saturated
            scores = state @ self.concept_embedding.weight.T / math.sqrt(state.shape[-1])  # [B, T, C]
            return torch.sigmoid(scores + self.mastery_bias)
        initial = torch.sigmoid(self.initial_mastery(context[:, :1]))  # [B, 1, C], m[-1]
        s = self.cfg.mastery_step
        if self.cfg.gains in NON_NEGATIVE_GAINS:
            # Closed form m[t] = clip(m[-1] + s * sum_{k<=t} g[k], 0, 1), exact for gains >= 0: the
            # unclipped sums never decrease and start at m[-1] >= 0, so the lower clip never binds, and
            # once a sum reaches 1 every later one stays >= 1, as the recursion stays at 1.
            return torch.clamp(initial + s * torch.cumsum(gains, dim=1), 0.0, 1.0)
        # Linear gains can be negative: after a clip binds the closed form would remember the excess
        # (a mastery pinned at 1 would need the gains above 1 undone before it could fall).
        return clipped_cumsum(initial, s * gains)


def clipped_cumsum(start: Tensor, steps: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    """The recursion m[t] = clip(m[t-1] + steps[t], low, high) from m[-1] = start, for every t at once.

    start [B, 1, C], steps [B, T, C] -> m [B, T, C], equal to the loop over t. Each step is the map
    x -> clip(x + a, lo, hi), and such maps compose into one of the same form:
    clip(clip(x + a1, lo1, hi1) + a2, lo2, hi2) = clip(x + a1 + a2, clip(lo1 + a2, lo2, hi2),
    clip(hi1 + a2, lo2, hi2)). So the prefix compositions come from a scan in ceil(log2 T) rounds of
    a few operations each (Hillis-Steele), instead of 2 T operations of a loop.
    """
    shift = steps  # [B, T, C]: a of the composed map from step 0 to t
    lower = torch.full_like(steps, low)  # lo of it
    upper = torch.full_like(steps, high)  # hi of it
    span = 1
    while span < steps.shape[1]:
        # compose each t's map after that of t - span (the earlier steps)
        earlier_shift, earlier_lower, earlier_upper = (x[:, :-span] for x in (shift, lower, upper))
        later_shift, later_lower, later_upper = (x[:, span:] for x in (shift, lower, upper))
        lower = torch.cat([lower[:, :span], _clip(earlier_lower + later_shift, later_lower, later_upper)], 1)
        upper = torch.cat([upper[:, :span], _clip(earlier_upper + later_shift, later_lower, later_upper)], 1)
        shift = torch.cat([shift[:, :span], earlier_shift + later_shift], dim=1)
        span *= 2
    return _clip(start + shift, lower, upper)


def _clip(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """clamp(x, low, high) whose gradient goes wholly to the bound it returns, even where low == high
    (a composed map that is constant: its value still depends on the steps through its bounds, and
    torch.clamp gives neither bound a gradient there)."""
    return torch.where(x < low, low, torch.where(x > high, high, x))


def build_model(cfg: ModelOptions, num_concepts: int) -> Tracer:
    """GainAKT2Exp, or DKT with `cfg.kind = dkt`."""
    if cfg.kind == "dkt":
        return DKT(cfg, num_concepts)
    return GainAKT2Exp(cfg, num_concepts)
