"""Training equality with pytorchvideo: vidnets' X3D (fast CPU depthwise path, the default)
gives pytorchvideo 0.1.5's logits, input gradient and the gradient of every parameter, with
the same weights.

BatchNorm uses random running statistics (eval mode, the reference's ``randomize``): with
batch statistics a freshly initialised X3D's float32 gradients are ill-conditioned (two
float32 runs of the same plain implementation differ by ~1% from float64 already), so a
tight tolerance would test rounding, not the implementation. Training-mode BN is covered
by the layer tests and the fast path's float64 equality with the plain path below.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vidnets
import vidnets.layers.conv as conv_module
import vidnets.layers.depthwise as depthwise
from tests.conftest import randomize
from tests.models.test_x3d import create_x3d  # noqa: F401  (the pytorchvideo fixture)
from vidnets.layers import fast_depthwise
from vidnets.weights.x3d import PYTORCHVIDEO, convert_x3d, official_name


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def gradients(model: torch.nn.Module, clip: torch.Tensor, labels: torch.Tensor):
    model.zero_grad(set_to_none=True)
    clip = clip.clone().requires_grad_()
    logits = model(clip)
    F.cross_entropy(logits, labels).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return logits.detach(), clip.grad, grads


def test_gradients_equal_pytorchvideo(create_x3d):  # noqa: F811
    torch.manual_seed(0)
    ref = randomize(create_x3d(input_clip_length=4, input_crop_size=64, head_activation=None))
    model = vidnets.create_model("x3d_xs").eval()
    model.load_state_dict(convert_x3d(ref.state_dict(), model, "pytorchvideo"))
    clip = torch.randn(2, 3, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([3, 250])
    ref_logits, ref_input, ref_grads = gradients(ref, clip, labels)
    with fast_depthwise(True):
        logits, grad_input, grads = gradients(model, clip, labels)
    assert relative(logits, ref_logits) < 1e-4
    assert relative(grad_input, ref_input) < 1e-4
    stages = len(model.stages)
    assert len(grads) == len(ref_grads)
    for name, grad in grads.items():
        expected = ref_grads[official_name(name, PYTORCHVIDEO, stages)]
        assert grad.numel() == expected.numel(), name  # the classifier: conv vs Linear
        assert relative(grad.reshape(expected.shape), expected) < 1e-4, name


@pytest.mark.parametrize("name", ["x3d_xs", "vov3d_m", "movinet_a0_base"])
def test_fast_path_is_exact_in_float64_with_batch_statistics(name, monkeypatch):
    """Training mode (BN batch statistics): the fast path, forced on in float64, computes the
    plain path's gradients to float64 rounding (every conv of the model takes it)."""
    torch.manual_seed(0)
    model = randomize(vidnets.create_model(name, dropout=0.0)).train().double()
    clip = torch.randn(2, 3, 5, 48, 48, dtype=torch.float64)
    labels = torch.tensor([1, 2])
    with fast_depthwise(False):
        _, plain_input, plain = gradients(model, clip, labels)

    def forced(x, weight, bias=None, stride=1, padding=0):
        stride, padding = depthwise._triple(stride), depthwise._triple(padding)
        y = depthwise._DepthwiseConv3d.apply(x, weight, stride, padding)
        return y if bias is None else y + bias.view(1, -1, 1, 1, 1)

    monkeypatch.setattr(conv_module, "depthwise_conv3d", forced)
    monkeypatch.setattr(conv_module, "fast_path_applies", lambda x: True)
    with fast_depthwise(True):
        _, fast_input, fast = gradients(model, clip, labels)
    assert relative(fast_input, plain_input) < 1e-9
    # relative to the largest gradient: some are zero up to rounding (a bias ahead of a BN)
    scale = max(grad.abs().max().item() for grad in plain.values())
    for key, grad in fast.items():
        assert (grad - plain[key]).abs().max().item() < 1e-9 * scale, key
