"""Training checkpoints: model weights as safetensors plus a small trainer-state file.

Layout inside a run directory::

    checkpoints/step-000120.safetensors   model (and EMA-free) weights + vidnets metadata
    checkpoints/step-000120.state.pt      optimizer, epoch/step, sampler position, RNG states
    checkpoints/last.json                 names the newest complete pair

Every file is written to a temporary name and renamed, and ``last.json`` is replaced only
after both files exist, so a process killed at any moment leaves the previous checkpoint
usable.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..weights.safetensors_io import load_weights, save_weights

POINTER = "last.json"


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states, in a ``weights_only`` form."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(), "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def save_checkpoint(directory: str | os.PathLike, step: int, model_state: dict[str, torch.Tensor],
                    trainer_state: dict[str, Any], metadata: dict[str, Any], *,
                    keep: int = 2) -> Path:
    """Write the checkpoint of global ``step``; keep the ``keep`` newest. Returns the
    weights path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"step-{step:07d}.safetensors"
    state = directory / f"step-{step:07d}.state.pt"
    save_weights(model_state, weights, metadata)
    _atomic_torch_save(trainer_state, state)
    _atomic_json({"step": step, "weights": weights.name, "state": state.name},
                 directory / POINTER)
    for old in sorted(directory.glob("step-*.safetensors"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_name(old.name.replace(".safetensors", ".state.pt")).unlink(missing_ok=True)
    return weights


def load_checkpoint(directory: str | os.PathLike
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]] | None:
    """``(model_state, trainer_state, metadata)`` of the newest checkpoint, or ``None``."""
    directory = Path(directory)
    pointer = directory / POINTER
    if not pointer.is_file():
        return None
    entry = json.loads(pointer.read_text())
    weights, metadata = load_weights(directory / entry["weights"])
    trainer_state = torch.load(directory / entry["state"], map_location="cpu",
                               weights_only=True)
    return weights, trainer_state, metadata
