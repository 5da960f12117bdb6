"""Default configuration attached to every registered model name (timm style)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .data.labels import load_labels


@dataclass(frozen=True)
class ModelConfig:
    """Default configuration of a registered model."""

    name: str
    family: str
    build: Callable[..., Any] = field(repr=False, compare=False)
    frames: int
    size: int
    fps: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int
    label_set: str
    causal: bool
    params: int
    gflops: float
    top1: float | None = None
    top5: float | None = None
    dataset: str = ""
    input_range: tuple[float, float] = (0.0, 1.0)
    weights: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names of :attr:`label_set`."""
        return load_labels(self.label_set)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """``(3, T, H, W)`` of the official evaluation clip."""
        return (3, self.frames, self.size, self.size)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (no builder, no label list)."""
        return {k: v for k, v in self.__dict__.items() if k != "build"}
