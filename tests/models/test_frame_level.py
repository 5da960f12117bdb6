"""The frame-level MoViNet baseline: the same backbone with every temporal kernel set to 1."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import randomize
from vidnets.models.movinet import BLOCK_SPECS, create_movinet, frame_level_spec


def _temporal_kernels(model: torch.nn.Module) -> set[int]:
    return {m.kernel_size[0] for m in model.modules() if isinstance(m, torch.nn.Conv3d)}


def test_spec_keeps_everything_but_the_temporal_kernels():
    stem, blocks, head = BLOCK_SPECS["a0"]
    flat_stem, flat_blocks, flat_head = frame_level_spec(BLOCK_SPECS["a0"])
    assert flat_head == head and flat_stem.strides == stem.strides
    assert flat_stem.kernel_size == (1,) + stem.kernel_size[1:]
    for block, flat in zip(blocks, flat_blocks, strict=True):
        assert flat.expand_filters == block.expand_filters and flat.strides == block.strides
        assert flat.kernel_sizes == tuple((1, kh, kw) for _, kh, kw in block.kernel_sizes)


def test_parameters_shrink_by_the_temporal_taps():
    full = create_movinet("a0", stream=False, num_classes=10)
    frame = create_movinet("a0", stream=False, frame_level=True, num_classes=10)
    assert _temporal_kernels(full) > {1} and _temporal_kernels(frame) == {1}
    assert frame.min_frames == 1
    # only the depthwise spatiotemporal kernels differ: (kt - 1) * kh * kw weights per channel
    _, blocks, _ = BLOCK_SPECS["a0"]
    removed = sum(c * (kt - 1) * kh * kw for b in blocks
                  for c, (kt, kh, kw) in zip(b.expand_filters, b.kernel_sizes, strict=True))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(full) - count(frame) == removed > 0


def _calibrated(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights, and BN statistics measured on random clips so that activations keep
    their scale through the network (eval mode)."""
    randomize(model)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(4, 3, 6, 32, 32))
    return model.eval()


def test_frame_level_model_ignores_frame_order():
    torch.manual_seed(0)
    frame = _calibrated(create_movinet("a0", stream=False, frame_level=True, num_classes=10))
    full = _calibrated(create_movinet("a0", stream=False, num_classes=10))
    clip, other = torch.rand(2, 3, 6, 32, 32), torch.rand(2, 3, 6, 32, 32)
    shuffled = clip[:, :, torch.tensor([3, 0, 5, 1, 4, 2])]
    with torch.no_grad():
        logits = frame(clip)
        assert (frame(other) - logits).abs().max() > 1e-2  # the output depends on the input
        torch.testing.assert_close(frame(shuffled), logits, atol=1e-5, rtol=0)
        assert (full(shuffled) - full(clip)).abs().max() > 1e-2


def test_frame_level_needs_a_base_model():
    with pytest.raises(ValueError, match="stream=False"):
        create_movinet("a0", stream=True, frame_level=True)
