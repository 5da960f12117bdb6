"""Inference preprocessing from a checkpoint's metadata: clip length, frame sampling,
size and normalisation (the registry config fills only what the metadata lacks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ModelConfig
from ..data.transforms import ClipTransform


@dataclass(frozen=True)
class Preprocessing:
    """How frames reach the model: ``frames`` per clip, sampled at ``fps`` (by time) or,
    with ``fps=None``, every ``stride``-th decoded frame; the short side resized to
    ``round(size * test_scale)``, a centre ``size x size`` crop, ``(x / 255 - mean) / std``.
    """

    frames: int
    size: int
    fps: float | None
    stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    test_scale: float = 1.0

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], cfg: ModelConfig) -> Preprocessing:
        """The weights' ``metadata`` (trained or converted checkpoint) decides; ``cfg``
        supplies the keys it lacks. A present ``fps: null`` means stride sampling."""
        def get(key: str, default: Any) -> Any:
            value = metadata.get(key)
            return default if value is None else value

        fps = metadata.get("fps", cfg.fps)
        return cls(
            frames=int(get("frames", cfg.frames)),
            size=int(get("size", cfg.size)),
            fps=None if fps is None else float(fps),
            stride=int(get("stride", 1)) if fps is None else 1,
            mean=tuple(float(v) for v in get("mean", cfg.mean)),
            std=tuple(float(v) for v in get("std", cfg.std)),
            test_scale=float(get("test_scale", 1.0)),
        )

    def transform(self) -> ClipTransform:
        """The eval transform: uint8 ``[T, H, W, 3]`` -> float32 ``[3, T, size, size]``."""
        return ClipTransform(self.size, self.mean, self.std, train=False,
                             test_scale=self.test_scale)

    def clip_seconds(self, source_fps: float) -> float:
        """Seconds of video one clip covers (``source_fps`` matters for stride sampling)."""
        if self.fps is not None:
            return self.frames / self.fps
        return self.frames * self.stride / source_fps

    def describe(self) -> str:
        """One line, e.g. ``8 frames at 5 fps, 172 x 172``."""
        rate = f"{self.fps:g} fps" if self.fps is not None else f"every {self.stride} frames"
        return f"{self.frames} frames at {rate}, {self.size} x {self.size}"
