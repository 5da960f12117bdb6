"""Model registry: name -> builder + default config (timm style).

Each registered name carries what inference and evaluation need: clip length, frame
rate and resolution of the official evaluation, input normalisation, label set,
reference accuracy, parameter count and GFLOPs (multiply-adds, as the papers count).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .data.labels import load_labels
from .models import VideoClassifier, create_movinet

MOVINET_URL = "https://storage.googleapis.com/tf_model_garden/vision/movinet/{name}.tar.gz"


@dataclass(frozen=True)
class ModelConfig:
    """Default configuration of a registered model."""

    name: str
    family: str
    build: Callable[..., VideoClassifier] = field(repr=False, compare=False)
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


_REGISTRY: dict[str, ModelConfig] = {}


def register(cfg: ModelConfig) -> ModelConfig:
    if cfg.name in _REGISTRY:
        raise ValueError(f"model {cfg.name!r} is already registered")
    _REGISTRY[cfg.name] = cfg
    return cfg


def list_models(pattern: str = "") -> list[str]:
    """Registered names containing ``pattern``, in registration order."""
    return [name for name in _REGISTRY if pattern in name]


def model_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a registered model."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (vidnets.list_models() lists all "
                         f"{len(_REGISTRY)})") from None


def create_model(name: str, num_classes: int | None = None,
                 weights: str | os.PathLike | None = None, **kwargs: Any) -> VideoClassifier:
    """Build a registered model, optionally loading ``weights`` (a ``.safetensors`` file).

    ``num_classes`` defaults to the config's (or the checkpoint's, when given weights).
    """
    cfg = model_config(name)
    metadata: dict[str, Any] = {}
    state = None
    if weights is not None:
        from .weights import load_checkpoint

        state, metadata = load_checkpoint(weights, name)
    if num_classes is None:
        num_classes = int(metadata.get("num_classes", cfg.num_classes))
    model = cfg.build(num_classes=num_classes, **kwargs)
    if state is not None:
        from .weights.safetensors_io import load_into

        load_into(model, state, str(weights))
    model.eval()
    return model


# MoViNet ------------------------------------------------------------------------------
# (frames, size, fps) of the official Kinetics-600 evaluation clips, official GFLOPs, and
# top-1/top-5 of the seed tables: base K600, stream K600, base K400.
_MOVINET = {
    "a0": (50, 172, 5, 2.7, (72.28, 90.92), (72.05, 90.63), (69.40, 89.18)),
    "a1": (50, 172, 5, 6.0, (76.69, 93.40), (76.45, 93.25), (74.57, 92.03)),
    "a2": (50, 224, 5, 10.0, (78.62, 94.17), (78.40, 94.05), (75.91, 92.63)),
    "a3": (120, 256, 12, 57.0, (81.79, 95.67), (80.09, 94.84), (79.34, 94.52)),
    "a4": (80, 290, 8, 110.0, (83.48, 96.16), (81.49, 95.66), (80.64, 94.93)),
    "a5": (120, 320, 12, 280.0, (84.27, 96.39), (82.37, 95.79), (81.39, 95.06)),
}
# Exact trainable parameter counts with 600 classes (equal to tf-models-official 2.20).
_MOVINET_PARAMS = {
    "a0": (3_111_799, 3_748_031), "a1": (4_690_296, 6_447_352), "a2": (5_249_562, 7_326_962),
    "a3": (7_397_545, 10_986_618), "a4": (11_349_463, 18_136_182),
    "a5": (18_650_523, 31_495_934),
}


def _movinet_builder(model_id: str, stream: bool) -> Callable[..., VideoClassifier]:
    def build(num_classes: int = 600, **kwargs: Any) -> VideoClassifier:
        return create_movinet(model_id, stream=stream, num_classes=num_classes, **kwargs)

    return build


for _id, (_t, _s, _fps, _gf, _base_acc, _stream_acc, _k400_acc) in _MOVINET.items():
    for _stream in (False, True):
        _kind = "stream" if _stream else "base"
        _name = f"movinet_{_id}_{_kind}"
        _acc = _stream_acc if _stream else _base_acc
        _urls = {"kinetics600": MOVINET_URL.format(name=_name)}
        if not _stream:
            _urls["kinetics400"] = MOVINET_URL.format(name=f"{_name}_k400")
        register(ModelConfig(
            name=_name, family="movinet", build=_movinet_builder(_id, _stream),
            frames=_t, size=_s, fps=_fps, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
            num_classes=600, label_set="kinetics600", causal=_stream,
            params=_MOVINET_PARAMS[_id][_stream], gflops=_gf, top1=_acc[0], top5=_acc[1],
            dataset="kinetics600", weights=_urls,
        ))
