import pytest
import torch

from vidnets.layers import CumulativeAvgPool, GlobalAvgPool, SameAvgPool2d, same_padding


def reference_same_avg_pool(x, k=3, s=2):
    """Average over the in-bounds part of each TF 'same' window, by brute force."""
    h, w = x.shape[-2:]
    (pt, _), (pl, _) = same_padding(h, k, s), same_padding(w, k, s)
    oh, ow = -(-h // s), -(-w // s)
    out = torch.zeros(*x.shape[:-2], oh, ow)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - pt, j * s - pl
            rows = slice(max(r0, 0), min(r0 + k, h))
            cols = slice(max(c0, 0), min(c0 + k, w))
            out[..., i, j] = x[..., rows, cols].mean(dim=(-2, -1))
    return out


@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (11, 6), (2, 3)])
def test_same_avg_pool_excludes_padding(hw):
    x = torch.randn(2, 3, 4, *hw)
    torch.testing.assert_close(SameAvgPool2d(3, 2)(x), reference_same_avg_pool(x))


def test_cumulative_pool_is_running_mean_and_streams():
    pool = CumulativeAvgPool("p")
    x = torch.randn(2, 5, 7, 1, 1)
    y, _ = pool(x, None)
    expected = torch.stack([x[:, :, : t + 1].mean(2) for t in range(7)], dim=2)
    torch.testing.assert_close(y, expected)
    state = pool.init_state(2, 5, dtype=torch.float32)
    outs = []
    for a, b in [(0, 2), (2, 3), (3, 7)]:
        out, new = pool(x[:, :, a:b], state)
        state = {**state, **new}
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 2), expected)
    assert state["p_pool_frame_count"].tolist() == [7.0, 7.0]


def test_global_pool_streams_to_whole_clip_mean():
    pool = GlobalAvgPool("h")
    x = torch.randn(2, 4, 6, 5, 3)
    whole, _ = pool(x, None)
    torch.testing.assert_close(whole, x.mean(dim=(2, 3, 4), keepdim=True))
    state = pool.init_state(2, 4, dtype=torch.float32)
    for t in range(6):
        out, new = pool(x[:, :, t : t + 1], state)
        state = {**state, **new}
    torch.testing.assert_close(out, whole)
