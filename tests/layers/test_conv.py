import pytest
import torch
import torch.nn.functional as F

from tests.conftest import randomize
from vidnets.layers import ConvBNAct, SpatioTemporalConv, same_padding
from vidnets.layers.padding import f_pad_args


def reference_same_conv3d(x, weight, stride, groups=1, causal=False):
    """Explicit TF-style padding, then an unpadded conv3d."""
    kt, kh, kw = weight.shape[2:]
    pads = [(kt - 1, 0) if causal else same_padding(x.shape[2], kt, stride[0]),
            same_padding(x.shape[3], kh, stride[1]), same_padding(x.shape[4], kw, stride[2])]
    return F.conv3d(F.pad(x, f_pad_args(pads)), weight, stride=stride, groups=groups)


@pytest.mark.parametrize("stride", [(1, 1, 1), (1, 2, 2)])
@pytest.mark.parametrize("size", [(9, 11), (8, 8)])
def test_conv3d_same_padding(stride, size):
    conv = ConvBNAct(4, 6, (3, 5, 5), stride, norm=False)
    x = torch.randn(2, 4, 5, *size)
    torch.testing.assert_close(conv(x), reference_same_conv3d(x, conv.conv.weight, stride))


def test_causal_temporal_conv_equals_front_padding():
    conv = SpatioTemporalConv(6, 6, (5, 3, 3), layout="3d", depthwise=True, causal=True,
                              state_prefix="s")
    for p in conv.parameters():
        torch.nn.init.normal_(p)
    conv.conv.bn = None
    x = torch.randn(1, 6, 7, 10, 10)
    y, state = conv(x, None)
    torch.testing.assert_close(y, reference_same_conv3d(x, conv.conv.conv.weight, (1, 1, 1),
                                                        groups=6, causal=True))
    # the state holds the last k_t - 1 input frames
    torch.testing.assert_close(state["s_stream_buffer"], x[:, :, -4:])


@pytest.mark.parametrize("depthwise", [True, False])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("stride", [(1, 1, 1), (1, 2, 2)])
def test_3d_2plus1d_equals_2plus1d_after_weight_reshape(depthwise, causal, stride):
    torch.manual_seed(0)
    kw = dict(depthwise=depthwise, causal=causal, activation="hard_swish", state_prefix="s")
    conv3d = randomize(SpatioTemporalConv(8, 8, (5, 3, 3), stride, layout="3d_2plus1d", **kw))
    conv2d = SpatioTemporalConv(8, 8, (5, 3, 3), stride, layout="2plus1d", **kw).eval()
    sd = conv3d.state_dict()
    assert sd["conv.conv.weight"].dim() == 5 and conv2d.conv.conv.weight.dim() == 4
    conv2d.load_state_dict(sd)
    x = torch.randn(2, 8, 6, 13, 12)
    (a, _), (b, _) = conv3d(x, None), conv2d(x, None)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # and back: 4-D weights load into the Conv3d layout
    conv3d.load_state_dict(conv2d.state_dict())
    torch.testing.assert_close(conv3d(x, None)[0], b, atol=1e-5, rtol=1e-5)


def test_streamed_conv_equals_whole_clip():
    conv = randomize(SpatioTemporalConv(4, 4, (3, 3, 3), layout="2plus1d", depthwise=True,
                                        causal=True, state_prefix="s"))
    x = torch.randn(2, 4, 9, 11, 11)
    whole, _ = conv(x, None)
    state = conv.init_state(2, 11, 11, dtype=torch.float32)
    outs = []
    for a, b in [(0, 1), (1, 5), (5, 9)]:
        y, state = conv(x[:, :, a:b], state)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 2), whole)


def test_bad_layout_and_causal_stride():
    with pytest.raises(ValueError, match="layout"):
        SpatioTemporalConv(4, 4, (3, 3, 3), layout="2d")
    with pytest.raises(ValueError, match="stride in time"):
        SpatioTemporalConv(4, 4, (3, 3, 3), (2, 1, 1), causal=True)


def test_symmetric_padding_matches_pytorch_convention():
    conv = ConvBNAct(4, 6, (3, 3, 3), (1, 2, 2), norm=False, padding="symmetric")
    x = torch.randn(1, 4, 5, 8, 8)
    expected = F.conv3d(x, conv.conv.weight, stride=(1, 2, 2), padding=1)
    torch.testing.assert_close(conv(x), expected)
    # TF "same" differs on even sizes at stride 2 (pads 0 before, 1 after)
    tf_conv = ConvBNAct(4, 6, (3, 3, 3), (1, 2, 2), norm=False)
    tf_conv.load_state_dict(conv.state_dict())
    assert not torch.allclose(tf_conv(x), expected)
