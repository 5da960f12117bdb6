"""Open any supported weights file as a vidnets state dict plus metadata."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..layers import State
from .safetensors_io import load_weights


def load_checkpoint(path: str | os.PathLike, model_name: str) -> tuple[State, dict[str, Any]]:
    """State dict and metadata of ``path`` for the registered model ``model_name``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_weights(path)
    raise ValueError(
        f"{path}: unsupported weights format for {model_name} (expected a "
        ".safetensors file written by vidnets)"
    )
