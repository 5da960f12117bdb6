"""Learnable scalar multiplier (ReZero-style residual scale of the official blocks)."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    """``y = scale * x`` with a scalar parameter initialised to ``init`` (0 = ReZero)."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x
