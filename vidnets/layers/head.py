"""Classification head on pooled features: hidden 1x1 conv, dropout, classifier.

Returns logits; no softmax inside the model. ``hidden_bias=False``: the hidden conv has no
bias (X3D's ``lin_5``).
"""

from __future__ import annotations

import torch
from torch import nn

from .conv import ConvBNAct, ConvOp


class ClassifierHead(nn.Module):
    """``[B, C, 1, 1, 1]`` -> ``[B, num_classes]`` logits."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int, *,
                 activation: str = "swish", dropout: float = 0.0, op: ConvOp = "3d",
                 hidden_bias: bool = True) -> None:
        super().__init__()
        self.op = op
        self.head = ConvBNAct(in_channels, hidden, op=op, bias=hidden_bias, norm=False,
                              activation=activation)
        self.dropout = nn.Dropout(dropout)
        self.classifier = ConvBNAct(hidden, num_classes, op=op, bias=True, norm=False)

    @property
    def num_classes(self) -> int:
        return self.classifier.conv.out_channels

    def reset(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one of ``num_classes`` outputs."""
        device = self.classifier.conv.weight.device
        self.classifier = ConvBNAct(self.classifier.conv.in_channels, num_classes, op=self.op,
                                    bias=True, norm=False).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.head(x))
        return self.classifier(x).flatten(1)
