"""Model registry: name -> builder + default config (timm style).

Each registered name carries what inference and evaluation need: clip length, frame
rate and resolution of the official evaluation, input normalisation, label set,
reference accuracy, parameter count and GFLOPs (multiply-adds, as the papers count).
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from .config import ModelConfig
from .models import VideoClassifier, ensemble, movinet, vov3d, x3d

_REGISTRY: dict[str, ModelConfig] = {}
FAMILIES = (movinet, x3d, vov3d, ensemble)


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
    """Build a registered model, optionally loading ``weights``.

    ``weights``: a vidnets ``.safetensors`` file, an official checkpoint (release
    ``.tar.gz``, directory or prefix; converted once and cached) or an http(s) URL of one.

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


for _family in FAMILIES:
    for _cfg in _family.CONFIGS:
        register(_cfg)
