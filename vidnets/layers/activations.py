"""Activations used by the official video models, written as plain tensor ops.

No custom autograd functions and no in-place ops, so every activation traces and
exports cleanly (ONNX, ``torch.export``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ActivationName = Literal["swish", "hard_swish", "hard_sigmoid", "sigmoid", "relu", "identity"]

# The official TF ``hard_sigmoid`` multiplies by this rounded constant, not 1/6.
TF_HARD_SIGMOID_SCALE = 0.16667


class Swish(nn.Module):
    """``x * sigmoid(x)`` (a.k.a. SiLU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class HardSwish(nn.Module):
    """``x * relu6(x + 3) / 6`` (one fused kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x)


class HardSigmoid(nn.Module):
    """``relu6(x + 3) * 0.16667``, exactly as the official TF implementation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) * TF_HARD_SIGMOID_SCALE


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "swish": Swish,
    "hard_swish": HardSwish,
    "hard_sigmoid": HardSigmoid,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "identity": nn.Identity,
}


def make_activation(name: str | None) -> nn.Module:
    """Build an activation module by name (``None`` gives identity)."""
    if name is None:
        return nn.Identity()
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}"
        ) from None
