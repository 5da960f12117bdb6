"""Open any supported weights source as a vidnets state dict plus metadata.

Sources: a vidnets ``.safetensors`` file; an official checkpoint as the release
``.tar.gz``, its directory, a ``checkpoint`` file or a prefix; or an http(s) URL of
either (downloaded into the cache first). Official checkpoints are converted without
TensorFlow once, then cached as safetensors keyed by the source's sha256.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
import time
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
    if cfg.family != "movinet":
        raise ValueError(f"{source}: no official-checkpoint converter for {model_name} "
                         f"(family {cfg.family})")
    path = Path(source)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vidnets-") as tmp:
        checkpoint = path
        if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
            checkpoint = safe_extract(path, tmp)
        variables = read_tf_checkpoint(checkpoint)
    num_classes = checkpoint_num_classes(variables)
    with torch.device("meta"):
        model = cfg.build(num_classes=num_classes)
    state = convert_movinet(variables, model, str(source))
    metadata = {
        "model": model_name, "family": cfg.family, "num_classes": num_classes,
        "label_set": LABEL_SETS_BY_CLASSES.get(num_classes), "input_range": cfg.input_range,
        "mean": cfg.mean, "std": cfg.std, "frames": cfg.frames, "size": cfg.size,
        "fps": cfg.fps, "source": url or str(path.resolve()),
        "source_sha256": source_sha256(path),
        "format": "tf-movinet-checkpoint", "tensors": len(state),
        "checkpoint_variables": sum(map(is_model_variable, variables)),
        "conversion_seconds": round(time.perf_counter() - start, 3),
    }
    return state, metadata


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
