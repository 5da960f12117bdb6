"""Pooling: TF-"same" average pooling, and global / causal-cumulative average pooling.

The streaming pools carry a running sum ``[B, C]`` and a frame counter ``[B]`` in the
state, so averaging over a streamed video equals averaging over the whole clip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .padding import f_pad_args, same_padding
from .state import FrameCounter, State


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Per-frame spatial average: ``[B, C, T, H, W]`` -> ``[B, C, T, 1, 1]``."""
    return x.mean(dim=(3, 4), keepdim=True)


class SameAvgPool2d(nn.Module):
    """``k x k`` / ``s`` average pool on every frame with TF "same" padding.

    Padded positions are excluded from the average (as TF does), also for the
    asymmetric padding of even sizes that PyTorch's ``avg_pool`` cannot express.
    """

    def __init__(self, kernel: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, C, T, ceil(H/s), ceil(W/s)]``."""
        h, w = x.shape[-2:]
        pads = f_pad_args([(0, 0), same_padding(h, self.kernel, self.stride),
                           same_padding(w, self.kernel, self.stride)])
        k, s = (1, self.kernel, self.kernel), (1, self.stride, self.stride)
        summed = F.avg_pool3d(F.pad(x, pads), k, s)
        valid = F.avg_pool3d(F.pad(x.new_ones(1, 1, 1, h, w), pads), k, s)
        return summed / valid


class CumulativeAvgPool(nn.Module):
    """Causal temporal average of per-frame features: ``y[t] = mean(x[0..t])``.

    Input and output ``[B, C, T, 1, 1]``. State: ``{prefix}_pool_buffer`` ``[B, C]`` (sum
    of all frames so far) and ``{prefix}_pool_frame_count`` ``[B]``.
    """

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.sum_key = f"{prefix}_pool_buffer"
        self.counter = FrameCounter(f"{prefix}_pool_frame_count")

    def init_state(self, batch: int, channels: int, *, dtype: torch.dtype,
                   device: torch.device | None = None) -> State:
        return {self.sum_key: torch.zeros(batch, channels, dtype=dtype, device=device),
                **self.counter.init_state(batch, device)}

    def forward(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        t = x.shape[2]
        seen = self.counter.read(state, x)
        total = x.cumsum(dim=2)
        if state is not None:
            total = total + state[self.sum_key][:, :, None, None, None]
        steps = torch.arange(1, t + 1, dtype=x.dtype, device=x.device)
        divisor = seen[:, None] + steps[None, :]
        y = total / divisor[:, None, :, None, None]
        new_state = {self.sum_key: total[:, :, -1, 0, 0], self.counter.key: seen + t}
        return y, new_state


class GlobalAvgPool(nn.Module):
    """Average over time and space, of the whole clip or of everything streamed so far.

    ``[B, C, T, H, W]`` -> ``[B, C, 1, 1, 1]``; sizes adapt to any input. With a
    ``prefix`` it is streamable: state ``{prefix}_pool_buffer`` ``[B, C]`` (sum of the
    per-frame spatial means) and ``{prefix}_pool_frame_count`` ``[B]``.
    """

    def __init__(self, prefix: str | None = None) -> None:
        super().__init__()
        self.sum_key = f"{prefix}_pool_buffer" if prefix else None
        self.counter = FrameCounter(f"{prefix}_pool_frame_count") if prefix else None

    def init_state(self, batch: int, channels: int, *, dtype: torch.dtype,
                   device: torch.device | None = None) -> State:
        if self.counter is None:
            return {}
        return {self.sum_key: torch.zeros(batch, channels, dtype=dtype, device=device),
                **self.counter.init_state(batch, device)}

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if state is None or self.counter is None:
            return x.mean(dim=(2, 3, 4), keepdim=True), {}
        t = x.shape[2]
        total = x.mean(dim=(3, 4)).sum(dim=2) + state[self.sum_key]
        seen = self.counter.read(state, x) + t
        y = total / seen[:, None]
        return y[:, :, None, None, None], {self.sum_key: total, self.counter.key: seen}
