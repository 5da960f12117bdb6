"""The inference form (BN folded, 2plus1d layout) and the 4-D one-frame graph compute the
same function as the model, for every family, on non-trivial weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import randomize
from vidnets import create_model
from vidnets.deploy.fold import deploy_model
from vidnets.deploy.frame import (
    FrameModel,
    PaddedFrameConv,
    clip_state,
    fold_padding,
    frame_state,
)
from vidnets.layers import ConvBNAct

STREAM_MODELS = ["movinet_a0_stream", "movinet_a3_stream", "x3d_xs_stream", "vov3d_m_stream"]


def _model(name: str, seed: int = 0) -> nn.Module:
    return randomize(create_model(name, num_classes=7), seed)


@pytest.mark.parametrize("name", ["movinet_a0_base", "x3d_xs", *STREAM_MODELS])
def test_deployed_model_equals_model(name):
    model = _model(name)
    deployed = deploy_model(model)
    layers = [m for m in deployed.modules() if isinstance(m, ConvBNAct)]
    assert all(layer.bn is None for layer in layers)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    # every unit-kernel conv became 2-D; only convs mixing time and space stay 3-D
    assert all(layer.op != "3d" or (layer.kernel[0] > 1 and layer.kernel[1] > 1)
               for layer in layers)
    clip = torch.rand(2, 3, 5, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(deployed(clip), model(clip), rtol=1e-4, atol=1e-5)
    # the original is untouched
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_multigrid_layout_deploys_to_2plus1d():
    """A stream model trained in the 3d_2plus1d layout (sub-batch BN) deploys to 2-D convs
    with the same outputs."""
    model = randomize(create_model("movinet_a0_stream", num_classes=5, conv_type="3d_2plus1d"))
    deployed = deploy_model(model)
    assert {m.op for m in deployed.modules() if isinstance(m, ConvBNAct)} == {"frames", "time"}
    clip = torch.rand(1, 3, 4, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(deployed(clip), model(clip), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", STREAM_MODELS)
def test_frame_graph_equals_stream_step(name):
    model = _model(name, seed=2)
    height, width = 56, 40  # odd strided sizes: TF "same" padding is asymmetric
    graph = FrameModel(deploy_model(model), height, width)
    video = torch.rand(1, 3, 6, height, width, generator=torch.Generator().manual_seed(3))
    state = model.init_state(1, height, width)
    flat = frame_state(state)
    with torch.no_grad():
        for t in range(video.shape[2]):
            logits, state = model.stream_step(video[:, :, t:t + 1], state)
            frame_logits, flat = graph(video[:, :, t], flat)
            assert all(v.dim() <= 4 for v in flat.values())
            torch.testing.assert_close(frame_logits, logits, rtol=1e-4, atol=1e-5)
    # the two state forms hold the same values
    for key, value in clip_state(flat, state).items():
        torch.testing.assert_close(value, state[key], rtol=1e-4, atol=1e-4)


def test_frame_state_round_trip():
    model = create_model("movinet_a0_stream")
    state = {k: torch.randn(v.shape) for k, v in model.init_state(2, 64, 48).items()}
    flat = frame_state(state)
    assert {k: v.dim() for k, v in flat.items()} == dict.fromkeys(state, 4)
    key = "state_block1_layer0_stream_buffer"
    b, c, n, h, w = state[key].shape
    assert flat[key].shape == (b, c, n * h, w)
    torch.testing.assert_close(flat[key][:, :, h:2 * h], state[key][:, :, 1])
    back = clip_state(flat, state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_folded_padding_equals_explicit_pad():
    """Strided convs and pools with TF's asymmetric "same" padding: the folded form (larger
    kernel with zero taps, symmetric padding) computes the same as the explicit pad."""
    model = _model("movinet_a0_stream", seed=4)
    explicit = FrameModel(deploy_model(model), 64, 48)
    folded = fold_padding(FrameModel(deploy_model(model), 64, 48))
    assert not any(isinstance(m, PaddedFrameConv) for m in folded.modules())
    assert any(isinstance(m, PaddedFrameConv) for m in explicit.modules())
    state = frame_state(model.init_state(1, 64, 48))
    a_state, b_state = state, dict(state)
    with torch.no_grad():
        for t in range(3):
            frame = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(t))
            a, a_state = explicit(frame, a_state)
            b, b_state = folded(frame, b_state)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_frame_graph_refuses_non_causal_model():
    with pytest.raises(ValueError, match="non-causal"):
        FrameModel(deploy_model(create_model("movinet_a0_base")), 64, 64)
