"""Batch normalisation with the official TF defaults."""

from __future__ import annotations

from torch import nn

# tf.keras BatchNormalization(momentum=0.99, epsilon=1e-3): the moving average keeps 99%
# of the old value, which is PyTorch momentum 0.01.
TF_BN_EPS = 1e-3
TF_BN_MOMENTUM = 0.01


def batch_norm(channels: int, dims: int, *, eps: float = TF_BN_EPS,
               momentum: float = TF_BN_MOMENTUM) -> nn.Module:
    """``BatchNorm2d`` (``dims=2``) or ``BatchNorm3d`` (``dims=3``)."""
    cls = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
    return cls(channels, eps=eps, momentum=momentum)
