"""The critic: a small feed-forward network on the policy's last hidden state that predicts the expected return."""

from __future__ import annotations

import torch
from torch import nn


class Critic(nn.Module):
    """hidden state (..., H) -> value (...). GELU MLP with the given hidden widths; the output layer starts at zero
    so the first advantages are the raw rewards."""

    def __init__(self, hidden_size: int, widths=(256,)):
        super().__init__()
        layers, d = [], hidden_size
        for w in widths:
            layers += [nn.Linear(d, int(w)), nn.GELU()]
            d = int(w)
        self.head = nn.Linear(d, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.body = nn.Sequential(*layers)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(hidden)).squeeze(-1)


def explained_variance(sums: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) from the reduced sums [n, sum R, sum R^2, sum e, sum e^2] with e = R - V; nan when
    the returns have no variance."""
    n, sr, sr2, se, se2 = sums.tolist()
    if n < 2:
        return float("nan")
    var_r = sr2 / n - (sr / n) ** 2
    var_e = se2 / n - (se / n) ** 2
    return float("nan") if var_r <= 1e-10 else 1.0 - var_e / var_r
