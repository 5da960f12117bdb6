"""A model ready for inference: weights loaded, preprocessing and class names taken from
the weights' metadata."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import ModelConfig
from ..data.datasets import resolve_labels
from ..layers.norm import aggregate_sub_batch_stats
from ..models.base import VideoClassifier
from ..registry import create_model, model_config
from ..weights import load_checkpoint
from ..weights.safetensors_io import load_into
from .preprocess import Preprocessing


@dataclass(frozen=True)
class InferenceModel:
    """An eval-mode model with everything inference needs."""

    name: str
    model: VideoClassifier
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    metadata: dict[str, Any]


def load_inference_model(name: str, weights: str | os.PathLike,
                         *, labels: str | None = None) -> InferenceModel:
    """Build registered model ``name`` with ``weights`` (vidnets safetensors, official
    checkpoint or URL); ``labels`` (a label-set name or class file) names the classes when
    the weights carry no class list."""
    cfg = model_config(name)
    state, metadata = load_checkpoint(weights, name)
    names_in_metadata = metadata.get("labels") or ()
    num_classes = int(metadata.get("num_classes") or len(names_in_metadata) or cfg.num_classes)
    model = create_model(name, num_classes=num_classes, **metadata.get("options", {}))
    load_into(model, state, str(weights))
    aggregate_sub_batch_stats(model)
    model.eval()
    return InferenceModel(
        name=name,
        model=model,
        preprocessing=Preprocessing.from_metadata(metadata, cfg),
        class_names=class_names(metadata, cfg, num_classes, labels),
        metadata=metadata,
    )


def class_names(metadata: Mapping[str, Any], cfg: ModelConfig, num_classes: int,
                labels: str | None = None) -> tuple[str, ...]:
    """Names of the ``num_classes`` outputs: the metadata's ``labels`` list, else
    ``labels`` (set name or file), else the metadata's ``label_set``, else the config's
    label set. A given list of the wrong length is an error; the config's default
    set of the wrong length gives index names ``"0", "1", ...``."""
    sources: Sequence[tuple[str, Any]] = (
        ("the weights' labels", metadata.get("labels")),
        (f"--labels {labels}", labels),
        (f"the weights' label_set {metadata.get('label_set')}", metadata.get("label_set")),
    )
    for where, value in sources:
        if value:
            names = resolve_labels(value)
            if len(names) != num_classes:
                raise ValueError(f"{where} has {len(names)} class names but the model has "
                                 f"{num_classes} classes")
            return tuple(names)
    names = cfg.labels
    return tuple(names) if len(names) == num_classes else tuple(map(str, range(num_classes)))
