"""Open any supported weights source as a vidnets state dict plus metadata.

Sources: a vidnets ``.safetensors`` file; an official TF MoViNet checkpoint (the release
``.tar.gz``, its directory, a ``checkpoint`` file or a prefix); a PyTorch checkpoint of
the official X3D/VoV3D code (``.pyth``/``.pth``/``.pt``, loaded with
``weights_only=True``); or an http(s) URL of one (downloaded into the cache first).
Official checkpoints are converted once, then cached as safetensors keyed by the
source's sha256.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..layers import State
from .archive import safe_extract
from .download import cache_dir, download, sha256_of
from .safetensors_io import load_weights, save_weights
from .tf_checkpoint import read_tf_checkpoint
from .tf_movinet import checkpoint_num_classes, convert_movinet, is_model_variable

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
TORCH_SUFFIXES = (".pyth", ".pth", ".pt")
# family -> converter of a PyTorch state dict of the official code to ``model``'s names
TorchConverter = Callable[[State, torch.nn.Module, str], State]
TORCH_CONVERTERS: dict[str, TorchConverter] = {}


def register_torch_converter(family: str) -> Callable[[TorchConverter], TorchConverter]:
    """Decorator: ``fn(state_dict, model, source) -> vidnets state dict`` for a family."""
    def register(fn: TorchConverter) -> TorchConverter:
        TORCH_CONVERTERS[family] = fn
        return fn
    return register


def read_torch_checkpoint(path: Path) -> State:
    """The model state dict of a PyTorch checkpoint (``model_state``/``state_dict`` unwrapped)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ValueError(f"{path}: not a loadable PyTorch checkpoint ({exc})") from exc
    for key in ("model_state", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: no state dict of tensors found")
    return dict(obj)
LABEL_SETS_BY_CLASSES = {400: "kinetics400", 600: "kinetics600", 700: "kinetics700"}


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _source_files(path: Path) -> list[Path]:
    """The files a source consists of: itself, a directory's files, or ``prefix.*``."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return sorted(path.parent.glob(glob.escape(path.name) + ".*"))


def source_sha256(path: Path) -> str:
    """sha256 of a file, or of the sorted (name, sha256) list of a checkpoint's files."""
    if path.is_file():
        return sha256_of(path)
    digest = hashlib.sha256()
    for file in _source_files(path):
        digest.update(f"{file.name}\0{sha256_of(file)}\n".encode())
    return digest.hexdigest()


def convert_official(source: str | os.PathLike, model_name: str, *, url: str | None = None
                     ) -> tuple[State, dict[str, Any]]:
    """Convert an official checkpoint (archive, directory or prefix) for ``model_name``."""
    from ..registry import model_config

    cfg = model_config(model_name)
    path = Path(source)
    start = time.perf_counter()
    if path.name.lower().endswith(TORCH_SUFFIXES):
        if cfg.family not in TORCH_CONVERTERS:
            raise ValueError(f"{source}: no PyTorch-checkpoint converter for {model_name}")
        original = read_torch_checkpoint(path)
        num_classes = classifier_size(original)
        with torch.device("meta"):
            model = cfg.build(num_classes=num_classes)
        state = TORCH_CONVERTERS[cfg.family](original, model, str(source))
        source_format, source_tensors = "pytorch-state-dict", len(original)
    else:
        if cfg.family != "movinet":
            raise ValueError(f"{source}: {model_name} loads PyTorch checkpoints "
                             f"({', '.join(TORCH_SUFFIXES)}), not TF ones")
        with tempfile.TemporaryDirectory(prefix="vidnets-") as tmp:
            checkpoint = path
            if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
                checkpoint = safe_extract(path, tmp)
            variables = read_tf_checkpoint(checkpoint)
        num_classes = checkpoint_num_classes(variables)
        with torch.device("meta"):
            model = cfg.build(num_classes=num_classes)
        state = convert_movinet(variables, model, str(source))
        source_format = "tf-movinet-checkpoint"
        source_tensors = sum(map(is_model_variable, variables))
    metadata = {
        "model": model_name, "family": cfg.family, "num_classes": num_classes,
        "label_set": LABEL_SETS_BY_CLASSES.get(num_classes), "input_range": cfg.input_range,
        "mean": cfg.mean, "std": cfg.std, "frames": cfg.frames, "size": cfg.size,
        "fps": cfg.fps, "source": url or str(path.resolve()),
        "source_sha256": source_sha256(path),
        "format": source_format, "tensors": len(state), "checkpoint_variables": source_tensors,
        "conversion_seconds": round(time.perf_counter() - start, 3),
    }
    return state, metadata


def classifier_size(state: State) -> int:
    """Classes of a PyTorch classification state dict: rows of its last 1-D bias."""
    biases = [v for k, v in state.items() if k.endswith("bias") and v.dim() == 1]
    if not biases:
        raise ValueError("no bias tensor found: cannot tell the number of classes")
    return int(biases[-1].shape[0])


def load_checkpoint(source: str | os.PathLike, model_name: str, *, cache: bool = True
                    ) -> tuple[State, dict[str, Any]]:
    """State dict and metadata of ``source`` for the registered model ``model_name``."""
    url = str(source) if _is_url(str(source)) else None
    path = Path(source)
    if url:
        downloads = cache_dir() / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        path = download(url, dest=downloads)
    if path.suffix == ".safetensors":
        return load_weights(path)
    if not _source_files(path):
        raise FileNotFoundError(f"weights not found: {path}")
    cached = None
    if cache:
        key = f"{model_name}-{source_sha256(path)[:16]}.safetensors"
        cached = cache_dir() / "converted" / key
        if cached.is_file():
            return load_weights(cached)
    state, metadata = convert_official(path, model_name, url=url)
    if cached is not None:
        save_weights(state, cached, metadata)
    return state, metadata
