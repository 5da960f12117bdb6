"""Inference form of a model: BatchNorm folded into its convolution, and the ``2plus1d``
deploy layout (``Conv2d`` on frames / along time instead of ``Conv3d`` with a unit kernel).

Works layer by layer on every :class:`~vidnets.layers.ConvBNAct`, so every family (MoViNet,
X3D, VoV3D; base and stream; trained in any layout) gets the same treatment. The result
computes the same function (float32, up to rounding) and keeps the streaming state names.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..layers import ConvBNAct, aggregate_sub_batch_stats, convert_to_batch_norm
from ..models.base import VideoClassifier


def fuse_conv_bn(conv: nn.Conv2d | nn.Conv3d, bn: nn.modules.batchnorm._BatchNorm
                 ) -> nn.Conv2d | nn.Conv3d:
    """A conv with bias computing ``bn(conv(x))`` (eval-mode BN)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = copy.deepcopy(conv)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    fused.weight = nn.Parameter(conv.weight.detach() * scale.reshape(shape))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def to_2d(conv: nn.Conv3d, op: str) -> nn.Conv2d:
    """The ``Conv2d`` of ``ConvBNAct`` op ``"frames"`` (``1 x kh x kw``) or ``"time"``
    (``kt x 1 x 1``) equal to a ``Conv3d`` with that kernel."""
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = conv.kernel_size, conv.stride, conv.padding
    if op == "frames":
        kernel, stride, padding, squeeze = (kh, kw), (sh, sw), (ph, pw), 2
    else:
        kernel, stride, padding, squeeze = (kt, 1), (st, 1), (pt, 0), 4
    new = nn.Conv2d(conv.in_channels, conv.out_channels, kernel, stride, padding,
                    groups=conv.groups, bias=conv.bias is not None)
    new.weight = nn.Parameter(conv.weight.detach().squeeze(squeeze))
    if conv.bias is not None:
        new.bias = nn.Parameter(conv.bias.detach())
    return new


def _deploy_op(layer: ConvBNAct) -> str:
    """The 2-D op a 3-D ``ConvBNAct`` can become (or ``"3d"`` if it mixes time and space)."""
    if layer.op != "3d":
        return layer.op
    kt, kh, kw = layer.kernel
    st, sh, sw = layer.stride
    if kt == 1 and st == 1:
        return "frames"
    if (kh, kw, sh, sw) == (1, 1, 1, 1):
        return "time"
    return "3d"


def deploy_layer(layer: ConvBNAct, *, fold_bn: bool = True, layout_2d: bool = True) -> None:
    """In place: fold ``layer.bn`` into its conv, and switch a unit-kernel ``Conv3d`` to 2-D."""
    if fold_bn and layer.bn is not None:
        layer.conv = fuse_conv_bn(layer.conv, layer.bn)
        layer.bn = None
    op = _deploy_op(layer)
    if layout_2d and op != layer.op:
        if layer.bn is not None:
            bn = nn.BatchNorm2d(layer.bn.num_features, eps=layer.bn.eps)
            bn.load_state_dict(layer.bn.state_dict())
            layer.bn = bn.eval()
        layer.conv = to_2d(layer.conv, op)
        layer.op = op


def deploy_model(model: VideoClassifier, *, fold_bn: bool = True,
                 layout_2d: bool = True) -> VideoClassifier:
    """An eval-mode copy of ``model`` for inference and export: sub-batch BN statistics
    aggregated, BatchNorm folded, unit-kernel 3-D convs as 2-D (the ``2plus1d`` layout).

    The copy computes the same logits and streams with the same state."""
    deployed = copy.deepcopy(model).eval()
    aggregate_sub_batch_stats(deployed)
    convert_to_batch_norm(deployed)
    for layer in deployed.modules():
        if isinstance(layer, ConvBNAct):
            deploy_layer(layer, fold_bn=fold_bn, layout_2d=layout_2d)
    for p in deployed.parameters():
        p.requires_grad_(False)
    return deployed
