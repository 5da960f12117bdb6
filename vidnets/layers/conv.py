"""Convolutions on clips ``[B, C, T, H, W]``: 3D, (2+1)D and the 2D-on-frames layout.

Three layouts compute the same function family and share weights up to a reshape:

* ``"3d"``          one ``Conv3d`` with a ``kt x k x k`` kernel;
* ``"3d_2plus1d"``  ``Conv3d`` ``1 x k x k`` then ``Conv3d`` ``kt x 1 x 1`` (training layout);
* ``"2plus1d"``     ``Conv2d`` ``k x k`` on frames folded into the batch, then ``Conv2d``
                    ``kt x 1`` over ``[B, C, T, H*W]`` (the official inference layout).

``ConvBNAct`` loads a checkpoint of either (2+1)D layout: 5-D and 4-D weights of the
same size are reshaped on load.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .activations import HardSwish, Swish, make_activation
from .depthwise import CL3, depthwise_conv3d, fast_path_applies
from .norm import TF_BN_EPS, TF_BN_MOMENTUM, TORCH_BN_EPS, TORCH_BN_MOMENTUM, batch_norm
from .padding import f_pad_args, same_output_size, same_padding
from .state import State, StreamBuffer

Layout = Literal["3d", "3d_2plus1d", "2plus1d"]
LAYOUTS: tuple[str, ...] = ("3d", "3d_2plus1d", "2plus1d")
ConvOp = Literal["3d", "frames", "time"]
# "tf": TF "same" padding (asymmetric for stride 2 on even sizes), as the official
# MoViNets; "symmetric": PyTorch's (k - 1) // 2 on both sides, as PySlowFast/pytorchvideo.
Padding = Literal["tf", "symmetric"]
# PyTorch conventions (PySlowFast / pytorchvideo models): symmetric padding, BN defaults.
TORCH_CONV_STYLE = dict(padding="symmetric", bn_eps=TORCH_BN_EPS, bn_momentum=TORCH_BN_MOMENTUM)
Triple = tuple[int, int, int]


_PLAIN = (nn.Conv2d, nn.Conv3d, nn.BatchNorm2d, nn.BatchNorm3d)
_GLOBAL_HOOKS = (nn.modules.module._global_forward_hooks,
                 nn.modules.module._global_forward_pre_hooks)
_INPLACE = {nn.ReLU: torch.relu_, Swish: partial(F.silu, inplace=True),
            HardSwish: partial(F.hardswish, inplace=True), nn.Identity: lambda y: y}


def _activation_(act: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """``act(y)``, in place where ``act`` is a known activation (``y`` is a fresh tensor)."""
    inplace = _INPLACE.get(type(act)) if not act._forward_hooks else None
    return act(y) if inplace is None else inplace(y)


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown conv layout {layout!r}; expected one of {LAYOUTS}")


class ConvBNAct(nn.Module):
    """One convolution, optional BatchNorm and activation on a clip ``[B, C, T, H, W]``.

    ``op``: ``"3d"`` (``Conv3d``), ``"frames"`` (``Conv2d`` ``kh x kw`` on every frame) or
    ``"time"`` (``Conv2d`` ``kt x 1`` along time). Spatial padding is TF "same"; temporal
    padding is "same" unless ``causal_time`` (the caller prepends a stream buffer).
    ``padding``: TF's asymmetric "same" (``"tf"``) or PyTorch's symmetric rule.
    ``bn_eps``/``bn_momentum``: TF's defaults, or PyTorch's (1e-5, 0.1) for PySlowFast models.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        *,
        op: ConvOp = "3d",
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        activation: str | None = None,
        causal_time: bool = False,
        padding: Padding = "tf",
        bn_eps: float = TF_BN_EPS,
        bn_momentum: float = TF_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        if padding not in ("tf", "symmetric"):
            raise ValueError(f"unknown padding {padding!r}; expected 'tf' or 'symmetric'")
        self.op = op
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.causal_time = causal_time
        kt, kh, kw = kernel
        st, sh, sw = stride
        if op == "3d":
            conv_k, conv_s = (kt, kh, kw), (st, sh, sw)
        elif op == "frames":
            if kt != 1 or st != 1:
                raise ValueError(f"a per-frame conv has no temporal extent, got {kernel}/{stride}")
            conv_k, conv_s = (kh, kw), (sh, sw)
        elif op == "time":
            if (kh, kw, sh, sw) != (1, 1, 1, 1):
                raise ValueError(f"a temporal conv has no spatial extent, got {kernel}/{stride}")
            conv_k, conv_s = (kt, 1), (st, 1)
        else:
            raise ValueError(f"unknown conv op {op!r}")
        dims = 3 if op == "3d" else 2
        conv_cls = nn.Conv3d if dims == 3 else nn.Conv2d
        # Symmetric padding (always, or TF's at stride 1 with odd kernels): let the conv pad.
        self.static_padding = padding == "symmetric" or (
            all(s == 1 for s in stride) and all(k % 2 for k in kernel))
        conv_padding = 0
        if self.static_padding:
            pads = [0 if causal_time else (kt - 1) // 2, (kh - 1) // 2, (kw - 1) // 2]
            conv_padding = {"3d": pads, "frames": pads[1:], "time": [pads[0], 0]}[op]
        self.conv = conv_cls(in_channels, out_channels, conv_k, conv_s, padding=conv_padding,
                             groups=groups, bias=bias)
        self.bn = batch_norm(out_channels, dims, eps=bn_eps, momentum=bn_momentum) \
            if norm else None
        self.act = make_activation(activation)

    def _pad(self, x: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
        """TF "same" (and causal-time) padding for strided convs."""
        kt, kh, kw = self.kernel
        st, sh, sw = self.stride
        time_pad = (0, 0) if self.causal_time else same_padding(t, kt, st)
        space = [same_padding(h, kh, sh), same_padding(w, kw, sw)]
        pads = {"3d": [time_pad, *space], "frames": space, "time": [time_pad, (0, 0)]}[self.op]
        return F.pad(x, f_pad_args(pads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, C', T', H', W']``."""
        b, _, t, h, w = x.shape
        if self.op == "frames":
            y = x.transpose(1, 2).reshape(b * t, -1, h, w)
        elif self.op == "time":
            y = x.reshape(b, -1, t, h * w)
        else:
            y = x
        if not self.static_padding:
            y = self._pad(y, t, h, w)
        if self._inference_fast_path(y):
            y = _activation_(self.act, self._conv(y, *self._folded()))
        else:
            y = self._conv(y)
            if self.bn is not None:
                y = self.bn(y)
            y = self.act(y)
        if self.op == "frames":
            return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)
        if self.op == "time":
            return y.reshape(b, y.shape[1], y.shape[2], h, w)
        return y

    @staticmethod
    def _plain(module: nn.Module | None) -> bool:
        """No hooks and no substituted class (observers, QAT): safe to bypass its forward."""
        if module is None:
            return True
        if module._forward_hooks or module._forward_pre_hooks or _GLOBAL_HOOKS[0] \
                or _GLOBAL_HOOKS[1]:
            return False
        plain = module.__dict__.get("_vidnets_plain")
        if plain is None:
            plain = type(module) in _PLAIN and getattr(module, "padding_mode", "zeros") == \
                "zeros" and all(d == 1 for d in getattr(module, "dilation", (1,)))
            module.__dict__["_vidnets_plain"] = plain
        return plain

    def _inference_fast_path(self, y: torch.Tensor) -> bool:
        """Eval mode without autograd on CPU: BatchNorm folded into the conv, in-place act."""
        return (not self.training and not torch.is_grad_enabled() and fast_path_applies(y)
                and self._plain(self.conv) and self._plain(self.bn)
                and (self.bn is None or self.bn.running_mean is not None))

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Conv weight and bias with the (eval-mode) BatchNorm folded in; cached until one
        of the tensors is replaced or changed in place."""
        conv, bn = self.conv, self.bn
        if bn is None:
            return conv.weight, conv.bias
        sources = [conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var]
        try:
            key = [bn.eps] + [-1 if t is None else t._version for t in sources]
        except RuntimeError:  # inference tensors have no version counter: no caching
            return self._fold()
        cached = self.__dict__.get("_fold_cache")
        if cached is not None and cached[1] == key and cached[0][0] is sources[0] \
                and cached[0][1] is sources[1] and cached[0][2] is sources[2] \
                and cached[0][3] is sources[3] and cached[0][4] is sources[4] \
                and cached[0][5] is sources[5]:
            return cached[2]
        folded = self._fold()
        self.__dict__["_fold_cache"] = (sources, key, folded)
        return folded

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        conv, bn = self.conv, self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        return conv.weight * scale.view(-1, *[1] * (conv.weight.dim() - 1)), shift

    def _conv(self, y: torch.Tensor, weight: torch.Tensor | None = None,
              bias: torch.Tensor | None = None) -> torch.Tensor:
        """``self.conv(y)`` (with ``weight``/``bias`` if given); on CPU, 3D convs in the
        faster channels-last layout."""
        conv = self.conv
        if weight is None:
            if not self._plain(conv):
                return conv(y)
            weight, bias = conv.weight, conv.bias
        if self.op != "3d" or not isinstance(conv, nn.Conv3d):  # (deploy may swap the conv)
            return conv._conv_forward(y, weight, bias)
        if 1 < conv.groups == conv.in_channels == conv.out_channels:
            return depthwise_conv3d(y, weight, bias, conv.stride, conv.padding)
        if fast_path_applies(y):
            if conv.kernel_size == (1, 1, 1) and conv.groups == 1 and conv.stride == (1, 1, 1):
                if y.is_contiguous(memory_format=CL3):
                    return F.linear(y.permute(0, 2, 3, 4, 1), weight.flatten(1),
                                    bias).permute(0, 4, 1, 2, 3)
            elif conv.kernel_size[0] == 1 and conv.stride[0] == 1:
                # a per-frame conv: frames folded into the batch, channels-last (oneDNN's
                # direct kernels; conv3d may take PyTorch's im2col path for small batches)
                b, c, t = y.shape[:3]
                y = y.contiguous(memory_format=CL3).transpose(1, 2).reshape(b * t, c, *y.shape[3:])
                y = F.conv2d(y, weight.squeeze(2), bias, conv.stride[1:], conv.padding[1:])
                return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)
            elif conv.stride != (1, 1, 1) or conv.kernel_size[1:] != (1, 1):
                y = y.contiguous(memory_format=CL3)
        return conv._conv_forward(y, weight, bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        key = prefix + "conv.weight"
        weight = state_dict.get(key)
        own = self.conv.weight
        if weight is not None and weight.shape != own.shape and weight.numel() == own.numel() \
                and {weight.dim(), own.dim()} == {4, 5}:
            state_dict[key] = weight.reshape(own.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class SpatioTemporalConv(nn.Module):
    """A ``kt x kh x kw`` conv-BN-act, whole (``"3d"``) or factorised (2+1)D, causal or not.

    Factorised: spatial conv-BN-act, then temporal conv-BN-act (``bn_temporal`` in the
    official names); with ``spatial_norm=False`` the two convs run back to back under one
    BN-act (X3D's stem, VoV3D's D(2+1)D). ``temporal_depthwise``: only the temporal conv of a
    factorised op is depthwise (X3D's stem). Causal: the temporal conv sees a
    :class:`StreamBuffer` of its last ``kt - 1`` input frames instead of zero padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple,
        stride: Triple = (1, 1, 1),
        *,
        layout: Layout = "3d",
        depthwise: bool = False,
        temporal_depthwise: bool = False,
        spatial_norm: bool = True,
        causal: bool = False,
        activation: str | None = None,
        padding: Padding = "tf",
        bn_eps: float = TF_BN_EPS,
        bn_momentum: float = TF_BN_MOMENTUM,
        state_prefix: str = "",
    ) -> None:
        super().__init__()
        check_layout(layout)
        kt, kh, kw = kernel
        st, sh, sw = stride
        if depthwise and in_channels != out_channels:
            raise ValueError(
                f"depthwise conv needs in == out channels, got {in_channels}->{out_channels}")
        if causal and st != 1:
            raise ValueError(f"causal convs cannot stride in time, got stride {stride}")
        groups = in_channels if depthwise else 1
        self.stride = tuple(stride)
        self.factorised = layout != "3d" and kt > 1
        if (temporal_depthwise or not spatial_norm) and not self.factorised:
            raise ValueError("temporal_depthwise / spatial_norm=False need a factorised conv "
                             f"(layout {layout!r}, kernel {kernel})")
        spatial_op: ConvOp = "frames" if layout == "2plus1d" else "3d"
        common = dict(activation=activation, padding=padding, bn_eps=bn_eps,
                      bn_momentum=bn_momentum)
        if self.factorised:
            spatial = common if spatial_norm else dict(common, norm=False, activation=None)
            self.conv = ConvBNAct(in_channels, out_channels, (1, kh, kw), (1, sh, sw),
                                  op=spatial_op, groups=groups, **spatial)
            self.conv_temporal = ConvBNAct(
                out_channels, out_channels, (kt, 1, 1), (st, 1, 1),
                op="time" if layout == "2plus1d" else "3d", causal_time=causal,
                groups=out_channels if depthwise or temporal_depthwise else 1, **common)
        else:
            op: ConvOp = spatial_op if kt == 1 else "3d"
            self.conv = ConvBNAct(in_channels, out_channels, kernel, stride, op=op,
                                  groups=groups, causal_time=causal, **common)
            self.conv_temporal = None
        self.buffer = StreamBuffer(kt - 1, state_prefix) if causal and kt > 1 else None
        self.buffer_channels = out_channels if self.factorised else in_channels

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return same_output_size(height, self.stride[1]), same_output_size(width, self.stride[2])

    def init_state(self, batch: int, height: int, width: int, *, dtype: torch.dtype,
                   device: torch.device | None = None) -> State:
        """Zero state for an input of ``height x width``."""
        if self.buffer is None:
            return {}
        if self.factorised:
            height, width = self.output_size(height, width)
        state = self.buffer.init_state(batch, self.buffer_channels, height, width,
                                       dtype=dtype, device=device)
        consumer = self.conv if self.conv_temporal is None else self.conv_temporal
        if consumer.op == "3d" and fast_path_applies(next(iter(state.values()))):
            # the layout the fast 3D conv path keeps: no conversion at every step
            state = {k: v.contiguous(memory_format=CL3) for k, v in state.items()}
        return state

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``[B, C, T, H, W]`` -> ``([B, C', T, H', W'], new state)``."""
        new_state: State = {}
        if self.conv_temporal is None:
            if self.buffer is not None:
                x, new_state = self.buffer(x, state)
            return self.conv(x), new_state
        x = self.conv(x)
        if self.buffer is not None:
            x, new_state = self.buffer(x, state)
        return self.conv_temporal(x), new_state
