"""The one-frame streaming graph in 4-D tensors only (frames as images, states as 4-D).

Mobile GPU delegates and several CPU runtimes reject or slow down on 5-D tensors; this
graph is the same network as ``stream_step`` with ``t = 1``, written with ``conv2d`` and
elementwise ops on ``[B, C, H, W]``. It is built from a deployed model (BN folded, see
:func:`~vidnets.deploy.fold.deploy_model`) for one input size, and keeps the model's state
names; :func:`frame_state` / :func:`clip_state` convert states between the two forms:

* stream buffer ``[B, C, L, H, W]`` <-> ``[B, C, L * H, W]`` (the ``L`` frames stacked
  along the height, oldest first: the graph concatenates and slices them without a
  reshape, so channels-last runtimes keep them in their layout);
* pooled sums ``[B, C]`` <-> ``[B, C, 1, 1]``; frame counters ``[B]`` <-> ``[B, 1, 1, 1]``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import (
    ClassifierHead,
    ConvBNAct,
    GlobalAvgPool,
    SameAvgPool2d,
    SpatioTemporalConv,
    SqueezeExcite,
    State,
    same_padding,
    sinusoid_encoding,
)
from ..layers.padding import f_pad_args
from ..models.base import StagedClassifier
from ..models.movinet import MovinetBlock
from ..models.vov3d import D2plus1DLayer, TOSABlock
from ..models.x3d import X3DBlock


def frame_state(state: State) -> State:
    """5-D-model state -> 4-D frame-graph state (same keys, same values)."""
    out = {}
    for key, value in state.items():
        if value.dim() == 5:
            b, c, n, h, w = value.shape
            value = value.reshape(b, c, n * h, w)
        out[key] = value.reshape(*value.shape, *(1,) * (4 - value.dim()))
    return out


def clip_state(state: State, template: State) -> State:
    """4-D frame-graph state -> the 5-D model's state shaped like ``template``."""
    return {key: state[key].reshape(ref.shape).contiguous() for key, ref in template.items()}


def _conv_module(layer: ConvBNAct) -> ConvBNAct:
    if layer.bn is not None:
        raise ValueError("build the frame graph from deploy_model(model): BatchNorm not folded")
    if layer.op != "frames":
        raise ValueError(f"expected a per-frame conv, got op {layer.op!r} kernel {layer.kernel}")
    return layer


class FrameConv(nn.Module):
    """A per-frame :class:`ConvBNAct` (BN folded) on ``[B, C, H, W]``."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.act = conv, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def symmetric_kernel(weight: torch.Tensor, pads: list[tuple[int, int]]
                     ) -> tuple[torch.Tensor, tuple[int, ...]]:
    """A kernel and symmetric padding equal to ``weight`` after the asymmetric TF "same"
    ``pads`` ``[(before, after)]`` per spatial dim, where ``after`` is ``before`` or
    ``before + 1``: the kernel grows by one leading zero tap in a dim padded ``(p, p + 1)``,
    so the conv pads ``after`` on both sides and no explicit pad op is needed."""
    padding = []
    for dim, (before, after) in enumerate(pads, start=weight.dim() - len(pads)):
        if after not in (before, before + 1):
            raise ValueError(f"cannot make padding {(before, after)} symmetric")
        if after == before + 1:
            weight = torch.cat([torch.zeros_like(weight.narrow(dim, 0, 1)), weight], dim=dim)
        padding.append(after)
    return weight, tuple(padding)


class PaddedFrameConv(FrameConv):
    """A :class:`FrameConv` with TF "same" padding the conv cannot express (strided,
    asymmetric), precomputed for one input size and applied with an explicit pad."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module, pads: list[tuple[int, int]]) -> None:
        super().__init__(conv, act)
        self.pads = pads
        self.pad = f_pad_args(pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(F.pad(x, self.pad)))

    def folded(self) -> FrameConv:
        """The same conv without the pad op (:func:`symmetric_kernel`)."""
        conv = self.conv
        weight, padding = symmetric_kernel(conv.weight.detach(), self.pads)
        new = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(weight.shape[-2:]),
                        conv.stride, padding, groups=conv.groups, bias=conv.bias is not None)
        new.weight = nn.Parameter(weight)
        if conv.bias is not None:
            new.bias = nn.Parameter(conv.bias.detach())
        return FrameConv(new, self.act)


def frame_conv(layer: ConvBNAct, height: int, width: int) -> FrameConv:
    """The frame form of a per-frame ``layer`` for ``height x width`` input."""
    conv = _conv_module(layer).conv
    if layer.static_padding:
        return FrameConv(conv, layer.act)
    _, kh, kw = layer.kernel
    _, sh, sw = layer.stride
    pads = [same_padding(height, kh, sh), same_padding(width, kw, sw)]
    if all(before == after for before, after in pads):
        conv = copy.deepcopy(conv)
        conv.padding = tuple(before for before, _ in pads)
        return FrameConv(conv, layer.act)
    return PaddedFrameConv(conv, layer.act, pads)


def fold_padding(module: nn.Module) -> nn.Module:
    """In place: every explicit pad of ``module`` folded into its conv (a larger kernel
    with zero taps; faster where the runtime's pad op costs more than the extra taps, as
    in ONNX Runtime, slower where odd kernel sizes lose optimised kernels, as in XNNPACK)."""
    for name, child in module.named_children():
        if isinstance(child, PaddedFrameConv):
            setattr(module, name, child.folded())
        elif isinstance(child, FrameAvgPool):
            child.fold_padding()
        else:
            fold_padding(child)
    return module


def _lag_weights(conv: nn.Conv2d | nn.Conv3d) -> tuple[torch.Tensor, int]:
    """Per-lag kernels ``[kt, C_out, C_in/g, kh, kw]`` (oldest first) and ``kt``."""
    w = conv.weight.detach()
    if w.dim() == 4:  # "time" op: [C_out, C_in/g, kt, 1]
        w = w[..., None]
    return w.permute(2, 0, 1, 3, 4).contiguous(), w.shape[2]


class FrameTemporal(nn.Module):
    """A causal conv over time on one frame ``[B, C, H, W]``, the last ``kt - 1`` input
    frames in the state stacked along the height (``[B, C, (kt - 1) * H, W]``, oldest
    first).

    The new frame is appended below the state (``cat`` along the height), the next state
    is the last ``kt - 1`` frames of that stack. A depthwise conv with a ``1 x 1`` spatial
    kernel (every streaming MoViNet) is one depthwise ``kt x 1`` ``conv2d`` with dilation
    ``H`` over the stack; other convs are ``sum_i conv2d(frame_i, W_i) + b``."""

    def __init__(self, layer: ConvBNAct, key: str, height: int, width: int) -> None:
        super().__init__()
        if layer.bn is not None:
            raise ValueError("build the frame graph from deploy_model(model)")
        conv = layer.conv
        weights, kt = _lag_weights(conv)
        self.key, self.kt, self.act = key, kt, layer.act
        self.groups = conv.groups
        self.depthwise_1x1 = conv.groups == conv.in_channels == conv.out_channels and \
            weights.shape[-2:] == (1, 1)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        if self.depthwise_1x1:
            self.register_buffer("weight", weights.permute(1, 2, 0, 3, 4).reshape(-1, 1, kt, 1))
            self.register_buffer("bias", bias)
            return
        # one buffer per lag: indexing a stacked buffer would copy weights on every call
        for i in range(kt):
            self.register_buffer(f"weight_{i}", weights[i].clone())
        self.register_buffer("bias", bias.reshape(1, -1, 1, 1))
        _, kh, kw = layer.kernel
        _, sh, sw = layer.stride
        self.stride = (sh, sw)
        self.pad = f_pad_args([same_padding(height, kh, sh), same_padding(width, kw, sw)]) \
            if not layer.static_padding else None
        self.padding = tuple(conv.padding[-2:]) if conv.weight.dim() == 5 and \
            layer.static_padding else (0, 0)

    def _conv(self, x: torch.Tensor, i: int) -> torch.Tensor:
        if self.pad is not None and any(self.pad):
            x = F.pad(x, self.pad)
        return F.conv2d(x, getattr(self, f"weight_{i}"), None, self.stride, self.padding, 1,
                        self.groups)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = x.shape[2]
        frames = torch.cat([state[self.key], x], dim=2)
        new_state = {self.key: frames[:, :, h:]}
        if self.depthwise_1x1:
            y = F.conv2d(frames, self.weight, self.bias, dilation=(h, 1), groups=self.groups)
            return self.act(y), new_state
        y = self.bias
        for i in range(self.kt):
            y = y + self._conv(frames[:, :, i * h:(i + 1) * h], i)
        return self.act(y), new_state


class FrameSpatioTemporal(nn.Module):
    """:class:`SpatioTemporalConv` on one frame ``[B, C, H, W]`` -> ``[B, C', H', W']``."""

    def __init__(self, layer: SpatioTemporalConv, height: int, width: int) -> None:
        super().__init__()
        self.spatial = self.temporal = None
        key = layer.buffer.key if layer.buffer is not None else ""
        if layer.conv_temporal is not None:
            self.spatial = frame_conv(layer.conv, height, width)
            h, w = layer.output_size(height, width)
            self.temporal = FrameTemporal(layer.conv_temporal, key, h, w) \
                if layer.buffer is not None else None
            if self.temporal is None:
                raise ValueError("a non-causal temporal conv cannot run one frame at a time")
        elif layer.buffer is not None:
            self.temporal = FrameTemporal(layer.conv, key, height, width)
        else:
            self.spatial = frame_conv(layer.conv, height, width)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.spatial is not None:
            x = self.spatial(x)
        if self.temporal is None:
            return x, {}
        return self.temporal(x, state)


class FrameSqueezeExcite(nn.Module):
    """Causal :class:`SqueezeExcite` on one frame: running mean of the spatial means in the
    state (``[B, C, 1, 1]`` sum and ``[B, 1, 1, 1]`` count), optional positional encoding."""

    def __init__(self, layer: SqueezeExcite) -> None:
        super().__init__()
        if layer.pool is None:
            raise ValueError("a non-causal squeeze-excitation cannot run one frame at a time")
        self.sum_key, self.count_key = layer.pool.sum_key, layer.pool.counter.key
        self.concat = layer.se_type == "2plus3d"
        self.pos_key = self.rezero = None
        if layer.pos_encoding is not None:
            self.pos_key = layer.pos_encoding.counter.key
            self.rezero = layer.pos_encoding.rezero
        self.reduce = frame_conv(layer.se_reduce, 1, 1)
        self.expand = frame_conv(layer.se_expand, 1, 1)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        frame = x.mean(dim=(2, 3), keepdim=True)
        total = state[self.sum_key] + frame
        count = state[self.count_key] + 1.0
        pooled = total / count
        new_state = {self.sum_key: total, self.count_key: count}
        if self.concat:
            pooled = torch.cat([pooled, frame], dim=1)
        if self.pos_key is not None:
            seen = state[self.pos_key]
            encoding = sinusoid_encoding(seen.reshape(-1, 1), pooled.shape[1])
            pooled = pooled + self.rezero(encoding.reshape(pooled.shape))
            new_state[self.pos_key] = seen + 1.0
        return x * self.expand(self.reduce(pooled)), new_state


class FrameAvgPool(nn.Module):
    """:class:`SameAvgPool2d` for one input size: a depthwise sum (padding explicit, or
    folded into a conv of ones by :meth:`fold_padding`) times a constant map of
    ``1 / valid taps`` (padded positions are excluded from the average, as TF does)."""

    def __init__(self, layer: SameAvgPool2d, channels: int, height: int, width: int) -> None:
        super().__init__()
        k, s = layer.kernel, layer.stride
        self.kernel, self.stride, self.channels = k, s, channels
        self.pads = [same_padding(height, k, s), same_padding(width, k, s)]
        self.pad: list[int] | None = f_pad_args(self.pads)
        self.padding = (0, 0)
        self.register_buffer("weight", torch.ones(channels, 1, k, k))
        valid = F.conv2d(F.pad(torch.ones(1, 1, height, width), self.pad), self.weight[:1],
                         stride=s)
        self.register_buffer("inv_valid", 1.0 / valid)

    def fold_padding(self) -> None:
        """Replace the pad op by a larger kernel of ones with symmetric padding."""
        if self.pad is not None:
            self.weight, self.padding = symmetric_kernel(self.weight, self.pads)
            self.pad = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        summed = F.conv2d(x, self.weight, stride=self.stride, padding=self.padding,
                          groups=self.channels)
        return summed * self.inv_valid


def _scaled(layer: ConvBNAct, scale: torch.Tensor) -> ConvBNAct:
    """A copy of a conv without activation with a scalar (MoViNet's ReZero) folded in."""
    layer = copy.deepcopy(layer)
    conv = layer.conv
    conv.weight = nn.Parameter(conv.weight.detach() * scale)
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.detach() * scale)
    return layer


class FrameMovinetBlock(nn.Module):
    def __init__(self, block: MovinetBlock, height: int, width: int) -> None:
        super().__init__()
        self.expansion = frame_conv(block.expansion, height, width)
        self.feature = FrameSpatioTemporal(block.feature, height, width)
        h, w = block.output_size(height, width)
        self.se = FrameSqueezeExcite(block.se)
        projection = _scaled(block.projection, block.rezero.scale.detach())
        self.projection = frame_conv(projection, h, w)
        self.pool = self.skip = None
        if block.skip is not None:
            if block.skip.pool is not None:
                channels = block.skip.skip_project.conv.in_channels
                self.pool = FrameAvgPool(block.skip.pool, channels, height, width)
            self.skip = frame_conv(block.skip.skip_project, h, w)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, feature_state = self.feature(self.expansion(x), state)
        y, se_state = self.se(y, state)
        shortcut = x
        if self.pool is not None:
            shortcut = self.pool(shortcut)
        if self.skip is not None:
            shortcut = self.skip(shortcut)
        return self.projection(y) + shortcut, {**feature_state, **se_state}


class FrameX3DBlock(nn.Module):
    """:class:`X3DBlock` on one frame: the frame forms of its parts, the block's forward."""

    def __init__(self, block: X3DBlock, height: int, width: int) -> None:
        super().__init__()
        self.expansion = frame_conv(block.expansion, height, width)
        self.feature = FrameSpatioTemporal(block.feature, height, width)
        h, w = block.output_size(height, width)
        self.se = FrameSqueezeExcite(block.se) if block.se is not None else None
        self.act = block.act
        self.projection = frame_conv(block.projection, h, w)
        self.skip = frame_conv(block.skip, height, width) if block.skip is not None else None
        self.relu = block.relu

    forward = X3DBlock.forward


class FrameD2plus1DLayer(nn.Module):
    """:class:`D2plus1DLayer` on one frame: the frame forms of its parts, the layer's
    forward."""

    def __init__(self, layer: D2plus1DLayer, height: int, width: int) -> None:
        super().__init__()
        self.expand = frame_conv(layer.expand, height, width)
        self.feature = FrameSpatioTemporal(layer.feature, height, width)
        h, w = layer.feature.output_size(height, width)
        self.se = FrameSqueezeExcite(layer.se) if layer.se is not None else None
        self.act = layer.act
        self.project = frame_conv(layer.project, h, w)
        self.residual = layer.residual

    forward = D2plus1DLayer.forward


class FrameTOSABlock(nn.Module):
    """:class:`TOSABlock` on one frame: the frame forms of its layers, the block's forward."""

    def __init__(self, block: TOSABlock, height: int, width: int) -> None:
        super().__init__()
        layers = []
        h, w = height, width
        for layer in block.layers:
            layers.append(FrameD2plus1DLayer(layer, h, w))
            h, w = layer.feature.output_size(h, w)
        self.layers = nn.ModuleList(layers)
        self.keep_input = block.keep_input
        self.aggregate = frame_conv(block.aggregate, h, w)
        self.shortcut = frame_conv(block.shortcut, height, width) \
            if block.shortcut is not None else None

    forward = TOSABlock.forward


FRAME_BLOCKS: dict[type, type[nn.Module]] = {
    MovinetBlock: FrameMovinetBlock, X3DBlock: FrameX3DBlock, TOSABlock: FrameTOSABlock,
}


class FramePool(nn.Module):
    """Streaming :class:`GlobalAvgPool` on one frame: running mean of the spatial means."""

    def __init__(self, layer: GlobalAvgPool) -> None:
        super().__init__()
        if layer.counter is None:
            raise ValueError("the model's global pool is not streamable")
        self.sum_key, self.count_key = layer.sum_key, layer.counter.key

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        total = state[self.sum_key] + x.mean(dim=(2, 3), keepdim=True)
        count = state[self.count_key] + 1.0
        return total / count, {self.sum_key: total, self.count_key: count}


class FrameHead(nn.Module):
    """:class:`ClassifierHead` on pooled features ``[B, C, 1, 1]`` -> logits ``[B, K]``."""

    def __init__(self, head: ClassifierHead) -> None:
        super().__init__()
        self.hidden = frame_conv(head.head, 1, 1)
        self.classifier = frame_conv(head.classifier, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(x)).flatten(1)


class FrameModel(nn.Module):
    """One-frame streaming graph of a deployed causal model for ``height x width`` input.

    ``forward(frame [B, 3, H, W], state) -> (logits [B, K], new state)`` with the 4-D
    state of :func:`frame_state`; equal to ``model.stream_step`` on ``frame[:, :, None]``.
    """

    def __init__(self, model: StagedClassifier, height: int, width: int) -> None:
        super().__init__()
        if not model.causal:
            raise model._not_streamable()
        self.height, self.width = height, width
        self.keys = list(model.init_state(1, height, width, device="meta"))
        self.stem = FrameSpatioTemporal(model.stem, height, width)
        h, w = model.stem.output_size(height, width)
        blocks = []
        for block in model.stateful_blocks():
            if type(block) not in FRAME_BLOCKS:
                raise ValueError(f"no one-frame form of {type(block).__name__}")
            blocks.append(FRAME_BLOCKS[type(block)](block, h, w))
            h, w = block.output_size(h, w)
        self.blocks = nn.ModuleList(blocks)
        self.project = frame_conv(model.project, h, w)
        self.pool = FramePool(model.pool)
        self.head = FrameHead(model.head)

    def forward(self, frame: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x, new_state = self.stem(frame, state)
        for block in self.blocks:
            x, block_state = block(x, state)
            new_state = {**new_state, **block_state}
        x, pool_state = self.pool(self.project(x), state)
        return self.head(x), {**new_state, **pool_state}
