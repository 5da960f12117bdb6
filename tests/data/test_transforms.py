"""ClipTransform on real-shaped uint8 clips, against PySlowFast's resize-then-crop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import vidnets
from vidnets.data.transforms import ClipTransform
from vidnets.data.video import read_clip

IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def ramp(frames: int, height: int, width: int, *, along: str = "width") -> torch.Tensor:
    """uint8 [T, H, W, 3] whose value grows left to right (or top to bottom)."""
    length = width if along == "width" else height
    values = torch.linspace(0, 255, length).round().to(torch.uint8)
    shape = (1, 1, width, 1) if along == "width" else (1, height, 1, 1)
    return values.view(shape).expand(frames, height, width, 3).contiguous()


def resize_then_crop(frames: torch.Tensor, short: int, size: int, crop: int | None):
    """PySlowFast eval: short side to ``short`` (long side floored), then uniform_crop."""
    _, height, width, _ = frames.shape
    if width < height:
        new_h, new_w = math.floor(height / width * short), short
    else:
        new_h, new_w = short, math.floor(width / height * short)
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(new_h, new_w),
                      mode="bilinear", align_corners=False)
    top, left = math.ceil((new_h - size) / 2), math.ceil((new_w - size) / 2)
    if crop in (0, 2):
        if height > width:
            top = 0 if crop == 0 else new_h - size
        else:
            left = 0 if crop == 0 else new_w - size
    return x[..., top : top + size, left : left + size].permute(1, 0, 2, 3) / 255


@pytest.mark.parametrize("shape", [(6, 256, 340), (4, 340, 256), (3, 240, 320), (2, 540, 960)])
@pytest.mark.parametrize("crop", [None, 0, 1, 2])
def test_eval_equals_resize_then_crop(shape, crop):
    frames = torch.randint(0, 256, (*shape, 3), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    transform = ClipTransform(160, *IDENTITY, train=False, test_scale=200 / 160)
    out = transform(frames, crop=crop)
    assert out.shape == (3, shape[0], 160, 160) and out.dtype == torch.float32
    torch.testing.assert_close(out, resize_then_crop(frames, 200, 160, crop), atol=5e-4, rtol=0)


def test_eval_on_decoded_demo_clip(shared_videos):
    frames = read_clip(shared_videos / "demo.mp4", start=2.0, num_frames=4)
    cfg = vidnets.model_config("x3d_m")
    out = ClipTransform.from_config(cfg, train=False)(frames)
    reference = resize_then_crop(frames, cfg.size, cfg.size, None)
    mean, std = torch.tensor(cfg.mean).view(3, 1, 1, 1), torch.tensor(cfg.std).view(3, 1, 1, 1)
    torch.testing.assert_close(out, (reference - mean) / std, atol=2e-3, rtol=0)


def test_three_crops_cover_left_centre_right_and_top_centre_bottom():
    transform = ClipTransform(64, *IDENTITY, train=False)
    landscape = ramp(2, 64, 200)  # short side already 64: crops are exact windows
    crops = [transform(landscape, crop=c) for c in (0, 1, 2)]
    expected = [landscape[..., 0:64, :], landscape[..., 68:132, :], landscape[..., 136:200, :]]
    for got, window in zip(crops, expected, strict=True):
        torch.testing.assert_close(got, window.permute(3, 0, 1, 2).float() / 255)
    portrait = ramp(2, 200, 64, along="height")
    means = [transform(portrait, crop=c).mean().item() for c in (0, 1, 2)]
    assert means[0] < means[1] < means[2]
    assert transform(portrait, crop=0)[:, :, 0].max() == 0  # touches the top row
    assert transform(portrait, crop=2)[:, :, -1].min() == 1  # touches the bottom row


def test_train_is_deterministic_given_a_generator():
    frames = torch.randint(0, 256, (4, 120, 160, 3), dtype=torch.uint8)
    for mode in ("short_side", "random_resized_crop"):
        transform = ClipTransform(64, *IDENTITY, train=True, scale_mode=mode)
        a = transform(frames, generator=torch.Generator().manual_seed(3))
        b = transform(frames, generator=torch.Generator().manual_seed(3))
        c = transform(frames, generator=torch.Generator().manual_seed(4))
        assert a.shape == (3, 4, 64, 64)
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_flip_switch():
    frames = ramp(2, 80, 100)

    def flipped(transform: ClipTransform, seed: int) -> bool:
        out = transform(frames, generator=torch.Generator().manual_seed(seed))
        return bool(out[0, 0, 0, 0] > out[0, 0, 0, -1])  # values fall left to right

    on = ClipTransform(64, *IDENTITY, train=True, flip=True)
    off = ClipTransform(64, *IDENTITY, train=True, flip=False)
    flips = [flipped(on, seed) for seed in range(40)]
    assert 8 < sum(flips) < 32
    assert not any(flipped(off, seed) for seed in range(40))


def test_scale_jitter_sets_the_crop_scale():
    """Short side scaled to 2 x size: a crop sees half of the short side."""
    frames = ramp(1, 100, 150, along="height")
    transform = ClipTransform(50, *IDENTITY, train=True, jitter=(2.0, 2.0), flip=False)
    for seed in range(5):
        out = transform(frames, generator=torch.Generator().manual_seed(seed))
        assert out[0, 0, -1, 0] - out[0, 0, 0, 0] == pytest.approx(0.5, abs=0.03)
    full = ClipTransform(50, *IDENTITY, train=True, jitter=(1.0, 1.0))
    out = full(frames, generator=torch.Generator().manual_seed(0))
    assert out[0, 0, -1, 0] - out[0, 0, 0, 0] == pytest.approx(1.0, abs=0.03)


def test_random_resized_crop_boxes_stay_inside():
    frames = ramp(1, 90, 120)
    transform = ClipTransform(32, *IDENTITY, train=True, scale_mode="random_resized_crop",
                              rrc_area=(0.1, 0.3), flip=False)
    spans = []
    for seed in range(20):
        out = transform(frames, generator=torch.Generator().manual_seed(seed))
        assert out.min() >= 0 and out.max() <= 1
        spans.append((out[0, 0, 0, -1] - out[0, 0, 0, 0]).item())
    # a box of 10-30 % of the area, ratio 3/4..4/3, spans ~26-67 % of the width
    assert min(spans) > 0.2 and max(spans) < 0.75


@pytest.mark.parametrize("name", ["movinet_a0_stream", "x3d_m"])
def test_normalisation_from_registry_config(name):
    cfg = vidnets.model_config(name)
    frames = torch.full((2, 40, 50, 3), 200, dtype=torch.uint8)
    frames[..., 1] = 10
    out = ClipTransform.from_config(cfg, train=False, size=32)(frames)
    assert out.shape == (3, 2, 32, 32)
    for channel, value in enumerate((200, 10, 200)):
        expected = (value / 255 - cfg.mean[channel]) / cfg.std[channel]
        assert out[channel].flatten().tolist() == pytest.approx([expected] * 2048, abs=1e-5)


def test_size_override_and_bad_input():
    transform = ClipTransform(64, *IDENTITY, train=True)
    frames = torch.zeros(3, 90, 120, 3, dtype=torch.uint8)
    assert transform(frames, size=48).shape == (3, 3, 48, 48)
    with pytest.raises(ValueError, match=r"uint8 frames \[T, H, W, 3\]"):
        transform(frames.float())
    with pytest.raises(ValueError, match="crop selects an eval view"):
        transform(frames, crop=1)
    with pytest.raises(ValueError, match="crop must be"):
        ClipTransform(64, *IDENTITY, train=False)(frames, crop=3)
    with pytest.raises(ValueError, match="scale_mode"):
        ClipTransform(64, *IDENTITY, train=True, scale_mode="zoom")
    with pytest.raises(ValueError, match="jitter"):
        ClipTransform(64, *IDENTITY, train=True, jitter=(1.3, 1.1))
