"""vidnets checkpoints: safetensors tensors plus metadata that travels with them.

The metadata (model name, classes, label set, input range, frames, size, source URL
and sha256 ...) is stored as JSON under the ``vidnets`` key of the safetensors header,
so inference needs nothing but the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..layers import State

METADATA_KEY = "vidnets"


def save_weights(state_dict: State, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``state_dict`` and JSON ``metadata`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    os.replace(tmp, path)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The vidnets metadata of a safetensors file (``{}`` if it has none)."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    return json.loads(raw) if raw else {}


def load_weights(path: str | os.PathLike) -> tuple[State, dict[str, Any]]:
    """Tensors and metadata of a vidnets safetensors file."""
    metadata = read_metadata(path)
    return load_file(str(path)), metadata


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path


def load_into(model: torch.nn.Module, state_dict: State, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists every mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict) if own[k].numel() != state_dict[k].numel())
    if missing or unexpected or wrong:
        lines = [f"{source} does not fit {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {', '.join(missing[:10])}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {', '.join(unexpected[:10])}")
        for k in wrong[:10]:
            lines.append(
                f"  {k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)}"
            )
        raise ValueError("\n".join(lines))
    model.load_state_dict(state_dict, strict=True)
