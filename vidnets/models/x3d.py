"""X3D-XS, -S, -M, -L and -XL (Feichtenhofer, "X3D: Expanding Architectures for Efficient
Video Recognition", CVPR 2020), whole-clip and streaming.

Every variant is the X2D base network (:data:`BASE`) expanded by the paper's factors
(:data:`EXPANSIONS`: clip length, frame rate, spatial size, width, bottleneck width,
depth); one builder, :class:`X3D`, makes all of them from the shared layers. Built layer
for layer as pytorchvideo 0.1.5 ``create_x3d`` (whose hub checkpoints load exactly):

* stem: 1x3x3/2 conv then depthwise 5x1x1 conv, one BN, ReLU;
* four stages of residual inverted bottlenecks: 1x1x1 conv-BN-ReLU, depthwise 3x3x3 conv
  (spatial stride 2 in a stage's first block)-BN, squeeze-excite (1/16, ReLU, sigmoid) on
  blocks 0, 2, 4 ..., swish, 1x1x1 conv-BN; the shortcut is a strided 1x1x1 conv where the
  shape changes (with BN only where the width changes, as pytorchvideo: stage 1 keeps the
  stem's width); ReLU after the sum;
* head: 1x1x1 conv-BN-ReLU, global average pool, 2048-wide 1x1x1 conv (no bias), ReLU,
  dropout, linear classifier -> logits (the official heads end in a softmax). They also pool
  with a fixed window sized from the training clip; the global average here equals it at
  that size and serves any other.

PySlowFast's X3D has a BN on stage 1's first shortcut too; its checkpoints load with that
BN folded into the conv (``vidnets.weights.x3d``), exact for inference.

Streaming variants (``x3d_*_stream``) are the same blocks with causal temporal convs (stream
buffers), cumulative squeeze-excite and cumulative global pooling; they have the same
parameter names, so a whole-clip checkpoint initialises them (a starting point for
fine-tuning: the causal model computes a different function, not the official one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..config import ModelConfig
from ..layers import (
    TORCH_CONV_STYLE,
    ClassifierHead,
    ConvBNAct,
    GlobalAvgPool,
    SpatioTemporalConv,
    SqueezeExcite,
    State,
    Swish,
    make_divisible,
)
from .base import StagedClassifier


@dataclass(frozen=True)
class BaseNetwork:
    """The X2D network that every X3D expands (PySlowFast's ``X3D`` defaults)."""

    stem_channels: int = 12  # X3D.DIM_C1
    stage_channels: tuple[int, ...] = (12, 24, 48, 96)  # stem width, then doubled per stage
    stage_blocks: tuple[int, ...] = (1, 2, 5, 3)
    stem_kernel: tuple[int, int, int] = (5, 3, 3)
    block_kernel: tuple[int, int, int] = (3, 3, 3)
    head_filters: int = 2048  # X3D.DIM_C5
    se_ratio: float = 1 / 16


BASE = BaseNetwork()


@dataclass(frozen=True)
class Expansion:
    """One X3D instance: the paper's expansion factors of :data:`BASE`."""

    frames: int  # gamma_t: clip length
    sample_rate: int  # 1 / gamma_tau: frame stride at 30 fps
    train_size: int  # gamma_s: training crop
    test_size: int  # evaluation crop (short side)
    width: float  # gamma_w: channel width multiplier
    bottleneck: float  # gamma_b: inner width of a block / its output width
    depth: float  # gamma_d: block count multiplier


EXPANSIONS: dict[str, Expansion] = {
    "xs": Expansion(4, 12, 160, 182, 2.0, 2.25, 2.2),
    "s": Expansion(13, 6, 160, 182, 2.0, 2.25, 2.2),
    "m": Expansion(16, 5, 224, 256, 2.0, 2.25, 2.2),
    "l": Expansion(16, 5, 312, 356, 2.0, 2.25, 5.0),
    "xl": Expansion(16, 5, 312, 356, 2.9, 2.25, 5.0),
}


@dataclass(frozen=True)
class StageSpec:
    blocks: int
    out_channels: int
    inner_channels: int  # depthwise conv width


def stage_specs(expansion: Expansion, base: BaseNetwork = BASE) -> tuple[StageSpec, ...]:
    """The stages of an expanded network (PySlowFast's rounding: widths to multiples of 8)."""
    specs = []
    for channels, blocks in zip(base.stage_channels, base.stage_blocks, strict=True):
        out = make_divisible(channels * expansion.width, 8)
        specs.append(StageSpec(math.ceil(blocks * expansion.depth), out,
                               int(expansion.bottleneck * out)))
    return tuple(specs)


class X3DBlock(nn.Module):
    """Residual inverted bottleneck: ``[B, C, T, H, W]`` -> ``[B, C', T, H/s, W/s]``."""

    def __init__(self, in_channels: int, out_channels: int, inner_channels: int, stride: int,
                 *, se_channels: int | None, causal: bool, prefix: str,
                 kernel: tuple[int, int, int] = BASE.block_kernel) -> None:
        super().__init__()
        self.expansion = ConvBNAct(in_channels, inner_channels, activation="relu",
                                   **TORCH_CONV_STYLE)
        self.feature = SpatioTemporalConv(inner_channels, inner_channels, kernel,
                                          (1, stride, stride), depthwise=True, causal=causal,
                                          state_prefix=prefix, **TORCH_CONV_STYLE)
        self.se = None if se_channels is None else SqueezeExcite(
            inner_channels, se_channels, causal=causal, activation="relu", gating="sigmoid",
            state_prefix=prefix)
        self.act = Swish()
        self.projection = ConvBNAct(inner_channels, out_channels, **TORCH_CONV_STYLE)
        self.skip = None
        if in_channels != out_channels or stride > 1:
            self.skip = ConvBNAct(in_channels, out_channels, stride=(1, stride, stride),
                                  norm=in_channels != out_channels, **TORCH_CONV_STYLE)
        self.relu = nn.ReLU()

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.feature.output_size(height, width)

    def init_state(self, batch: int, height: int, width: int, *, dtype: torch.dtype,
                   device: torch.device | None) -> State:
        state = self.feature.init_state(batch, height, width, dtype=dtype, device=device)
        if self.se is not None:
            state.update(self.se.init_state(batch, dtype=dtype, device=device))
        return state

    def forward(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        y = self.expansion(x)
        y, new_state = self.feature(y, state)
        if self.se is not None:
            y, se_state = self.se(y, state)
            new_state = {**new_state, **se_state}
        y = self.projection(self.act(y))
        shortcut = x if self.skip is None else self.skip(x)
        return self.relu(y + shortcut), new_state


class X3D(StagedClassifier):
    """X3D from an :class:`Expansion`; input ``[B, 3, T, H, W]`` normalised RGB, any T/H/W.

    ``causal=True`` builds the streaming variant (``init_state`` / ``stream_step``).
    """

    def __init__(self, expansion: Expansion, num_classes: int = 400, *, causal: bool = False,
                 dropout: float = 0.5, base: BaseNetwork = BASE) -> None:
        super().__init__()
        self.causal = causal
        stem_channels = make_divisible(base.stem_channels * expansion.width, 8)
        self.stem = SpatioTemporalConv(
            3, stem_channels, base.stem_kernel, (1, 2, 2), layout="3d_2plus1d",
            temporal_depthwise=True, spatial_norm=False, causal=causal, activation="relu",
            state_prefix="state_stem", **TORCH_CONV_STYLE)
        specs = stage_specs(expansion, base)
        stages = []
        in_channels = stem_channels
        for i, spec in enumerate(specs):
            se_channels = make_divisible(spec.inner_channels * base.se_ratio, 8)
            stages.append(nn.ModuleList(
                X3DBlock(in_channels if j == 0 else spec.out_channels, spec.out_channels,
                         spec.inner_channels, 2 if j == 0 else 1,
                         se_channels=None if j % 2 else se_channels, causal=causal,
                         prefix=f"state_block{i}_layer{j}", kernel=base.block_kernel)
                for j in range(spec.blocks)))
            in_channels = spec.out_channels
        self.stages = nn.ModuleList(stages)
        head_channels = specs[-1].inner_channels
        self.project = ConvBNAct(in_channels, head_channels, activation="relu", **TORCH_CONV_STYLE)
        self.pool = GlobalAvgPool("state_head" if causal else None)
        self.head = ClassifierHead(head_channels, base.head_filters, num_classes,
                                   activation="relu", dropout=dropout, hidden_bias=False)

    def stateful_blocks(self) -> list[X3DBlock]:
        """All blocks, stage by stage."""
        return [block for stage in self.stages for block in stage]


def create_x3d(model_id: str, *, stream: bool = False, num_classes: int = 400,
               **kwargs) -> X3D:
    """Build ``x3d_{model_id}`` (``_stream``: the causal variant)."""
    if model_id not in EXPANSIONS:
        raise ValueError(f"unknown X3D {model_id!r}; expected one of {sorted(EXPANSIONS)}")
    return X3D(EXPANSIONS[model_id], num_classes, causal=stream, **kwargs)


X3D_URL = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_{}.pyth"
KINETICS_FPS = 30
# top-1, top-5 (Kinetics-400 val) and GFLOPs (multiply-adds per view) of the paper. M, L,
# XL: Table 4 (30 views, at the test crop). XS, S: Table 3 (10 center views at the 160^2
# training crop), the paper's only figures for them.
_PAPER = {
    "xs": (68.6, 87.9, 0.60), "s": (72.9, 90.5, 1.96), "m": (76.0, 92.3, 6.2),
    "l": (77.5, 92.9, 24.8), "xl": (79.1, 93.9, 48.4),
}
# Exact trainable parameters with 400 classes (XS/S/M/L equal pytorchvideo 0.1.5
# ``create_x3d``; XL equals it with ``width_factor=2.9, depth_factor=5.0``).
_PARAMS = {"xs": 3_794_274, "s": 3_794_274, "m": 3_794_274, "l": 6_153_384,
           "xl": 11_095_840}
_HUB = {"xs": "XS", "s": "S", "m": "M", "l": "L"}  # pytorchvideo hub checkpoints


def _config(model_id: str, stream: bool) -> ModelConfig:
    expansion = EXPANSIONS[model_id]
    top1, top5, gflops = _PAPER[model_id]
    weights = {}
    if model_id in _HUB and not stream:
        weights["kinetics400"] = X3D_URL.format(_HUB[model_id])
    return ModelConfig(
        name=f"x3d_{model_id}{'_stream' if stream else ''}", family="x3d",
        build=partial(create_x3d, model_id, stream=stream), frames=expansion.frames,
        size=expansion.test_size, fps=KINETICS_FPS / expansion.sample_rate,
        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), num_classes=400,
        label_set="kinetics400", causal=stream, params=_PARAMS[model_id], gflops=gflops,
        top1=None if stream else top1, top5=None if stream else top5,
        dataset="kinetics400", weights=weights,
    )


CONFIGS: tuple[ModelConfig, ...] = tuple(
    _config(model_id, stream) for stream in (False, True) for model_id in EXPANSIONS)
