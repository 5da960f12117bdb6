"""VoV3D-M and -L (Lee et al., "Diverse Temporal Aggregation and Depthwise Spatiotemporal
Factorization for Efficient Video Classification", 2020), whole-clip and streaming.

Built exactly as the official code (``youngwanLEE/VoV3D``: ``vov3d_helper.py``,
``vov3d_model_builder.py`` and its final YAML configs):

* stem: 1x3x3/2 conv then depthwise 5x1x1 conv, one BN, ReLU (PySlowFast's X3D stem);
* D(2+1)D layer: 1x1x1 expand-BN-ReLU, depthwise 1x3x3 then depthwise 3x1x1 conv (no BN
  between them), BN, squeeze-excite (1/16, ReLU, on layers 0, 2, 4), swish, 1x1x1
  project-BN to half the expansion, identity shortcut when the shape allows, ReLU;
* T-OSA module: a chain of D(2+1)D layers whose temporal receptive fields grow by 2 frames
  each; their outputs (and the input, at stride 1) are concatenated once and aggregated by
  a 1x1x1 conv-BN; plus a (projected) shortcut and ReLU. The first module of every stage
  halves the resolution;
* head: 1x1x1 conv-BN-ReLU, global average pool, 2048-wide 1x1x1 conv (no bias), ReLU,
  dropout, linear classifier.

The official head pools with a fixed ``[16, 7, 7]`` window and averages softmax scores
over the windows that remain; at 16x224x224 (its training size) that is the global average
used here, which also serves any other input size.

Every variant is the one builder :class:`VoV3D` over a :data:`SPECS` table; the streaming
variants are the same blocks with causal temporal convs (stream buffers), cumulative
squeeze-excite and cumulative global pooling. They have the base models' parameters, so a
base checkpoint loads into them (``create_model("vov3d_m_stream", weights=...)``): a
starting point for causal fine-tuning, as every temporal conv now sees past frames only.

Reference figures. The exact parameter counts are those of the official final configs
(M: ``INNER_CH 40, NUM_CONV 5``, stages 1-2-3-2; L: ``INNER_CH 48, NUM_CONV 5``, stages
1-2-5-3). Measured multiply-adds (convs + linear) at 16x224x224: M 4.92 G, L 9.31 G
(16x256x256, the official test crop: 6.42 G / 12.16 G, which the final official README
reports for M and for L on Something-Something). The seed README's VoV3D-M row (3.8 M /
3.3 M parameters, 4.4 / 5.7 GFLOPs) matches no input size of this model: it describes the
repository's earlier M config (``INNER_CH 48, NUM_CONV 4``, stages 1-1-2-2: 3,800,448 /
3,337,374 parameters, 4.42 G at 16x224x224, 5.77 G at 16x256x256). The registry keeps the
seed's accuracy figures; the final official README lists the 3.7 M model (whose weights
the registry links) at 74.7 / 92.1 % on K400 and 63.6 / 88.6 % on SSv2.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
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
    make_activation,
    make_divisible,
)
from .base import StagedClassifier

SE_RATIO = 0.0625


@dataclass(frozen=True)
class StageSpec:
    blocks: int  # T-OSA modules; the first one halves height and width
    out_channels: int  # T-OSA output width
    inner_channels: int  # expansion width of each D(2+1)D layer (which outputs half of it)


@dataclass(frozen=True)
class VoV3DSpec:
    stem_channels: int
    stages: tuple[StageSpec, ...]
    layers_per_block: int  # D(2+1)D layers aggregated by one T-OSA (official NUM_CONV)
    head_channels: int  # head conv before pooling
    head_filters: int = 2048  # hidden width after pooling (official X3D.DIM_C5)


# The official configs derive every width from INNER_CH = c: stem c/2, stage outputs
# c * (1/2, 1, 2, 4), expansions c * (1, 2, 4, 8), head c * 8.
SPECS: dict[str, VoV3DSpec] = {
    "m": VoV3DSpec(20, (StageSpec(1, 20, 40), StageSpec(2, 40, 80), StageSpec(3, 80, 160),
                        StageSpec(2, 160, 320)), layers_per_block=5, head_channels=320),
    "l": VoV3DSpec(24, (StageSpec(1, 24, 48), StageSpec(2, 48, 96), StageSpec(5, 96, 192),
                        StageSpec(3, 192, 384)), layers_per_block=5, head_channels=384),
}


class D2plus1DLayer(nn.Module):
    """D(2+1)D bottleneck: ``[B, C, T, H, W]`` -> ``[B, inner / 2, T, H / s, W / s]``."""

    def __init__(self, in_channels: int, inner: int, stride: int, *, se: bool, causal: bool,
                 prefix: str) -> None:
        super().__init__()
        self.expand = ConvBNAct(in_channels, inner, activation="relu", **TORCH_CONV_STYLE)
        self.feature = SpatioTemporalConv(
            inner, inner, (3, 3, 3), (1, stride, stride), layout="3d_2plus1d", depthwise=True,
            spatial_norm=False, causal=causal, state_prefix=prefix, **TORCH_CONV_STYLE)
        self.se = SqueezeExcite(inner, make_divisible(inner * SE_RATIO, 8), causal=causal,
                                activation="relu", state_prefix=prefix) if se else None
        self.act = make_activation("swish")
        self.project = ConvBNAct(inner, inner // 2, **TORCH_CONV_STYLE)
        self.residual = in_channels == inner // 2 and stride == 1

    def init_state(self, batch: int, height: int, width: int, *, dtype: torch.dtype,
                   device: torch.device | None) -> State:
        state = self.feature.init_state(batch, height, width, dtype=dtype, device=device)
        if self.se is not None:
            state.update(self.se.init_state(batch, dtype=dtype, device=device))
        return state

    def forward(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        y, new_state = self.feature(self.expand(x), state)
        if self.se is not None:
            y, se_state = self.se(y, state)
            new_state.update(se_state)
        y = self.project(self.act(y))
        return F.relu(y + x if self.residual else y), new_state


class TOSABlock(nn.Module):
    """Temporal one-shot aggregation module with its shortcut.

    ``[B, C, T, H, W]`` -> ``[B, out, T, H / s, W / s]``: the D(2+1)D layers run in a chain,
    their outputs (after the input when ``stride == 1``) are concatenated once along channels
    and aggregated by a 1x1x1 conv-BN; the (projected) input is added and ReLU applied.
    """

    def __init__(self, in_channels: int, stage: StageSpec, num_layers: int, stride: int, *,
                 causal: bool, prefix: str) -> None:
        super().__init__()
        half = stage.inner_channels // 2
        self.layers = nn.ModuleList(
            D2plus1DLayer(in_channels if i == 0 else half, stage.inner_channels,
                          stride if i == 0 else 1, se=i % 2 == 0, causal=causal,
                          prefix=f"{prefix}_layer{i}")
            for i in range(num_layers))
        self.keep_input = stride == 1
        concat = num_layers * half + (in_channels if self.keep_input else 0)
        self.aggregate = ConvBNAct(concat, stage.out_channels, **TORCH_CONV_STYLE)
        self.shortcut = (ConvBNAct(in_channels, stage.out_channels, (1, 1, 1),
                                   (1, stride, stride), **TORCH_CONV_STYLE)
                         if in_channels != stage.out_channels or stride != 1 else None)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.layers[0].feature.output_size(height, width)

    def init_state(self, batch: int, height: int, width: int, *, dtype: torch.dtype,
                   device: torch.device | None) -> State:
        state = self.layers[0].init_state(batch, height, width, dtype=dtype, device=device)
        height, width = self.output_size(height, width)
        for layer in self.layers[1:]:
            state.update(layer.init_state(batch, height, width, dtype=dtype, device=device))
        return state

    def forward(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        outputs = [x] if self.keep_input else []
        new_state: State = {}
        y = x
        for layer in self.layers:
            y, layer_state = layer(y, state)
            outputs.append(y)
            new_state.update(layer_state)
        y = self.aggregate(torch.cat(outputs, dim=1))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(y + shortcut), new_state


class VoV3D(StagedClassifier):
    """VoV3D from a spec; input ``[B, 3, T, H, W]`` RGB, mean/std-normalised, any T/H/W.

    ``causal=True`` builds the streaming variant (``init_state`` / ``stream_step``).
    """

    def __init__(self, spec: VoV3DSpec, num_classes: int = 400, *, causal: bool = False,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.causal = causal
        self.stem = SpatioTemporalConv(
            3, spec.stem_channels, (5, 3, 3), (1, 2, 2), layout="3d_2plus1d",
            temporal_depthwise=True, spatial_norm=False, causal=causal, activation="relu",
            state_prefix="state_stem", **TORCH_CONV_STYLE)
        in_channels = spec.stem_channels
        stages = []
        for i, stage in enumerate(spec.stages):
            blocks = []
            for j in range(stage.blocks):
                blocks.append(TOSABlock(in_channels, stage, spec.layers_per_block,
                                        2 if j == 0 else 1, causal=causal,
                                        prefix=f"state_stage{i}_block{j}"))
                in_channels = stage.out_channels
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.project = ConvBNAct(in_channels, spec.head_channels, activation="relu",
                                 **TORCH_CONV_STYLE)
        self.pool = GlobalAvgPool("state_head" if causal else None)
        self.head = ClassifierHead(spec.head_channels, spec.head_filters, num_classes,
                                   activation="relu", dropout=dropout, hidden_bias=False)

    def stateful_blocks(self) -> list[TOSABlock]:
        """All T-OSA modules in order."""
        return [block for stage in self.stages for block in stage]


def create_vov3d(model_id: str, *, stream: bool = False, num_classes: int = 400,
                 **kwargs) -> VoV3D:
    """Build VoV3D-``model_id`` (``"m"`` or ``"l"``), causal when ``stream``."""
    if model_id not in SPECS:
        raise ValueError(f"unknown VoV3D {model_id!r}; expected one of {sorted(SPECS)}")
    return VoV3D(SPECS[model_id], num_classes, causal=stream, **kwargs)


_DROPBOX = "https://dl.dropbox.com/s/{}"
# Per variant: exact parameters (400 / 174 classes), measured GFLOPs at 16x224x224, the
# seed's top-1/top-5 (K400 and SSv2, 16 frames, from scratch) and the official weights.
_VOV3D = {
    "m": ((3_667_360, 3_204_286), 4.92, (73.9, 91.6), (63.2, 88.2),
          ("8qbewp3teb51jfb/vov3d_M_k400_weight.pth", "hz34ltdl6iukdxc/vov3d_M_f16_ssv2.pth")),
    "l": ((6_297_168, 5_834_094), 9.31, (76.3, 92.9), (64.1, 88.6),
          ("ah2azwbocxro9qa/vov3d_L_k400_weight.pth", "678efl8zyrmq7ch/vov3d_L_f16_ssv2.pth")),
}
_MEAN, _STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
# Kinetics: 16 frames every 5th of 30 fps. SSv2: one frame from each of 16 equal segments of
# the whole video (clips last about 4 s), about 4 fps.
_KINETICS_FPS, _SSV2_FPS = 6.0, 4.0


def _config(model_id: str, variant: str) -> ModelConfig:
    """``variant``: ``"k400"`` (base), ``"ssv2"`` or ``"stream"`` (causal, K400 head)."""
    (params_k400, params_ssv2), gflops, k400_acc, ssv2_acc, (k400_url, ssv2_url) = \
        _VOV3D[model_id]
    ssv2, stream = variant == "ssv2", variant == "stream"
    name = f"vov3d_{model_id}" + {"k400": "", "ssv2": "_ssv2", "stream": "_stream"}[variant]
    dataset = "something_something_v2" if ssv2 else "kinetics400"
    top1, top5 = (None, None) if stream else ssv2_acc if ssv2 else k400_acc
    return ModelConfig(
        name=name, family="vov3d",
        build=partial(create_vov3d, model_id, stream=stream, num_classes=174 if ssv2 else 400),
        frames=16, size=224, fps=_SSV2_FPS if ssv2 else _KINETICS_FPS, mean=_MEAN, std=_STD,
        num_classes=174 if ssv2 else 400, label_set=dataset, causal=stream,
        params=params_ssv2 if ssv2 else params_k400, gflops=gflops, top1=top1, top5=top5,
        dataset=dataset,
        weights={} if stream else {dataset: _DROPBOX.format(ssv2_url if ssv2 else k400_url)},
    )


CONFIGS: tuple[ModelConfig, ...] = tuple(
    _config(model_id, variant) for model_id in SPECS for variant in ("k400", "ssv2", "stream"))
