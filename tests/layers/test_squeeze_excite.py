import math

import numpy as np
import torch

from tests.conftest import randomize
from vidnets.layers import SqueezeExcite, sinusoid_encoding


def official_encoding(start, frames, channels):
    """The TF MoViNet positional encoding, re-derived in numpy from its definition."""
    pos = np.arange(start, start + frames, dtype=np.float32)[:, None]
    power = (2 * (np.arange(channels) // 2)).astype(np.float32) / channels
    radians = pos * (1.0 / np.power(10000.0, power))
    return np.concatenate([np.sin(radians[:, 0::2]), np.cos(radians[:, 1::2])], axis=-1)


def test_sinusoid_encoding_matches_official_definition():
    pos = torch.tensor([[3.0, 4.0, 5.0]])
    ours = sinusoid_encoding(pos, 16)[0].numpy()
    np.testing.assert_allclose(ours, official_encoding(3, 3, 16), atol=1e-6)
    assert math.isclose(ours[0, 0], math.sin(3.0), rel_tol=1e-6)


def test_global_se_gates_with_clip_mean():
    se = randomize(SqueezeExcite(8, 4, se_type="3d"))
    x = torch.randn(2, 8, 5, 6, 6)
    y, state = se(x)
    gate = torch.sigmoid(se.se_expand.conv(torch.nn.functional.silu(
        se.se_reduce.conv(x.mean(dim=(2, 3, 4), keepdim=True)))))
    torch.testing.assert_close(y, x * gate)
    assert state == {}


def test_causal_2plus3d_se_with_positional_encoding_streams():
    se = randomize(SqueezeExcite(8, 8, se_type="2plus3d", causal=True, activation="hard_swish",
                                 gating="hard_sigmoid", positional_encoding=True, op="frames",
                                 state_prefix="s"))
    assert se.se_reduce.conv.in_channels == 16  # concat(cumulative, per-frame): 2C
    assert se.pos_encoding.rezero.scale.item() != 0
    x = torch.randn(2, 8, 7, 5, 5)
    whole, _ = se(x, None)
    state = se.init_state(2, dtype=torch.float32)
    outs = []
    for t in range(7):
        y, new = se(x[:, :, t : t + 1], state)
        state = {**state, **new}
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 2), whole)
    assert state["s_pos_enc_frame_count"].tolist() == [7.0, 7.0]
    # causality: the gate of frame 0 does not depend on later frames
    x2 = x.clone()
    x2[:, :, 3:] = torch.randn_like(x2[:, :, 3:])
    torch.testing.assert_close(se(x2, None)[0][:, :, :3], whole[:, :, :3])
