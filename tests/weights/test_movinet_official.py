"""Official TF MoViNet checkpoints load exactly (the proof of the converter).

``tools/tf_reference.py`` builds the official models (tf-models-official) with random
weights and randomised BatchNorm statistics, saves release-style checkpoints and the
official logits, in a separate process. Here vidnets loads them without TensorFlow.

CI runs a0_base, a0_stream, a3_stream (positional encoding), a0_base_k400 (400-class
head) and a0_stream in the 3d_2plus1d training layout. All 12 variants:
``VIDNETS_TF_REFERENCE_MODELS=all python -m pytest tests/weights/test_movinet_official.py``;
``VIDNETS_TF_REFERENCE_DIR=DIR`` reuses references generated earlier into ``DIR``.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import vidnets
from tests.conftest import missing_reference
from vidnets.weights.archive import ArchiveError
from vidnets.weights.tf_checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = "a0_base a0_stream a3_stream a0_base_k400"
_requested = os.environ.get("VIDNETS_TF_REFERENCE_MODELS", DEFAULT_MODELS).split()
MODELS = ([f"a{i}_{k}" for i in range(6) for k in ("base", "stream")]
          if _requested == ["all"] else _requested)
TRAIN_LAYOUT = "a0_stream_3d_2plus1d"
TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Path:
    if existing := os.environ.get("VIDNETS_TF_REFERENCE_DIR"):  # reuse a generated set
        return Path(existing)
    missing = [m for m in ("tensorflow", "tf_keras", "official")
               if importlib.util.find_spec(m) is None]
    if missing:
        missing_reference(f"official TF reference needs {missing}: "
                          "pip install -e .[tf-reference]")
    out = tmp_path_factory.mktemp("tf_reference")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    script = str(ROOT / "tools" / "tf_reference.py")
    for extra in ([], ["--conv-type", "3d_2plus1d"]):
        models = MODELS if not extra else ["a0_stream"]
        subprocess.run([sys.executable, script, "--models", *models, "--out", str(out), *extra],
                       check=True, env=env, timeout=3000, capture_output=True)
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VIDNETS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def model_name(reference_name: str) -> str:
    model_id, kind = reference_name.split("_")[:2]
    return f"movinet_{model_id}_{kind}"


def clip_of(record) -> torch.Tensor:
    return torch.from_numpy(record["input"]).permute(0, 4, 1, 2, 3)  # NTHWC -> NCTHW


def compare(model, record) -> dict[str, float]:
    """Max abs / relative logits differences: whole clip, and frame by frame (stream)."""
    clip = clip_of(record)
    with torch.no_grad():
        logits = model(clip).numpy()
    scale = np.abs(record["logits_clip"]).max()
    diffs = {"clip": float(np.abs(logits - record["logits_clip"]).max())}
    if "logits_frames" in record:
        state = model.init_state(1, clip.shape[3], clip.shape[4])
        worst = 0.0
        with torch.no_grad():
            for t in range(clip.shape[2]):
                out, state = model.stream_step(clip[:, :, t:t + 1], state)
                worst = max(worst, float(np.abs(out.numpy() - record["logits_frames"][t]).max()))
        diffs["frames"] = worst
    diffs["relative"] = max(diffs.values()) / scale
    return diffs


@pytest.mark.parametrize("name", [*MODELS, TRAIN_LAYOUT])
def test_official_checkpoint_gives_official_logits(name, reference, cache):
    record = np.load(reference / f"{name}.npz")
    model = vidnets.create_model(model_name(name), weights=reference / f"{name}.tar.gz")
    assert "tensorflow" not in sys.modules  # the loading path never imports TensorFlow
    assert model.num_classes == int(record["num_classes"])  # read from the checkpoint
    diffs = compare(model, record)
    print(f"{name}: {diffs}")
    assert max(diffs["clip"], diffs.get("frames", 0.0)) < TOLERANCE, diffs
    # converted once, then served from the cache
    assert len(list((cache / "converted").glob("*.safetensors"))) == 1


def test_directory_prefix_and_converted_file_load_alike(reference, cache, tmp_path):
    record = np.load(reference / "a0_stream.npz")
    directory = reference / "a0_stream"
    prefix = directory / "ckpt-1"
    out = tmp_path / "a0_stream.safetensors"
    done = subprocess.run([sys.executable, "-m", "vidnets.cli", "convert", str(directory),
                           "--model", "movinet_a0_stream", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "600 classes" in done.stdout and "sha256" in done.stdout
    meta = vidnets.weights.read_metadata(out)
    assert meta["model"] == "movinet_a0_stream" and meta["label_set"] == "kinetics600"
    assert meta["input_range"] == [0.0, 1.0] and (meta["frames"], meta["size"]) == (50, 172)
    for source in (directory, prefix, directory / "checkpoint", out):
        model = vidnets.create_model("movinet_a0_stream", weights=source)
        assert compare(model, record)["clip"] < TOLERANCE


def test_reference_can_fail(reference, cache):
    """Deliberate mistakes move the logits far beyond the tolerance."""
    record = np.load(reference / "a3_stream.npz")
    weights = reference / "a3_stream.tar.gz"

    def diff_with(mistake) -> float:
        model = vidnets.create_model("movinet_a3_stream", weights=weights)
        mistake(model)
        with torch.no_grad():
            return float(np.abs(model(clip_of(record)).numpy() - record["logits_clip"]).max())

    def bn_eps(model):
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eps = 1e-5

    def no_se(model):
        for block in model.blocks:
            block.se.forward = lambda x, state=None: (x, {})

    def no_positional_encoding(model):
        for block in model.blocks:
            block.se.pos_encoding.rezero.scale.data.zero_()

    for mistake in (bn_eps, lambda m: m.train(), no_se, no_positional_encoding):
        assert diff_with(mistake) > 100 * TOLERANCE


def test_served_over_http_downloaded_and_cached(reference, cache, http_server):
    url = http_server(reference) + "/a0_base.tar.gz"
    record = np.load(reference / "a0_base.npz")
    model = vidnets.create_model("movinet_a0_base", weights=url)
    assert compare(model, record)["clip"] < TOLERANCE
    assert (cache / "downloads" / "a0_base.tar.gz").is_file()
    meta = vidnets.weights.read_metadata(next((cache / "converted").glob("*.safetensors")))
    assert meta["source"] == url and len(meta["source_sha256"]) == 64


def test_checkpoint_of_another_variant_is_refused(reference, cache):
    with pytest.raises(ValueError, match=r"(?s)a0_base.tar.gz does not match.*not used"):
        vidnets.create_model("movinet_a1_base", weights=reference / "a0_base.tar.gz")
    with pytest.raises(ValueError, match=r"(?s)a0_stream.tar.gz does not match.*not used"):
        vidnets.create_model("movinet_a0_base", weights=reference / "a0_stream.tar.gz")
    assert not (cache / "converted").exists()  # nothing half-loaded or cached


def test_broken_checkpoints_are_named(reference, cache, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(reference / "a0_base", broken)
    data = next(broken.glob("*.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=data.name):
        vidnets.create_model("movinet_a0_base", weights=broken)

    no_index = tmp_path / "no_index"
    shutil.copytree(reference / "a0_base", no_index)
    next(no_index.glob("*.index")).unlink()
    with pytest.raises(CheckpointError, match="index"):
        vidnets.create_model("movinet_a0_base", weights=no_index)

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        payload = b"x" * 10
        info = tarfile.TarInfo("movinet_a0_base/../../escaped")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(ArchiveError, match=r"evil.tar.gz.*escaped"):
        vidnets.create_model("movinet_a0_base", weights=evil)
    assert not (tmp_path / "escaped").exists()
