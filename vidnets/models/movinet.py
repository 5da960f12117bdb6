"""MoViNet A0-A5 (Kondratyuk et al., CVPR 2021), base and streaming.

The variants are data: ``BLOCK_SPECS`` (the official tables) and :class:`MoViNetOptions`
(base vs stream). One builder, :class:`MoViNet`, makes all of them from the shared layers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from ..config import ModelConfig
from ..layers import (
    ClassifierHead,
    ConvBNAct,
    DropPath,
    GlobalAvgPool,
    Layout,
    SameAvgPool2d,
    Scale,
    SpatioTemporalConv,
    SqueezeExcite,
    State,
    make_divisible,
)
from ..layers.conv import ConvOp, check_layout
from ..layers.squeeze_excite import SEType
from .base import StagedClassifier

Triple = tuple[int, int, int]

# K(ab): a (a, b, b) kernel; S(ab): an (a, b, b) stride.
K13: Triple = (1, 3, 3)
K15: Triple = (1, 5, 5)
K33: Triple = (3, 3, 3)
K53: Triple = (5, 3, 3)
S11: Triple = (1, 1, 1)
S12: Triple = (1, 2, 2)


@dataclass(frozen=True)
class StemSpec:
    filters: int
    kernel_size: Triple
    strides: Triple


@dataclass(frozen=True)
class MovinetBlockSpec:
    base_filters: int
    expand_filters: tuple[int, ...]
    kernel_sizes: tuple[Triple, ...]
    strides: tuple[Triple, ...]

    def __post_init__(self) -> None:
        if not len(self.expand_filters) == len(self.kernel_sizes) == len(self.strides):
            raise ValueError(f"block spec lengths differ: {self}")


@dataclass(frozen=True)
class HeadSpec:
    project_filters: int
    head_filters: int


Spec = tuple[StemSpec, tuple[MovinetBlockSpec, ...], HeadSpec]


def _block(base: int, expand: tuple[int, ...], kernels: tuple[Triple, ...],
           first_stride: Triple) -> MovinetBlockSpec:
    """A stage: the first layer may downsample, the others keep the resolution."""
    return MovinetBlockSpec(base, expand, kernels, (first_stride,) + (S11,) * (len(expand) - 1))


BLOCK_SPECS: dict[str, Spec] = {
    "a0": (
        StemSpec(8, K13, S12),
        (
            _block(8, (24,), (K15,), S12),
            _block(32, (80, 80, 80), (K33, K33, K33), S12),
            _block(56, (184, 112, 184), (K53, K33, K33), S12),
            _block(56, (184, 184, 184, 184), (K53, K33, K33, K33), S11),
            _block(104, (384, 280, 280, 344), (K53, K15, K15, K15), S12),
        ),
        HeadSpec(480, 2048),
    ),
    "a1": (
        StemSpec(16, K13, S12),
        (
            _block(16, (40, 40), (K15, K33), S12),
            _block(40, (96, 120, 96, 96), (K33, K33, K33, K33), S12),
            _block(64, (216, 128, 216, 168, 216), (K53, K33, K33, K33, K33), S12),
            _block(64, (216, 216, 216, 128, 128, 216), (K53, K33, K33, K33, K15, K33), S11),
            _block(136, (456, 360, 360, 360, 456, 456, 544),
                   (K53, K15, K15, K15, K15, K33, K13), S12),
        ),
        HeadSpec(600, 2048),
    ),
    "a2": (
        StemSpec(16, K13, S12),
        (
            _block(16, (40, 40, 64), (K15, K33, K33), S12),
            _block(40, (96, 120, 96, 96, 120), (K33, K33, K33, K33, K33), S12),
            _block(72, (240, 160, 240, 192, 240), (K53, K33, K33, K33, K33), S12),
            _block(72, (240, 240, 240, 240, 144, 240), (K53, K33, K33, K33, K15, K33), S11),
            _block(144, (480, 384, 384, 480, 480, 480, 576),
                   (K53, K15, K15, K15, K15, K33, K13), S12),
        ),
        HeadSpec(640, 2048),
    ),
    "a3": (
        StemSpec(16, K13, S12),
        (
            _block(16, (40, 40, 64, 40), (K15, K33, K33, K33), S12),
            _block(48, (112, 144, 112, 112, 144, 144), (K33, K33, K33, K15, K33, K33), S12),
            _block(80, (240, 152, 240, 192, 240), (K53, K33, K33, K33, K33), S12),
            _block(88, (264, 264, 264, 264, 160, 264, 264, 264),
                   (K53, K33, K33, K33, K15, K33, K33, K33), S11),
            _block(168, (560, 448, 448, 560, 560, 560, 448, 448, 560, 672),
                   (K53, K15, K15, K15, K15, K33, K15, K15, K33, K13), S12),
        ),
        HeadSpec(744, 2048),
    ),
    "a4": (
        StemSpec(24, K13, S12),
        (
            _block(24, (64, 64, 96, 64, 96, 64), (K15, K33, K33, K33, K33, K33), S12),
            _block(56, (168, 168, 136, 136, 168, 168, 168, 136, 136),
                   (K33, K33, K33, K33, K33, K33, K33, K15, K33), S12),
            _block(96, (320, 160, 320, 192, 320, 160, 320, 256, 320),
                   (K53, K33, K33, K33, K33, K33, K33, K33, K33), S12),
            _block(96, (320, 320, 320, 320, 192, 320, 320, 192, 320, 320),
                   (K53, K33, K33, K33, K15, K33, K33, K33, K33, K33), S11),
            _block(192, (640, 512, 512, 640, 640, 640, 512, 512, 640, 768, 640, 640, 768),
                   (K53, K15, K15, K15, K15, K33, K15, K15, K15, K15, K15, K33, K33), S12),
        ),
        HeadSpec(856, 2048),
    ),
    "a5": (
        StemSpec(24, K13, S12),
        (
            _block(24, (64, 64, 96, 64, 96, 64), (K15, K15, K33, K33, K33, K33), S12),
            _block(64, (192, 152, 152, 152, 192, 192, 192, 152, 152, 192, 192),
                   (K53, K33, K33, K33, K33, K33, K33, K33, K33, K33, K33), S12),
            _block(112, (376, 224, 376, 376, 296, 376, 224, 376, 376, 296, 376, 376, 376),
                   (K53,) + (K33,) * 12, S12),
            _block(120, (376, 376, 376, 376, 224, 376, 376, 224, 376, 376, 376),
                   (K53, K33, K33, K33, K15, K33, K33, K33, K33, K33, K33), S11),
            _block(224, (744, 744, 600, 600, 744, 744, 744, 896, 600, 600, 896, 744, 744, 896,
                         600, 600, 744, 744),
                   (K53, K33, K15, K15, K15, K15, K33, K15, K15, K15, K15, K15, K33, K15, K15,
                    K15, K15, K33), S12),
        ),
        HeadSpec(992, 2048),
    ),
}


@dataclass(frozen=True)
class MoViNetOptions:
    """How a spec is built; the two official settings are :data:`BASE` and :data:`STREAM`."""

    causal: bool = False
    conv_type: Layout = "3d"
    se_type: SEType = "3d"
    activation: str = "swish"
    gating_activation: str = "sigmoid"
    classifier_activation: str = "swish"
    use_positional_encoding: bool = False
    se_ratio: float = 0.25


BASE = MoViNetOptions()
STREAM = MoViNetOptions(causal=True, conv_type="2plus1d", se_type="2plus3d",
                        activation="hard_swish", gating_activation="hard_sigmoid")
STREAM_POSITIONAL = MoViNetOptions(**{**STREAM.__dict__, "use_positional_encoding": True})


class SkipBlock(nn.Module):
    """Shortcut that changes width or resolution: 3x3/2 "same" avg pool, 1x1 conv, BN."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, op: ConvOp) -> None:
        super().__init__()
        self.pool = SameAvgPool2d(3, 2) if downsample else None
        self.skip_project = ConvBNAct(in_channels, out_channels, op=op)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        return self.skip_project(x)


class MovinetBlock(nn.Module):
    """Inverted bottleneck: expand 1x1, depthwise spatiotemporal conv, SE, project 1x1.

    The residual branch is scaled by a learnable ReZero scalar before the skip is added.
    """

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: Triple,
                 stride: Triple, opts: MoViNetOptions, *, prefix: str,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        op: ConvOp = "frames" if opts.conv_type == "2plus1d" else "3d"
        act = opts.activation
        self.expansion = ConvBNAct(in_channels, expand, op=op, activation=act)
        self.feature = SpatioTemporalConv(expand, expand, kernel, stride, layout=opts.conv_type,
                                          depthwise=True, causal=opts.causal, activation=act,
                                          state_prefix=prefix)
        se_width = expand * (2 if opts.se_type == "2plus3d" else 1)
        self.se = SqueezeExcite(
            expand, make_divisible(opts.se_ratio * se_width, 8), se_type=opts.se_type,
            causal=opts.causal, activation=act, gating=opts.gating_activation,
            positional_encoding=opts.use_positional_encoding and opts.causal, op=op,
            state_prefix=prefix)
        self.projection = ConvBNAct(expand, out_channels, op=op)
        self.rezero = Scale(0.0)
        self.drop_path = DropPath(drop_path)
        downsample = any(s > 1 for s in stride)
        self.skip = (SkipBlock(in_channels, out_channels, downsample, op)
                     if downsample or in_channels != out_channels else None)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.feature.output_size(height, width)

    def init_state(self, batch: int, height: int, width: int, *, dtype: torch.dtype,
                   device: torch.device | None) -> State:
        return {**self.feature.init_state(batch, height, width, dtype=dtype, device=device),
                **self.se.init_state(batch, dtype=dtype, device=device)}

    def forward(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        y = self.expansion(x)
        y, feature_state = self.feature(y, state)
        y, se_state = self.se(y, state)
        y = self.drop_path(self.rezero(self.projection(y)))
        shortcut = x if self.skip is None else self.skip(x)
        return y + shortcut, {**feature_state, **se_state}


class MoViNet(StagedClassifier):
    """MoViNet from a spec; input ``[B, 3, T, H, W]`` RGB in ``[0, 1]``, any T/H/W.

    Causal models (``opts.causal``) also stream with ``init_state`` / ``stream_step``.
    """

    def __init__(self, spec: Spec, num_classes: int = 600, opts: MoViNetOptions = BASE, *,
                 dropout: float = 0.5, drop_path: float = 0.0) -> None:
        super().__init__()
        check_layout(opts.conv_type)
        stem, blocks, head = spec
        self.opts = opts
        self.causal = opts.causal
        op: ConvOp = "frames" if opts.conv_type == "2plus1d" else "3d"
        self.stem = SpatioTemporalConv(3, stem.filters, stem.kernel_size, stem.strides,
                                       layout=opts.conv_type, causal=opts.causal,
                                       activation=opts.activation, state_prefix="state_stem")
        layers: list[MovinetBlock] = []
        in_channels = stem.filters
        num_layers = sum(len(b.expand_filters) for b in blocks)
        for i, block in enumerate(blocks):
            for j, (expand, kernel, stride) in enumerate(
                    zip(block.expand_filters, block.kernel_sizes, block.strides, strict=True)):
                rate = drop_path * (len(layers) + 1) / num_layers
                layers.append(MovinetBlock(in_channels, block.base_filters, expand, kernel,
                                           stride, opts, prefix=f"state_block{i}_layer{j}",
                                           drop_path=rate))
                in_channels = block.base_filters
        self.blocks = nn.ModuleList(layers)
        self.project = ConvBNAct(in_channels, head.project_filters, op=op,
                                 activation=opts.activation)
        self.pool = GlobalAvgPool("state_head" if opts.causal else None)
        self.head = ClassifierHead(head.project_filters, head.head_filters, num_classes,
                                   activation=opts.classifier_activation, dropout=dropout, op=op)
        kernels = [stem.kernel_size] + [k for b in blocks for k in b.kernel_sizes]
        self.min_frames = 1 if opts.causal else max(k[0] for k in kernels)

    def stateful_blocks(self) -> nn.ModuleList:
        return self.blocks


def frame_level_spec(spec: Spec) -> Spec:
    """The same network with every temporal kernel size set to 1: a per-frame 2D network."""
    def per_frame(kernel: Triple) -> Triple:
        return (1, kernel[1], kernel[2])

    stem, blocks, head = spec
    return (
        replace(stem, kernel_size=per_frame(stem.kernel_size)),
        tuple(replace(b, kernel_sizes=tuple(map(per_frame, b.kernel_sizes))) for b in blocks),
        head,
    )


def create_movinet(model_id: str, *, stream: bool, num_classes: int = 600,
                   frame_level: bool = False, conv_type: Layout | None = None,
                   **kwargs) -> MoViNet:
    """Build ``movinet_{model_id}_{base|stream}`` with the official settings.

    ``conv_type`` replaces the official layout, e.g. ``"3d_2plus1d"`` for a stream model
    trained with sub-batch BN (Multigrid); its weights load into either layout.

    ``frame_level=True`` (base models only) builds the frame-level baseline: every temporal
    kernel is 1, and the squeeze-excitation and the head average over the whole clip, so the
    logits are a function of the set of frames, blind to their order.
    """
    if model_id not in BLOCK_SPECS:
        raise ValueError(f"unknown MoViNet {model_id!r}; expected one of {sorted(BLOCK_SPECS)}")
    if frame_level and stream:
        raise ValueError("frame_level=True needs stream=False: the causal squeeze-excitation of "
                         "stream models sees the frame order")
    opts = BASE
    if stream:
        opts = STREAM_POSITIONAL if model_id in ("a3", "a4", "a5") else STREAM
    if conv_type is not None:
        opts = replace(opts, conv_type=conv_type)
    spec = frame_level_spec(BLOCK_SPECS[model_id]) if frame_level else BLOCK_SPECS[model_id]
    return MoViNet(spec, num_classes, opts, **kwargs)


MOVINET_URL = "https://storage.googleapis.com/tf_model_garden/vision/movinet/{name}.tar.gz"
# (frames, size, fps) of the official Kinetics-600 evaluation clips, official GFLOPs, and
# top-1/top-5 of the seed tables: base K600, stream K600, base K400.
_MOVINET = {
    "a0": (50, 172, 5, 2.7, (72.28, 90.92), (72.05, 90.63), (69.40, 89.18)),
    "a1": (50, 172, 5, 6.0, (76.69, 93.40), (76.45, 93.25), (74.57, 92.03)),
    "a2": (50, 224, 5, 10.0, (78.62, 94.17), (78.40, 94.05), (75.91, 92.63)),
    "a3": (120, 256, 12, 57.0, (81.79, 95.67), (80.09, 94.84), (79.34, 94.52)),
    "a4": (80, 290, 8, 110.0, (83.48, 96.16), (81.49, 95.66), (80.64, 94.93)),
    "a5": (120, 320, 12, 280.0, (84.27, 96.39), (82.37, 95.79), (81.39, 95.06)),
}
# Exact trainable parameter counts with 600 classes (equal to tf-models-official 2.20).
_MOVINET_PARAMS = {
    "a0": (3_111_799, 3_748_031), "a1": (4_690_296, 6_447_352), "a2": (5_249_562, 7_326_962),
    "a3": (7_397_545, 10_986_618), "a4": (11_349_463, 18_136_182),
    "a5": (18_650_523, 31_495_934),
}


def _config(model_id: str, stream: bool) -> ModelConfig:
    frames, size, fps, gflops, base_acc, stream_acc, _ = _MOVINET[model_id]
    name = f"movinet_{model_id}_{'stream' if stream else 'base'}"
    urls = {"kinetics600": MOVINET_URL.format(name=name)}
    if not stream:
        urls["kinetics400"] = MOVINET_URL.format(name=f"{name}_k400")
    top1, top5 = stream_acc if stream else base_acc
    return ModelConfig(
        name=name, family="movinet", build=partial(create_movinet, model_id, stream=stream),
        frames=frames, size=size, fps=fps, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        num_classes=600, label_set="kinetics600", causal=stream,
        params=_MOVINET_PARAMS[model_id][stream], gflops=gflops, top1=top1, top5=top5,
        dataset="kinetics600", weights=urls,
    )


CONFIGS: tuple[ModelConfig, ...] = tuple(
    _config(model_id, stream) for model_id in BLOCK_SPECS for stream in (False, True))
