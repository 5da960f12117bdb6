"""The synthetic motion dataset: clips whose class is defined only by motion.

Each clip shows one bright target shape (an ellipse, rectangle or lopsided triangle in a
random colour, half of it darker) over a dark, slowly drifting textured background, with
smaller, dimmer distractor shapes moving in random directions, and per-pixel noise.

The target always moves in all four ways at once: along x, along y, by rotation and by
size, each over a random range drawn the same way for every class. The class says which of
them make net progress over the clip, and which way (``move_up_left``: x and y both
decrease); the others go out and come back. Ten classes in five time-reversed pairs:
left/right, up/down, the two diagonals, grow/shrink.

What this hides from a model that sees frames but not their order:

* Exact: the two classes of a pair are time reversals. A clip of class ``2k + 1`` is the
  clip of class ``2k`` with the same random draws played backwards: the same frames.
* Per frame and per quantity: a steady sweep and a there-and-back trip visit the very same
  T values (the return trip takes the even steps out and the odd ones back), so in every
  class each of x, y, angle and size takes the same values, with the same distribution.
* Not hidden: the joint path. Positions on a straight line (``move_up_left``) and on a
  V (``move_left``, y going out and back) differ as point sets; any smooth path shows its
  shape up to its direction. Telling them apart needs comparing positions across frames.

Rotation is a nuisance motion only: ``movinet_a0_stream`` trained from scratch for a few
minutes did not learn its direction (about chance between clockwise and anti-clockwise),
while it learns directions of translation and growth to ~98%. The target is always
brighter than the background: with one contrast polarity the direction of a moving edge is
learnt several times faster than with random polarities.

``render_clip`` draws one clip with numpy; :class:`SyntheticMotionDataset` serves clips
rendered on the fly (deterministic in ``(seed, split, index)``); :func:`write_dataset`
writes them as real H.264 mp4 files with ``train.csv`` / ``val.csv`` (``path,label``) and
``classes.txt``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

# The class pairs and, for the first class of each, the direction of net progress of
# (x, y, angle, log size) over the clip; 0 marks a motion that goes out and comes back.
# Image axes: x to the right, y down.
_PAIRS: tuple[tuple[str, str, tuple[int, int, int, int]], ...] = (
    ("move_left", "move_right", (-1, 0, 0, 0)),
    ("move_up", "move_down", (0, -1, 0, 0)),
    ("move_up_left", "move_down_right", (-1, -1, 0, 0)),
    ("move_up_right", "move_down_left", (1, -1, 0, 0)),
    ("grow", "shrink", (0, 0, 0, 1)),
)
CLASSES: tuple[str, ...] = tuple(name for pair in _PAIRS for name in pair[:2])

SPLITS = ("train", "val")
MARKER = ".vidnets_synthetic"

# Ranges of the random draws; lengths in frame widths, angles in radians.
_SWEEPS = ((0.25, 0.45), (0.25, 0.45), (math.pi / 2, math.pi), (math.log(1.5), math.log(2.2)))
_TARGET_RADIUS = (0.18, 0.24)  # at the middle of the size range
_MARGIN = 0.15  # the target's centre stays this far from the frame's edges
_SHAPES = ("ellipse", "rectangle", "triangle")
_TARGET_BRIGHTNESS = (0.85, 1.0)  # of a colour's brightest channel
_DISTRACTOR_BRIGHTNESS = (0.4, 0.65)
_BACKGROUND_BRIGHTNESS = (0.1, 0.4)
_SHADE = (0.35, 0.55)  # brightness of a shape's darker half, relative to the other
_TEXTURE_CONTRAST = 0.08
_BACKGROUND_DRIFT = 0.01  # per frame, at most
_DISTRACTORS = (1, 3)
_DISTRACTOR_RADIUS = (0.04, 0.08)
_DISTRACTOR_SPEED = 0.03  # per frame, at most
_NOISE = (0.01, 0.04)  # std of the per-pixel noise, values in [0, 1]


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    """Inside-test in shape coordinates (the shape spans about ``[-1, 1]^2``)."""
    if kind == "ellipse":
        return u * u + (v * aspect) ** 2 <= 1.0
    if kind == "rectangle":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0 / aspect)
    return (v >= -0.6) & (v <= 1.0 - 1.2 * np.abs(u + 0.3)) & (u >= -1.0)


def _paint(rng: np.random.Generator, u: np.ndarray,
           brightness: tuple[float, float]) -> np.ndarray:
    """Colours ``[N, 3]`` at shape coordinates ``u`` ``[N]``: a random colour (its brightest
    channel in ``brightness``) with a darker band across the shape."""
    light = rng.random(3, dtype=np.float32)
    light *= np.float32(rng.uniform(*brightness)) / max(float(light.max()), 1e-3)
    dark = light * np.float32(rng.uniform(*_SHADE))
    frequency, phase = rng.uniform(2.0, 4.0), rng.uniform(0, 2 * np.pi)
    return np.where((np.sin(frequency * u + phase) > 0)[:, None], dark, light)


def _draw_shape(rng: np.random.Generator, clip: np.ndarray, x: np.ndarray, y: np.ndarray,
                angle: np.ndarray, radius: np.ndarray, brightness: tuple[float, float]) -> None:
    """Draw a random shape on ``clip`` ``[T, S, S, 3]`` in place; its centre, angle and
    radius (pixels) in each frame are ``[T]`` arrays."""
    size = clip.shape[1]
    kind = _SHAPES[rng.integers(len(_SHAPES))]
    aspect = rng.uniform(1.3, 2.2)
    # each frame is evaluated on the square around the shape only: [T, B, B]
    reach = int(radius.max() * 1.5) + 1
    offsets = np.arange(-reach, reach + 1)
    cols = np.floor(x).astype(np.int64)[:, None] + offsets  # [T, B]
    rows = np.floor(y).astype(np.int64)[:, None] + offsets
    dx = (cols - x[:, None])[:, None, :]
    dy = (rows - y[:, None])[:, :, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (cos * dx + sin * dy) / radius[:, None, None]
    v = (-sin * dx + cos * dy) / radius[:, None, None]
    visible = ((cols[:, None, :] >= 0) & (cols[:, None, :] < size)
               & (rows[:, :, None] >= 0) & (rows[:, :, None] < size))
    mask = _shape_mask(kind, u, v, aspect) & visible
    t, i, j = np.nonzero(mask)
    clip[t, rows[t, i], cols[t, j]] = _paint(rng, u[mask], brightness)


def _noise_texture(rng: np.random.Generator, width: int) -> np.ndarray:
    """Periodic coloured 1/f^beta noise ``[width, width, 3]`` around a dark random colour."""
    fy, fx = np.fft.fftfreq(width).astype(np.float32), np.fft.rfftfreq(width).astype(np.float32)
    radius = np.hypot(fy[:, None], fx[None, :])
    radius[0, 0] = 1.0
    amplitude = radius ** np.float32(-rng.uniform(1.0, 2.0))
    amplitude[0, 0] = 0.0
    white = rng.standard_normal((3, width, width), dtype=np.float32)
    fields = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=(width, width))
    fields /= fields.std(axis=(1, 2), keepdims=True)
    base = rng.random(3)
    base *= rng.uniform(*_BACKGROUND_BRIGHTNESS) / max(float(base.max()), 1e-3)
    mixing = rng.normal(0.0, _TEXTURE_CONTRAST, (3, 3))
    return (base + np.einsum("cij,cd->ijd", fields, mixing)).astype(np.float32)


def _background(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A textured background drifting slowly in a random direction: ``[T, S, S, 3]``.

    Noise texture, plus faint stripes and a colour gradient, each with probability 1/2.
    """
    texture = torch.from_numpy(_noise_texture(rng, size)).permute(2, 0, 1)
    heading = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0, _BACKGROUND_DRIFT) * size
    t = np.arange(frames, dtype=np.float32)[:, None, None]
    grid = np.arange(size, dtype=np.float32)
    x = grid[None, None, :] - np.float32(speed * np.cos(heading)) * t  # [T, 1, S]
    y = grid[None, :, None] - np.float32(speed * np.sin(heading)) * t  # [T, S, 1]
    # periodic bilinear lookup: grid_sample on a 3 x 3 tiling, coordinates in [-1, 1]
    gx = np.broadcast_to((np.mod(x, size) + size + 0.5) / (1.5 * size) - 1.0,
                         (frames, size, size))
    gy = np.broadcast_to((np.mod(y, size) + size + 0.5) / (1.5 * size) - 1.0,
                         (frames, size, size))
    grid_xy = torch.from_numpy(np.stack([gx, gy], axis=-1).reshape(1, -1, size, 2))
    clip = F.grid_sample(texture.repeat(1, 3, 3)[None], grid_xy, mode="bilinear",
                         align_corners=False)
    clip = clip[0].permute(1, 2, 0).reshape(frames, size, size, 3).numpy()
    if rng.random() < 0.5:
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.1, 0.4) * size
        phase = (np.cos(angle) * x + np.sin(angle) * y) * np.float32(2 * np.pi / period)
        clip += (rng.uniform(-0.1, 0.1, 3) * np.sin(phase)[..., None]).astype(np.float32)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * x + np.sin(angle) * y) / size - 0.5
        clip += (rng.uniform(-0.2, 0.2, 3) * ramp[..., None]).astype(np.float32)
    return clip


def _sweep(rng: np.random.Generator, frames: int, low: float, high: float,
           direction: int) -> np.ndarray:
    """Offsets ``[T]`` over a random range of width in [low, high], centred on 0.

    ``direction`` +1 / -1: one steady sweep. ``0``: out and back through the very same T
    values (even steps out, odd steps back), starting at either end, in either direction.
    """
    values = rng.uniform(low, high) * np.linspace(-0.5, 0.5, frames, dtype=np.float32)
    if direction:
        return direction * values
    order = np.concatenate([np.arange(0, frames, 2), np.arange(1, frames, 2)[::-1]])
    if rng.random() < 0.5:
        order = order[::-1]
    return np.float32(rng.choice((-1.0, 1.0))) * values[order]


def _target(rng: np.random.Generator, clip: np.ndarray, directions: Sequence[int]) -> None:
    """Draw the target on ``clip`` in place, moving along ``directions`` (see ``_PAIRS``)."""
    frames, size = clip.shape[:2]
    dx, dy, turn, zoom = (_sweep(rng, frames, *limits, direction)
                          for limits, direction in zip(_SWEEPS, directions, strict=True))
    dx, dy = dx * size, dy * size
    # the middle position is drawn so that the whole path stays inside the margins
    low, high = _MARGIN * size, (1 - _MARGIN) * size
    x = rng.uniform(low - dx.min(), high - dx.max()) + dx
    y = rng.uniform(low - dy.min(), high - dy.max()) + dy
    angle = rng.uniform(0, 2 * np.pi) + turn
    radius = rng.uniform(*_TARGET_RADIUS) * size * np.exp(zoom)
    _draw_shape(rng, clip, x, y, angle, radius, _TARGET_BRIGHTNESS)


def _distractors(rng: np.random.Generator, clip: np.ndarray) -> None:
    """Draw small, dimmer shapes moving and spinning at random on ``clip`` in place."""
    frames, size = clip.shape[:2]
    t = np.arange(frames, dtype=np.float32) - (frames - 1) / 2
    for _ in range(rng.integers(_DISTRACTORS[0], _DISTRACTORS[1] + 1)):
        heading, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0, _DISTRACTOR_SPEED) * size
        x = rng.uniform(0, size) + speed * np.cos(heading) * t
        y = rng.uniform(0, size) + speed * np.sin(heading) * t
        angle = rng.uniform(0, 2 * np.pi) + rng.uniform(-0.2, 0.2) * t
        radius = np.full(frames, rng.uniform(*_DISTRACTOR_RADIUS) * size)
        _draw_shape(rng, clip, x, y, angle, radius, _DISTRACTOR_BRIGHTNESS)


def render_clip(label: int, *, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of class ``CLASSES[label]``: uint8 ``[frames, size, size, 3]`` RGB.

    Deterministic given ``rng``'s state. Both classes of a pair draw the same random
    numbers, so ``render_clip(2k + 1, ...)`` equals ``render_clip(2k, ...)[::-1]`` for
    generators in the same state.
    """
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"label must be in [0, {len(CLASSES)}), got {label}")
    if frames < 2 or size < 16:
        raise ValueError(f"need frames >= 2 and size >= 16, got frames={frames}, size={size}")
    pair, reverse = divmod(label, 2)
    clip = _background(rng, frames, size)
    target_in_front = rng.random() < 0.5
    if target_in_front:
        _distractors(rng, clip)
    _target(rng, clip, _PAIRS[pair][2])
    if not target_in_front:
        _distractors(rng, clip)
    clip += np.float32(rng.uniform(*_NOISE)) * rng.standard_normal(clip.shape, np.float32)
    clip = (np.clip(clip, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(clip[::-1]) if reverse else clip


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that renders video ``index`` of ``split``."""
    return np.random.default_rng([seed, _split_code(split), index])


def balanced_labels(num_videos: int, *, seed: int, split: str) -> np.ndarray:
    """Labels ``[num_videos]``: every class equally often (±1), in a seeded random order."""
    labels = np.arange(num_videos) % len(CLASSES)
    return np.random.default_rng([seed, _split_code(split)]).permutation(labels)


def _split_code(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


class SyntheticMotionDataset(Dataset):
    """Clips rendered on the fly; item ``i`` depends only on ``(seed, split, i)``.

    Items follow the data contract: ``{"video": float32 [3, T, S, S] = (x / 255 - mean) /
    std, "label": int64 scalar, "index": i, "view": 0}``. An index may also be a tuple
    ``(i, frames, size)`` that renders item ``i`` at that shape. ``transform`` (optional)
    maps the uint8 frames ``[T, S, S, 3]`` (a tensor) to uint8 frames before normalising.
    """

    def __init__(self, num_videos: int, *, frames: int, size: int, seed: int = 0,
                 split: str = "train", mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0),
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        self.frames, self.size, self.seed, self.split = frames, size, seed, split
        self._labels = balanced_labels(num_videos, seed=seed, split=split)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
        self.transform = transform
        self.epoch = 0

    @property
    def labels(self) -> list[int]:
        return self._labels.tolist()

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES

    def set_epoch(self, epoch: int) -> None:
        """Kept for ``transform``s that use it; the rendered clips never change."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict:
        index, frames, size = key if isinstance(key, tuple) else (key, self.frames, self.size)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        index %= len(self)
        label = int(self._labels[index])
        clip = render_clip(label, frames=frames, size=size,
                           rng=clip_rng(self.seed, self.split, index))
        frames_u8 = torch.from_numpy(clip)
        if self.transform is not None:
            frames_u8 = self.transform(frames_u8)
        video = frames_u8.permute(3, 0, 1, 2).float().div_(255.0)
        return {"video": (video - self.mean) / self.std,
                "label": torch.tensor(label, dtype=torch.int64), "index": index, "view": 0}


def write_video(path: str | Path, clip: np.ndarray, *, fps: int, codec: str = "h264",
                crf: int = 18) -> None:
    """Encode uint8 RGB frames ``[T, H, W, 3]`` (H and W even) as a yuv420p video file."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = clip.shape[2], clip.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec in ("h264", "libx264"):
            stream.options = {"crf": str(crf)}
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _write_item(job: tuple[Path, int, int, str, int, int, int, int, str]) -> None:
    path, label, seed, split, index, frames, size, fps, codec = job
    clip = render_clip(label, frames=frames, size=size, rng=clip_rng(seed, split, index))
    write_video(path, clip, fps=fps, codec=codec)


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise ValueError(f"{out_dir}: not empty and not a synthetic dataset written before "
                         f"(no {MARKER} file); give an empty or new directory")


def write_dataset(out_dir: str | Path, *, num_train: int, num_val: int, frames: int, size: int,
                  fps: int, seed: int = 0, codec: str = "h264",
                  workers: int = 0) -> dict[str, Path]:
    """Write the dataset as video files: ``{split}/{index:05d}.mp4``, ``{split}.csv``
    (``path,label``: path relative to ``out_dir``, label a class name) and ``classes.txt``.

    Item ``i`` of a split is the clip ``SyntheticMotionDataset(..., seed, split)[i]`` shows
    (before compression). ``out_dir`` must be new, empty or a synthetic dataset written
    before (overwritten). ``workers > 0`` encodes in that many processes. Returns the paths
    of ``train.csv``, ``val.csv`` and ``classes.txt``.
    """
    if size % 2:
        raise ValueError(f"size must be even for yuv420p video, got {size}")
    out = Path(out_dir)
    _check_target(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(f"seed={seed} frames={frames} size={size} fps={fps}\n")
    jobs, rows = [], {}
    for split, count in zip(SPLITS, (num_train, num_val), strict=True):
        (out / split).mkdir(exist_ok=True)
        for stale in (out / split).glob("*.mp4"):
            stale.unlink()
        labels = balanced_labels(count, seed=seed, split=split)
        rows[split] = [(f"{split}/{i:05d}.mp4", CLASSES[label]) for i, label in enumerate(labels)]
        jobs += [(out / name, int(label), seed, split, i, frames, size, fps, codec)
                 for i, ((name, _), label) in enumerate(zip(rows[split], labels, strict=True))]
    if workers > 0:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_item, jobs, chunksize=16))
    else:
        for job in jobs:
            _write_item(job)
    paths = {"classes": out / "classes.txt"}
    paths["classes"].write_text("".join(f"{name}\n" for name in CLASSES))
    for split in SPLITS:
        paths[split] = out / f"{split}.csv"
        with paths[split].open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("path", "label"))
            writer.writerows(rows[split])
    return paths
