"""Parameter and multiply-add counts, measured with ``torch.utils.flop_counter``.

Counting runs on the ``meta`` device: shapes only, no arithmetic, so even MoViNet-A5
at 120x320x320 is counted in well under a second.

Convention: the MoViNet/X3D papers' "GFLOPs" are multiply-adds. PyTorch counts a
multiply-add as 2 FLOPs, so we report ``flop_counter total / 2``. Only convolutions
and matrix products are counted (as in the papers); activations, pooling and
normalisation are not.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Trainable parameters (``model.parameters()``)."""
    return sum(p.numel() for p in model.parameters())


def count_bn_statistics(model: nn.Module) -> int:
    """BatchNorm running mean + variance elements (TF's non-trainable count)."""
    return sum(b.numel() for name, b in model.named_buffers()
               if name.endswith(("running_mean", "running_var")))


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on an input of ``input_shape``."""
    meta = copy.deepcopy(model).to("meta") if _on_real_device(model) else model
    meta.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(input_shape, device="meta"))
    return counter.get_total_flops() // 2


def _on_real_device(model: nn.Module) -> bool:
    return any(p.device.type != "meta" for p in model.parameters())
