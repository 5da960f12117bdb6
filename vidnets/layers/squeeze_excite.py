"""Squeeze-excitation: global 3D, or causal ``2plus3d`` with a positional encoding.

``"3d"``: gate from the average over the whole clip (causal: over all frames so far).
``"2plus3d"``: gate per frame from ``concat([temporal average so far, this frame])`` of
the spatial means (2C channels), as the official streaming MoViNets do.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .conv import ConvBNAct, ConvOp
from .pooling import CumulativeAvgPool, spatial_mean
from .scale import Scale
from .state import FrameCounter, State

SEType = Literal["3d", "2plus3d"]


def sinusoid_encoding(positions: torch.Tensor, channels: int) -> torch.Tensor:
    """TF MoViNet's encoding: ``[B, T]`` positions -> ``[B, T, channels]``.

    Angles ``pos / 10000^(2*(i//2)/channels)``; the output is ``sin`` of the even
    channels followed by ``cos`` of the odd ones (concatenated, not interleaved).
    """
    idx = torch.arange(channels, device=positions.device)
    power = (2 * (idx // 2)).to(positions.dtype) / channels
    angles = 1.0 / torch.pow(10000.0, power)
    radians = positions[..., None] * angles
    return torch.cat([torch.sin(radians[..., 0::2]), torch.cos(radians[..., 1::2])], dim=-1)


class PositionalEncoding(nn.Module):
    """Adds ``scale * sinusoid(frame index)`` to pooled features ``[B, C, T, 1, 1]``.

    ``scale`` starts at zero (ReZero) as in the official code. State:
    ``{prefix}_pos_enc_frame_count`` ``[B]``, so streamed frames get their true index.
    """

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.rezero = Scale(0.0)
        self.counter = FrameCounter(f"{prefix}_pos_enc_frame_count")

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return self.counter.init_state(batch, device)

    def forward(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        b, c, t = x.shape[:3]
        seen = self.counter.read(state, x)
        positions = seen[:, None] + torch.arange(t, dtype=x.dtype, device=x.device)[None, :]
        encoding = sinusoid_encoding(positions, c).transpose(1, 2)[..., None, None]
        return x + self.rezero(encoding), {self.counter.key: seen + t}


class SqueezeExcite(nn.Module):
    """Channel gating ``x * gate(pool(x))`` on ``[B, C, T, H, W]``.

    ``reduce``/``expand`` are 1x1 convs with bias and no BN (``op`` follows the conv
    layout so weights match the official checkpoints of that layout).
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        *,
        se_type: SEType = "3d",
        causal: bool = False,
        activation: str = "swish",
        gating: str = "sigmoid",
        positional_encoding: bool = False,
        op: ConvOp = "3d",
        state_prefix: str = "",
    ) -> None:
        super().__init__()
        if se_type not in ("3d", "2plus3d"):
            raise ValueError(f"unknown squeeze-excitation type {se_type!r}")
        if positional_encoding and not causal:
            raise ValueError("the positional encoding is only defined for causal models")
        self.se_type = se_type
        self.channels = channels
        self.pool = CumulativeAvgPool(state_prefix) if causal else None
        self.pos_encoding = PositionalEncoding(state_prefix) if positional_encoding else None
        pooled = 2 * channels if se_type == "2plus3d" else channels
        self.se_reduce = ConvBNAct(pooled, hidden, op=op, bias=True, norm=False,
                                   activation=activation)
        self.se_expand = ConvBNAct(hidden, channels, op=op, bias=True, norm=False,
                                   activation=gating)

    def init_state(self, batch: int, *, dtype: torch.dtype,
                   device: torch.device | None = None) -> State:
        state: State = {}
        if self.pool is not None:
            state.update(self.pool.init_state(batch, self.channels, dtype=dtype, device=device))
        if self.pos_encoding is not None:
            state.update(self.pos_encoding.init_state(batch, device))
        return state

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        new_state: State = {}
        frames = spatial_mean(x)
        if self.pool is not None:
            pooled, new_state = self.pool(frames, state)
        else:
            pooled = frames.mean(dim=2, keepdim=True)
        if self.se_type == "2plus3d":
            pooled = torch.cat([pooled.expand_as(frames), frames], dim=1)
        if self.pos_encoding is not None:
            pooled, pos_state = self.pos_encoding(pooled, state)
            new_state.update(pos_state)
        gate = self.se_expand(self.se_reduce(pooled))
        return x * gate, new_state
