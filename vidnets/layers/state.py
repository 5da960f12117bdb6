"""Explicit streaming state: plain ``dict[str, Tensor]`` threaded through ``stream_step``.

Every stateful layer owns a few keys (named after the official TF MoViNet state names,
``state_block0_layer1_stream_buffer`` ...), creates them in ``init_state`` and returns
their new values from ``forward``; nothing is kept inside the module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

State = dict[str, torch.Tensor]


class StreamBuffer(nn.Module):
    """Keeps the last ``size`` frames in front of the next chunk (causal temporal context).

    State ``{prefix}_stream_buffer``: ``[B, C, size, H, W]``.
    """

    def __init__(self, size: int, prefix: str) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"stream buffer size must be >= 1, got {size}")
        self.size = size
        self.key = f"{prefix}_stream_buffer"

    def init_state(
        self, batch: int, channels: int, height: int, width: int, *, dtype: torch.dtype,
        device: torch.device | None = None,
    ) -> State:
        shape = (batch, channels, self.size, height, width)
        return {self.key: torch.zeros(shape, dtype=dtype, device=device)}

    def forward(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """``x`` ``[B, C, t, H, W]`` -> ``[B, C, size + t, H, W]`` and the new buffer."""
        if state is None:
            full = F.pad(x, (0, 0, 0, 0, self.size, 0))
        else:
            full = torch.cat([state[self.key], x], dim=2)
        return full, {self.key: full[:, :, -self.size:]}


class FrameCounter:
    """Names and creates a per-video frame counter ``[B]`` (float32) under ``key``."""

    def __init__(self, key: str) -> None:
        self.key = key

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return {self.key: torch.zeros(batch, dtype=torch.float32, device=device)}

    def read(self, state: State | None, x: torch.Tensor) -> torch.Tensor:
        """Frames seen before ``x`` (zeros when there is no state)."""
        if state is None:
            return x.new_zeros(x.shape[0])
        return state[self.key].to(x.dtype)
