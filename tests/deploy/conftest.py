"""Small random-weight models saved with metadata that differs from the registry (64 px,
8 frames at 8 fps, custom labels): predictions prove the metadata drives inference.

Random weights alone give nearly the same probabilities for any input, which would make
comparisons weak; the BatchNorm statistics are therefore set from a batch of smooth
random clips and the classifier scaled up, so different inputs give clearly different
probabilities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import randomize
from vidnets import create_model
from vidnets.weights import save_weights

LABELS = ["archery", "bowling", "cycling", "diving", "fencing"]
METADATA = {"num_classes": len(LABELS), "labels": LABELS, "frames": 8, "size": 64, "fps": 8,
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


@torch.no_grad()
def _input_sensitive(model: nn.Module, seed: int) -> nn.Module:
    clips = F.interpolate(torch.rand(8, 3, 4, 4, 4, generator=torch.Generator().manual_seed(seed)),
                          size=(8, 64, 64), mode="trilinear")
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average over the calibration batch
    model.train()(clips)
    model.head.classifier.conv.weight.mul_(4)
    return model.eval()


def _save(name: str, directory: Path, seed: int) -> Path:
    model = _input_sensitive(randomize(create_model(name, num_classes=len(LABELS)), seed), seed)
    return save_weights(model.state_dict(), directory / f"{name}.safetensors",
                        {**METADATA, "model": name})


@pytest.fixture(scope="session")
def stream_weights(tmp_path_factory) -> Path:
    return _save("movinet_a0_stream", tmp_path_factory.mktemp("weights"), seed=3)


@pytest.fixture(scope="session")
def base_weights(tmp_path_factory) -> Path:
    return _save("movinet_a0_base", tmp_path_factory.mktemp("weights"), seed=5)
