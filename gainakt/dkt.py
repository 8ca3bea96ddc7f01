"""DKT (Piech et al., 2015), the standard model to stand beside GainAKT2Exp (`model.kind = dkt`).

An LSTM over interaction embeddings (token c + C * r) whose output layer gives, after each
interaction, the probability of a correct answer to every concept. That vector is its mastery
m[t, k], so its prediction of r[t+1] is exactly the mastery of the next concept (nothing bypasses
the mastery), and its gain g[t, k] is what interaction t changed, m[t, k] - m[t-1, k], from
m[-1] = sigmoid(output bias). It fills the same `States` as GainAKT2Exp, so the trainer, every
metric and every loss read it the same way. Of the model options it reads d_model (embedding and
hidden size), dropout and max_len.
"""

from __future__ import annotations

import torch
from torch import nn

from .tracer import SENSITIVITY_STEP, ModelOptions, States, Tracer


class DKT(Tracer):
    def __init__(self, cfg: ModelOptions, num_concepts: int) -> None:
        super().__init__(cfg, num_concepts)
        d = cfg.d_model
        self.embedding = nn.Embedding(2 * num_concepts, d)
        self.lstm = nn.LSTM(d, d, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(d, num_concepts)

    def forward(self, concepts: torch.Tensor, responses: torch.Tensor, next_concepts: torch.Tensor) -> States:
        """concepts, responses, next_concepts: long [B, T] -> States."""
        if concepts.shape[1] > self.cfg.max_len:
            raise ValueError(f"{concepts.shape[1]} positions exceed the model's max_len {self.cfg.max_len}")
        hidden, _ = self.lstm(self.embedding(concepts + self.num_concepts * responses))  # [B, T, D]
        scores = self.output(self.dropout(hidden))  # [B, T, C], logit of a correct answer to each concept
        mastery = torch.sigmoid(scores)
        logits = scores.gather(-1, next_concepts.unsqueeze(-1)).squeeze(-1)  # [B, T], logit m[t, c[t+1]]
        start = torch.sigmoid(self.output.bias).expand(mastery.shape[0], 1, -1)  # m[-1]
        gains = mastery - torch.cat([start, mastery[:, :-1]], dim=1)
        with torch.no_grad():  # p is m: moving m moves p as much, clipped to [0, 1]
            p = torch.sigmoid(logits)
            up, down = (p + SENSITIVITY_STEP).clamp(max=1.0), (p - SENSITIVITY_STEP).clamp(min=0.0)
            sensitivity = ((up - p) + (p - down)) / 2
        return States(logits, mastery, gains, hidden, hidden, torch.zeros_like(logits), sensitivity)
