"""Fast depthwise 3D convolution on CPU (``F.conv3d(..., groups=C)``), forward and backward.

PyTorch's CPU depthwise ``conv3d`` is slow where clips spend their time (pytorch#37406):
on contiguous ``[B, C, T, H, W]`` tensors oneDNN reorders to channels-last and back around
every call, and its 3D depthwise backward has no direct kernel (a GEMM per channel, 5-10x
slower than the forward). On channels-last-3d tensors the forward is oneDNN's direct
depthwise kernel, about 5x faster, so :func:`depthwise_conv3d` computes everything in
``torch.channels_last_3d`` and returns a channels-last tensor (the ops after it keep that
layout, so the next depthwise conv finds its input already converted):

* forward: ``F.conv3d`` on the channels-last input (same op, faster layout). A kernel with
  no spatial extent (X3D's 5x1x1) runs as a ``conv2d`` over ``[B, C, T, H*W]``, because
  ``conv3d`` with a ``k x 1 x 1`` kernel on one thread takes PyTorch's slow im2col path;
* input gradient: the transposed convolution written as forward depthwise convolutions of
  the output gradient with the flipped kernel (stride 1), or, for a strided conv, one such
  convolution per stride phase with the kernel taps of that phase, written into the
  interleaved positions (no zero-stuffing);
* weight gradient: ``dW[c, k] = sum_n x[c, s * n + k] * g[c, n]`` is itself a depthwise
  convolution of ``x`` with ``g`` as a (large) kernel, whose output is the ``kt x kh x kw``
  kernel. It runs per sample, per block of output frames and rows (small enough to stay in
  cache while every tap is reduced over it) and per stride phase; the parts are summed.

Values and gradients equal ``F.conv3d``'s to float32 rounding (tested). The custom
autograd function is used only when a gradient is needed; in inference, and whenever the
model is being traced or exported (``torch.export``, ``torch.compile``, ONNX, FX, JIT),
the forward is plain tensor ops. Other dtypes and devices, and autocast, take ``F.conv3d``
unchanged. ``set_fast_depthwise(False)`` (or ``VIDNETS_FAST_DEPTHWISE=0``) turns this off,
together with the other CPU paths of ``ConvBNAct`` that depend on it (channels-last 1x1x1
and per-frame convs, BatchNorm folded into the conv in eval mode).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

CL3 = torch.channels_last_3d
Triple = tuple[int, int, int]

_enabled = os.environ.get("VIDNETS_FAST_DEPTHWISE", "1") != "0"
# Weight gradient: bytes of output gradient (frames and rows of one sample) per block.
_BLOCK_BYTES = 5e5


def set_fast_depthwise(enabled: bool) -> None:
    """Turn the fast depthwise path on or off for the whole process."""
    global _enabled
    _enabled = bool(enabled)


def fast_depthwise_enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def fast_depthwise(enabled: bool) -> Iterator[None]:
    """Context manager: the fast path on (``True``) or off inside the block."""
    previous = _enabled
    set_fast_depthwise(enabled)
    try:
        yield
    finally:
        set_fast_depthwise(previous)


def is_tracing() -> bool:
    """True while a graph is being captured (torch.export / compile / dynamo ONNX, JIT and
    the TorchScript ONNX exporter, FX)."""
    from torch.fx import _symbolic_trace

    return (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()
            or _symbolic_trace._is_fx_tracing_flag)


def fast_path_applies(x: torch.Tensor) -> bool:
    """Whether the fast CPU paths take ``x``: on, CPU float32 without autocast, and no graph
    being captured."""
    return (_enabled and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not is_tracing())


def _triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    a, b, c = value
    return (int(a), int(b), int(c))


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int | Sequence[int] = 1,
                     padding: int | Sequence[int] = 0) -> torch.Tensor:
    """``F.conv3d(x, weight, bias, stride, padding, groups=C)`` for ``weight [C, 1, kt, kh, kw]``.

    ``x``: ``[B, C, T, H, W]``; ``padding``: symmetric, per dimension (pad explicitly
    beforehand for TF's asymmetric "same" or for causal time). On CPU float32 with the fast
    path on, the result is channels-last-3d (see the module docstring); otherwise it is
    ``F.conv3d``'s.
    """
    channels = weight.shape[0]
    if x.dim() != 5 or weight.dim() != 5 or weight.shape[1] != 1 or x.shape[1] != channels:
        raise ValueError(f"depthwise_conv3d needs x [B, C, T, H, W] and weight [C, 1, kt, kh, "
                         f"kw]; got {tuple(x.shape)} and {tuple(weight.shape)}")
    stride, padding = _triple(stride), _triple(padding)
    if weight.dtype != torch.float32 or not fast_path_applies(x):
        return F.conv3d(x, weight, bias, stride, padding, 1, channels)  # (export: plain op)
    if not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        return _conv(x.contiguous(memory_format=CL3), weight, stride, padding, bias)
    y = _DepthwiseConv3d.apply(x, weight, stride, padding)
    return y if bias is None else y + bias.view(1, channels, 1, 1, 1)


def _conv(x: torch.Tensor, weight: torch.Tensor, stride: Triple, padding: Triple,
          bias: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise conv of a channels-last clip; ``k x 1 x 1`` kernels as a 2D conv."""
    channels = weight.shape[0]
    if weight.shape[3:] == (1, 1) and stride[1:] == (1, 1):
        if padding[1:] != (0, 0):
            x = F.pad(x, (padding[2], padding[2], padding[1], padding[1]))
        x = x.contiguous(memory_format=CL3)
        b, c, t, h, w = x.shape
        # [B, C, T, H*W] channels-last view (explicit strides: for B = 1 a reshape can leave
        # the batch stride ambiguous and the conv would pick the NCHW layout)
        y = F.conv2d(x.as_strided((b, c, t, h * w), (t * h * w * c, 1, h * w * c, c)),
                     weight.reshape(channels, 1, -1, 1), bias, (stride[0], 1),
                     (padding[0], 0), 1, channels)
        t = y.shape[2]
        if y.stride()[1:] == (1, h * w * c, c):
            return y.as_strided((b, c, t, h, w), (t * h * w * c, 1, h * w * c, w * c, c))
        return y.reshape(b, c, t, h, w).contiguous(memory_format=CL3)
    return F.conv3d(x, weight, bias, stride, padding, 1, channels)


def _phase(size: int, out_size: int, kernel: int, stride: int, pad: int, rho: int):
    """One stride phase of the transposed conv along one dimension.

    Input positions ``i = i0, i0 + s, ...`` (``count`` of them) receive the taps ``rho,
    rho + s, ...`` (``taps`` of them) of the kernel. Returns ``(i0, count, taps, q, start)``:
    convolving the output gradient, zero-padded by ``q``, with the flipped phase kernel gives
    those positions' gradients at ``start, start + 1, ...``.
    """
    i0 = (rho - pad) % stride
    count = max(0, -(-(size - i0) // stride))
    taps = len(range(rho, kernel, stride))
    m0 = (i0 + pad - rho) // stride
    offset = m0 - (taps - 1)
    q = max(0, -offset, count + m0 - out_size)
    return i0, count, taps, q, offset + q


def _input_grad(g: torch.Tensor, weight: torch.Tensor, shape: torch.Size, stride: Triple,
                padding: Triple) -> torch.Tensor:
    kernel = weight.shape[2:]
    phases = [[_phase(shape[2 + d], g.shape[2 + d], kernel[d], stride[d], padding[d], rho)
               for rho in range(stride[d])] for d in range(3)]
    if stride == (1, 1, 1):
        (_, _, _, q_t, s_t), = phases[0]
        (_, _, _, q_h, s_h), = phases[1]
        (_, _, _, q_w, s_w), = phases[2]
        gx = _conv(g, weight.flip(2, 3, 4), (1, 1, 1), (q_t, q_h, q_w))
        return gx[:, :, s_t:s_t + shape[2], s_h:s_h + shape[3], s_w:s_w + shape[4]]
    covered = all(p[2] > 0 for dim in phases for p in dim)
    gx = torch.empty(shape, dtype=g.dtype, memory_format=CL3)
    if not covered:
        gx.zero_()
    for rt, pt in enumerate(phases[0]):
        for rh, ph in enumerate(phases[1]):
            for rw, pw in enumerate(phases[2]):
                if min(pt[1], ph[1], pw[1], pt[2], ph[2], pw[2]) == 0:
                    continue
                sub = weight[:, :, rt::stride[0], rh::stride[1], rw::stride[2]]
                part = _conv(g, sub.flip(2, 3, 4).contiguous(), (1, 1, 1), (pt[3], ph[3], pw[3]))
                gx[:, :, pt[0]::stride[0], ph[0]::stride[1], pw[0]::stride[2]] = part[
                    :, :, pt[4]:pt[4] + pt[1], ph[4]:ph[4] + ph[1], pw[4]:pw[4] + pw[1]]
    return gx


def _span(size: int, kernel: int, stride: int, pad: int, rho: int, lo: int, hi: int):
    """Input positions that kernel taps ``rho, rho + s, ...`` meet for outputs ``[lo, hi)``.

    Output ``o`` and phase tap ``a`` (kernel tap ``s * a + rho``) read input
    ``s * (o + a) + rho - pad``. Returns ``(first, count, front, back, taps)``: the valid
    positions ``first, first + s, ...`` (``count``), and how many positions the ``taps``
    window lacks before and after them (zero padding).
    """
    taps = len(range(rho, kernel, stride))
    u_lo = -((rho - pad) // stride)  # ceil((pad - rho) / stride): first valid phase index
    u_hi = (size - 1 + pad - rho) // stride
    need_lo, need_hi = lo, hi - 1 + taps  # phase indices [need_lo, need_hi)
    start, stop = max(need_lo, u_lo), min(need_hi, u_hi + 1)
    return stride * start + rho - pad, stop - start, start - need_lo, need_hi - stop, taps


def _blocks(out_size: Sequence[int], row_bytes: int) -> list[tuple[int, int, int, int]]:
    """Blocks ``(t0, t1, h0, h1)`` of output frames and rows, about ``_BLOCK_BYTES`` each."""
    frames, rows = out_size[0], out_size[1]
    budget = max(1, int(_BLOCK_BYTES // max(row_bytes, 1)))  # rows per block
    if budget >= rows:
        step = min(frames, budget // rows)
        return [(t, min(frames, t + step), 0, rows) for t in range(0, frames, step)]
    return [(t, t + 1, h, min(rows, h + budget)) for t in range(frames)
            for h in range(0, rows, budget)]


def _weight_grad(x: torch.Tensor, g: torch.Tensor, kernel: Sequence[int], stride: Triple,
                 padding: Triple) -> torch.Tensor:
    """``dW`` as depthwise convs of ``x`` with ``g`` as the kernel.

    One conv per sample, block of output frames and rows (sized to stay in cache while all
    taps are reduced over it) and stride phase (so no dilation); summed.
    """
    batch, channels = x.shape[:2]
    size, out_size = x.shape[2:], g.shape[2:]
    grad = x.new_zeros(channels, *kernel)
    row_bytes = channels * out_size[2] * g.element_size()
    phases = [(rt, rh, rw) for rt in range(stride[0]) for rh in range(stride[1])
              for rw in range(stride[2])]
    w0, wn, wf, wb, lw = zip(*[_span(size[2], kernel[2], stride[2], padding[2], rw, 0,
                                     out_size[2]) for rw in range(stride[2])], strict=True)
    for b in range(batch):
        for t0, t1, h0, h1 in _blocks(out_size, row_bytes):
            weight = g[b, :, t0:t1, h0:h1].unsqueeze(1).contiguous()
            for rt, rh, rw in phases:
                f0, fn, ff, fb, lt = _span(size[0], kernel[0], stride[0], padding[0], rt, t0, t1)
                r0, rn, rf, rb, lh = _span(size[1], kernel[1], stride[1], padding[1], rh, h0, h1)
                if min(fn, rn, wn[rw], lt, lh, lw[rw]) <= 0:
                    continue
                qt, qh, qw = max(ff, fb), max(rf, rb), max(wf[rw], wb[rw])
                xs = x[b:b + 1, :, f0:f0 + stride[0] * (fn - 1) + 1:stride[0],
                       r0:r0 + stride[1] * (rn - 1) + 1:stride[1],
                       w0[rw]:w0[rw] + stride[2] * (wn[rw] - 1) + 1:stride[2]]
                part = F.conv3d(xs, weight, None, 1, (qt, qh, qw), 1, channels)
                grad[:, rt::stride[0], rh::stride[1], rw::stride[2]] += part[
                    0, :, qt - ff:qt - ff + lt, qh - rf:qh - rf + lh,
                    qw - wf[rw]:qw - wf[rw] + lw[rw]]
    return grad.unsqueeze(1)


class _DepthwiseConv3d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: Triple,  # noqa: ANN001
                padding: Triple) -> torch.Tensor:
        x = x.contiguous(memory_format=CL3)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return _conv(x, weight, stride, padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=CL3)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _input_grad(grad, weight, x.shape, ctx.stride, ctx.padding)
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(x, grad, weight.shape[2:], ctx.stride, ctx.padding)
        return grad_x, grad_w, None, None
