"""The fast depthwise path equals ``F.conv3d(groups=C)``: outputs, input and weight gradients.

Float32 fast path against a float64 ``F.conv3d`` reference, on odd and even sizes, T = 1..5,
stride 1 and spatial stride 2, symmetric, zero (pre-padded / TF) and causal padding, the
kernels the models use, both memory layouts and batch 1 and 2.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import randomize
from vidnets.layers import ConvBNAct, SpatioTemporalConv, depthwise_conv3d, fast_depthwise
from vidnets.layers.depthwise import CL3

KERNELS = [(3, 3, 3), (5, 1, 1), (1, 3, 3), (1, 5, 5), (5, 3, 3), (3, 1, 1)]
SIZES = [(1, 7, 6), (2, 9, 8), (3, 8, 11), (5, 10, 10)]


def padding_of(kernel, kind):
    if kind == "symmetric":
        return tuple(k // 2 for k in kernel)
    if kind == "causal":  # time padded by the caller (stream buffer)
        return (0, kernel[1] // 2, kernel[2] // 2)
    return (0, 0, 0)  # input padded by the caller (TF "same")


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).abs().max() / b.abs().max()).item()


CASES = [
    (size, kernel, stride, pad, batch, layout)
    for i, size in enumerate(SIZES)
    for j, kernel in enumerate(KERNELS)
    for stride in [(1, 1, 1), (1, 2, 2)]
    for pad in ["symmetric", "zero", "causal"]
    for batch, layout in [[(2, "cl"), (1, "nc")][(i + j) % 2]]
    if all(n + 2 * p >= k for n, p, k in zip(size, padding_of(kernel, pad), kernel, strict=True))
]


@pytest.mark.parametrize(("size", "kernel", "stride", "pad", "batch", "layout"), CASES)
def test_equals_conv3d_with_gradients(size, kernel, stride, pad, batch, layout):
    g = torch.Generator().manual_seed(hash((size, kernel, stride, pad)) % 2**31)
    channels = 6
    padding = padding_of(kernel, pad)
    x = torch.randn(batch, channels, *size, generator=g, dtype=torch.float64)
    w = torch.randn(channels, 1, *kernel, generator=g, dtype=torch.float64)
    x64, w64 = x.clone().requires_grad_(), w.clone().requires_grad_()
    y64 = F.conv3d(x64, w64, None, stride, padding, 1, channels)
    grad_y = torch.randn(y64.shape, generator=g, dtype=torch.float64)
    gx64, gw64 = torch.autograd.grad(y64, (x64, w64), grad_y)

    x32 = x.float().contiguous(memory_format=CL3 if layout == "cl" else torch.contiguous_format)
    x32, w32 = x32.requires_grad_(), w.float().requires_grad_()
    y = depthwise_conv3d(x32, w32, None, stride, padding)
    gx, gw = torch.autograd.grad(y, (x32, w32), grad_y.float())
    assert y.shape == y64.shape and gx.shape == x.shape and gw.shape == w.shape
    assert y.is_contiguous(memory_format=CL3)
    assert relative(y, y64) < 1e-5
    assert relative(gx, gx64) < 1e-5
    assert relative(gw, gw64) < 1e-5
    with torch.no_grad():  # inference: plain ops, same values
        assert relative(depthwise_conv3d(x32, w32, None, stride, padding), y64) < 1e-5


def test_weight_gradient_over_many_frame_blocks(monkeypatch):
    """The weight gradient is summed over blocks of frames: force one frame per block."""
    import vidnets.layers.depthwise as dw

    monkeypatch.setattr(dw, "_BLOCK_BYTES", 1.0)
    x = torch.randn(2, 4, 7, 9, 8, dtype=torch.float64)
    w = torch.randn(4, 1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    y = F.conv3d(x, w, None, (1, 2, 2), 1, 1, 4)
    grad_y = torch.randn_like(y)
    expected = torch.autograd.grad(y, w, grad_y)[0]
    w32 = w.detach().float().requires_grad_()
    got = torch.autograd.grad(depthwise_conv3d(x.float(), w32, None, (1, 2, 2), 1), w32,
                              grad_y.float())[0]
    assert relative(got, expected) < 1e-5


def test_only_input_or_only_weight_gradient():
    x = torch.randn(1, 4, 3, 6, 6)
    w = torch.randn(4, 1, 3, 3, 3, requires_grad=True)
    (gw,) = torch.autograd.grad(depthwise_conv3d(x, w, None, 1, 1).sum(), w)
    xg = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(depthwise_conv3d(xg, w.detach(), None, 1, 1).sum(), xg)
    x_ref = x.clone().requires_grad_()
    ref = torch.autograd.grad(F.conv3d(x_ref, w, None, 1, 1, 1, 4).sum(), (x_ref, w))
    torch.testing.assert_close(gx, ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gw, ref[1], atol=1e-5, rtol=1e-5)


def test_switch_off_gives_plain_conv3d():
    x = torch.randn(2, 4, 3, 6, 6)
    w = torch.randn(4, 1, 3, 3, 3)
    with fast_depthwise(False):
        y = depthwise_conv3d(x, w, None, 1, 1)
    assert y.is_contiguous()  # F.conv3d's own layout
    torch.testing.assert_close(y, F.conv3d(x, w, None, 1, 1, 1, 4))
    with pytest.raises(ValueError, match="depthwise_conv3d needs"):
        depthwise_conv3d(x, torch.randn(4, 2, 3, 3, 3))


@pytest.mark.parametrize("training", [True, False])
def test_export_sees_plain_ops(training):
    """torch.export traces the plain conv3d: no custom autograd function, same values."""
    torch.manual_seed(0)
    conv = randomize(SpatioTemporalConv(8, 8, (3, 3, 3), (1, 2, 2), depthwise=True,
                                        activation="swish")).train(training)
    x = torch.randn(1, 8, 4, 12, 11)
    program = torch.export.export(conv, (x, None))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "aten.conv3d.default" in targets
    assert not [t for t in targets if "autograd" in t.lower() or "Depthwise" in t]
    if not training:
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x, None)[0], conv(x, None)[0],
                                       atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("kernel", "stride", "groups", "padding"), [
    ((1, 1, 1), (1, 1, 1), 1, "symmetric"),  # pointwise: one matrix product
    ((1, 1, 1), (1, 2, 2), 1, "symmetric"),  # strided shortcut
    ((1, 3, 3), (1, 2, 2), 1, "symmetric"),  # X3D stem: per-frame conv
    ((1, 3, 3), (1, 2, 2), 1, "tf"),  # MoViNet stem (TF "same")
    ((3, 3, 3), (1, 1, 1), 6, "symmetric"),  # depthwise
    ((5, 3, 3), (1, 2, 2), 6, "tf"),  # depthwise, TF padding
    ((3, 1, 1), (1, 1, 1), 1, "symmetric"),  # dense temporal
])
def test_conv_bn_act_fast_paths_equal_plain(kernel, stride, groups, padding):
    """Every fast path of ConvBNAct (training with gradients, and eval with BN folded) equals
    the plain module, from both memory layouts."""
    torch.manual_seed(0)
    conv = randomize(ConvBNAct(6, 6, kernel, stride, groups=groups, activation="swish",
                               padding=padding))
    for layout in (torch.contiguous_format, CL3):
        x = torch.randn(2, 6, 4, 9, 10).contiguous(memory_format=layout)
        for training in (True, False):
            conv.train(training)
            state = {k: v.clone() for k, v in conv.state_dict().items()}
            grads = []
            for fast in (False, True):
                conv.load_state_dict(state)
                conv.zero_grad()
                xg = x.clone().requires_grad_()
                with fast_depthwise(fast):
                    y = conv(xg)
                    (y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
                    with torch.no_grad():
                        y_inference = conv(x)
                grads.append((y.detach(), xg.grad, conv.conv.weight.grad, y_inference))
            for got, expected in zip(grads[1], grads[0], strict=True):
                assert got.shape == expected.shape
                assert relative(got, expected.double()) < 1e-5


def test_folded_batch_norm_follows_parameter_changes():
    """Eval mode caches the BN-folded weights; in-place updates and new tensors refresh them."""
    torch.manual_seed(0)
    conv = randomize(ConvBNAct(6, 6, (3, 3, 3), groups=6, activation="relu")).eval()
    x = torch.randn(1, 6, 3, 7, 7)

    def check():
        with torch.no_grad():
            got = conv(x)
            with fast_depthwise(False):
                expected = conv(x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    check()
    with torch.no_grad():
        conv.bn.running_mean.add_(0.5)
        check()
        conv.conv.weight.mul_(-2.0)
        check()
    conv.load_state_dict({k: v * 1.5 if v.is_floating_point() else v
                          for k, v in conv.state_dict().items()})
    check()
    conv.bn.weight = torch.nn.Parameter(torch.rand(6))
    check()
