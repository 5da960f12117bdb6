"""Clip transforms on uint8 ``[T, H, W, 3]`` frames: one implementation for train and eval.

Train: short-side scale jitter (or random-resized crop) + random crop + horizontal flip.
Eval: short-side resize + centre crop, or one of PySlowFast's 3 crops. The geometry is
PySlowFast's (resize the short side with bilinear, no antialias, on float; then crop), but
only the crop is computed: each output pixel samples the source at the position the full
resize would give it (``grid_sample``), reading only the source rows and columns those
samples touch. This matches resize-then-crop to float rounding and never converts the
pixels the crop throws away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from vidnets.config import ModelConfig

ScaleMode = Literal["short_side", "random_resized_crop"]
# A random-resized crop draws this many boxes before falling back to a centre crop.
_RRC_ATTEMPTS = 10
# Frames are sampled in chunks of at most this many float source elements (64 MiB).
_CHUNK_ELEMENTS = 16 * 1024 * 1024


class ClipTransform:
    """uint8 ``[T, H, W, 3]`` -> normalised float32 ``[3, T, size, size]``.

    ``jitter``: in training the short side is scaled to ``round(size * U(jitter))`` before
    the random crop (PySlowFast's [256, 320] for 224 is ``(256 / 224, 320 / 224)``).
    ``test_scale``: in eval the short side is scaled to ``round(size * test_scale)``.
    A short side below ``size`` is raised to ``size``.
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        train: bool,
        scale_mode: ScaleMode = "short_side",
        jitter: tuple[float, float] = (1.0, 1.25),
        rrc_area: tuple[float, float] = (0.08, 1.0),
        rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        test_scale: float = 1.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (std > 0), got {mean} and {std}")
        if scale_mode not in ("short_side", "random_resized_crop"):
            raise ValueError(
                f"unknown scale_mode {scale_mode!r}; expected 'short_side' or "
                "'random_resized_crop'"
            )
        ranges = {"jitter": jitter, "rrc_area": rrc_area, "rrc_ratio": rrc_ratio}
        for name, (low, high) in ranges.items():
            if not 0 < low <= high:
                raise ValueError(
                    f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}"
                )
        if test_scale <= 0:
            raise ValueError(f"test_scale must be > 0, got {test_scale}")
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
        self.train = train
        self.scale_mode = scale_mode
        self.jitter = jitter
        self.rrc_area = rrc_area
        self.rrc_ratio = rrc_ratio
        self.flip = flip
        self.test_scale = test_scale

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, *, train: bool, size: int | None = None, **kwargs
    ) -> ClipTransform:
        """Size and normalisation from a registry config (``vidnets.model_config(name)``)."""
        return cls(size or cfg.size, cfg.mean, cfg.std, train=train, **kwargs)

    def __repr__(self) -> str:
        mode = self.scale_mode if self.train else f"eval, test_scale={self.test_scale}"
        return (
            f"ClipTransform(size={self.size}, {mode}, flip={self.flip and self.train}, "
            f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"
        )

    def __call__(
        self,
        frames: torch.Tensor,
        *,
        size: int | None = None,
        crop: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Transform one clip. ``size`` overrides the output size (Multigrid); ``crop``
        (eval only): None = centre, 0/1/2 = left/centre/right (top/centre/bottom for
        portrait frames); ``generator`` drives every random choice."""
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(
                f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}"
            )
        size = size or self.size
        height, width = frames.shape[1:3]
        if not self.train:
            rows, cols = self._eval_grid(height, width, size, crop)
            return self._sample(frames, rows, cols)
        if crop is not None:
            raise ValueError("crop selects an eval view; a train transform crops randomly")
        if self.scale_mode == "random_resized_crop":
            top, left, box_h, box_w = _random_resized_box(
                height, width, self.rrc_area, self.rrc_ratio, generator
            )
            rows = _source_coords(top, box_h, size, 0, size)
            cols = _source_coords(left, box_w, size, 0, size)
        else:
            rows, cols = self._jitter_grid(height, width, size, generator)
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            cols = cols.flip(0)
        return self._sample(frames, rows, cols)

    def _jitter_grid(
        self, height: int, width: int, size: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Short side scaled to ``round(size * U(jitter))``, then a random ``size`` crop."""
        low, high = self.jitter
        scale = low + (high - low) * float(torch.rand((), generator=generator))
        scaled_h, scaled_w = _short_side_shape(height, width, max(size, round(size * scale)))
        top = int(torch.randint(scaled_h - size + 1, (), generator=generator))
        left = int(torch.randint(scaled_w - size + 1, (), generator=generator))
        return (
            _source_coords(0, height, scaled_h, top, size),
            _source_coords(0, width, scaled_w, left, size),
        )

    def _eval_grid(
        self, height: int, width: int, size: int, crop: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Short side scaled to ``round(size * test_scale)``; the centre crop, or crop
        0/1/2 along the long side (PySlowFast ``uniform_crop``)."""
        if crop not in (None, 0, 1, 2):
            raise ValueError(f"crop must be None, 0, 1 or 2, got {crop!r}")
        short = max(size, round(size * self.test_scale))
        scaled_h, scaled_w = _short_side_shape(height, width, short)
        top, left = math.ceil((scaled_h - size) / 2), math.ceil((scaled_w - size) / 2)
        if crop in (0, 2):
            if height > width:
                top = 0 if crop == 0 else scaled_h - size
            else:
                left = 0 if crop == 0 else scaled_w - size
        return (
            _source_coords(0, height, scaled_h, top, size),
            _source_coords(0, width, scaled_w, left, size),
        )

    def _sample(self, frames: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Bilinear samples at source ``rows x cols`` (float pixel positions), normalised,
        as ``[3, T, len(rows), len(cols)]``. Only the source rows and columns that the
        samples touch are gathered and converted to float."""
        row_index, row_pos = _gather_plan(rows, frames.shape[1])
        col_index, col_pos = _gather_plan(cols, frames.shape[2])
        region = _take(_take(frames, 1, row_index), 2, col_index)
        region_h, region_w = len(row_index), len(col_index)
        # grid_sample's normalised coordinates (align_corners=False) within the region
        grid_y = (row_pos * 2 + 1) / region_h - 1
        grid_x = (col_pos * 2 + 1) / region_w - 1
        grid = torch.stack(torch.meshgrid(grid_x, grid_y, indexing="xy"), dim=-1)
        grid = grid.float().unsqueeze(0)  # [1, S_h, S_w, 2] as (x, y)
        num_frames = frames.shape[0]
        out = torch.empty(3, num_frames, len(rows), len(cols))
        step = max(1, _CHUNK_ELEMENTS // (3 * region_h * region_w))
        for first in range(0, num_frames, step):
            chunk = region[first : first + step].permute(3, 0, 1, 2)  # [3, t, h, w]
            count = chunk.shape[1]
            source = chunk.reshape(1, 3 * count, region_h, region_w).float()
            sampled = F.grid_sample(
                source, grid, mode="bilinear", padding_mode="border", align_corners=False
            )
            out[:, first : first + count] = sampled.view(3, count, len(rows), len(cols))
        # (x / 255 - mean) / std
        return out.mul_(1.0 / (255.0 * self.std)).sub_(self.mean / self.std)


def _take(frames: torch.Tensor, dim: int, lines: torch.Tensor) -> torch.Tensor:
    """``frames.index_select(dim, lines)``, as a view when the lines are contiguous."""
    first, last = int(lines[0]), int(lines[-1])
    if last - first + 1 == len(lines):
        return frames.narrow(dim, first, len(lines))
    return frames.index_select(dim, lines)


def _gather_plan(coords: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The source lines bilinear sampling at ``coords`` reads (each floor and the next
    line, sorted) and ``coords`` re-expressed as positions in that gathered set: a floor
    line and its successor stay adjacent, so the interpolation is unchanged."""
    floor = coords.floor().long().clamp(0, length - 1)
    lines = torch.unique(torch.cat([floor, (floor + 1).clamp(max=length - 1)]))
    return lines, torch.searchsorted(lines, floor) + (coords - floor)


def _short_side_shape(height: int, width: int, short: int) -> tuple[int, int]:
    """Frame shape after scaling the short side to ``short`` (long side floored, as
    PySlowFast's ``random_short_side_scale_jitter``)."""
    if width < height:
        return math.floor(height / width * short), short
    return short, math.floor(width / height * short)


def _source_coords(start: int, length: int, scaled: int, offset: int, count: int) -> torch.Tensor:
    """Source positions (float64 pixels) of output pixels ``offset .. offset + count - 1``
    when ``length`` source pixels from ``start`` are resized to ``scaled`` (PyTorch's
    bilinear, align_corners=False: ``(i + 0.5) * length / scaled - 0.5``, clamped)."""
    index = torch.arange(offset, offset + count, dtype=torch.float64)
    position = (index + 0.5) * (length / scaled) - 0.5
    return start + position.clamp(0, length - 1)


def _random_resized_box(
    height: int,
    width: int,
    area_range: tuple[float, float],
    ratio_range: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[int, int, int, int]:
    """Inception-style ``(top, left, h, w)``: area fraction in ``area_range``, aspect ratio
    (w/h) log-uniform in ``ratio_range``; a centre crop with the ratio clamped after
    failed attempts."""
    area = height * width
    log_low, log_high = math.log(ratio_range[0]), math.log(ratio_range[1])
    for _ in range(_RRC_ATTEMPTS):
        u_area, u_ratio, u_top, u_left = torch.rand(4, generator=generator).tolist()
        target = area * (area_range[0] + (area_range[1] - area_range[0]) * u_area)
        ratio = math.exp(log_low + (log_high - log_low) * u_ratio)
        box_w = round(math.sqrt(target * ratio))
        box_h = round(math.sqrt(target / ratio))
        if 0 < box_w <= width and 0 < box_h <= height:
            top = min(int(u_top * (height - box_h + 1)), height - box_h)
            left = min(int(u_left * (width - box_w + 1)), width - box_w)
            return top, left, box_h, box_w
    ratio = min(max(width / height, ratio_range[0]), ratio_range[1])
    if width / height < ratio:
        box_h, box_w = min(height, round(width / ratio)), width
    else:
        box_h, box_w = height, min(width, round(height * ratio))
    return (height - box_h) // 2, (width - box_w) // 2, box_h, box_w
