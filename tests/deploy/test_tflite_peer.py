"""vidnets' movinet_a0_stream equals the official TFLite float32 stream model, frame by frame.

``benchmarks/peers/tflite_movinet.py`` builds the official TF MoViNet-A0-Stream with random
weights and BN statistics calibrated on a real clip, saves its TF checkpoint, exports it as
the official README does (``export_saved_model.py`` + ``TFLiteConverter``) and checks the
``.tflite`` against TF itself; here vidnets loads that checkpoint and streams the same real
frames. Small (64 px, 4 frames) for CI; the export runs in a TF subprocess and is cached
under ``$VIDNETS_CACHE/bench`` (a first export takes minutes on 2 cores, later runs
seconds). Without TensorFlow / tf-models-official / ai-edge-litert the tests skip, unless
``VIDNETS_REQUIRE_REFERENCE=1`` makes that a failure.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import vidnets
from benchmarks.peers import tflite_movinet
from tests.conftest import SHARED, missing_reference
from vidnets.data.transforms import ClipTransform
from vidnets.data.video import read_clip

MODEL = "movinet_a0_stream"
SIZE, FRAMES = 64, 4
TOLERANCE = 1e-3  # float32 TFLite (XNNPACK) vs float32 PyTorch; logits are O(1) here


def _require(ok: bool, message: str) -> None:
    if not ok:
        missing_reference(message)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """Real frames: 4 frames at the model's 5 fps, short side resized, centre 64 px crop."""
    video = SHARED / "data" / "videos" / "test.mp4"
    _require(video.is_file(), f"shared test video not found at {video}")
    cfg = vidnets.model_config(MODEL)
    frames = read_clip(video, start=0.0, num_frames=FRAMES, fps=cfg.fps)
    return ClipTransform.from_config(cfg, train=False, size=SIZE)(frames)[None]  # [1,3,T,S,S]


@pytest.fixture(scope="module")
def exported(clip) -> tflite_movinet.Export:
    missing = tflite_movinet.missing_packages()
    _require(not missing, f"the TFLite reference needs {missing}: "
                          "pip install -e .[tf-reference,deploy-reference]")
    video = clip.permute(0, 2, 3, 4, 1).numpy()  # NCTHW -> NTHWC, as TF
    # light_saved_model: same .tflite as the Keras SavedModel route, ~4x faster to make
    return tflite_movinet.export("a0", video=video, light_saved_model=True)


def tflite_logits(exported, clip, reset_states: bool = False) -> np.ndarray:
    stream = tflite_movinet.TFLiteStream(exported.tflite)
    video = clip.permute(0, 2, 3, 4, 1).numpy()
    states, out = stream.init_states(), []
    for t in range(video.shape[1]):
        if reset_states:
            states = stream.init_states()
        logits, states = stream.step(np.ascontiguousarray(video[:, t:t + 1]), states)
        out.append(logits)
    return np.stack(out)


def vidnets_logits(exported, clip) -> np.ndarray:
    model = vidnets.create_model(MODEL, weights=exported.checkpoint)
    assert "tensorflow" not in sys.modules  # TF stays in the export subprocess
    state, out = model.init_state(1, SIZE, SIZE), []
    with torch.no_grad():
        for t in range(clip.shape[2]):
            logits, state = model.stream_step(clip[:, :, t:t + 1], state)
            out.append(logits.numpy())
    return np.stack(out)


def test_export_matches_tensorflow(exported):
    """The .tflite holds the checkpoint's weights: it gives TF's logits on the same clip."""
    meta = exported.meta
    print(f"export {meta}")
    assert meta["self_check"]["relative"] < 1e-4, meta["self_check"]
    stream = tflite_movinet.TFLiteStream(exported.tflite)
    assert stream.image_shape == (1, 1, SIZE, SIZE, 3)
    assert all(name.startswith("state_") for name in stream.state_specs)


def test_vidnets_matches_tflite_frame_by_frame(exported, clip):
    ours = vidnets_logits(exported, clip)
    theirs = tflite_logits(exported, clip)
    assert ours.shape == theirs.shape == (FRAMES, 1, 600)
    diff = np.abs(ours - theirs).max(axis=(1, 2))
    scale = float(np.abs(theirs).max())
    print(f"per-frame max |vidnets - TFLite|: {diff}, max |logit| {scale:.3g}")
    assert 0.5 < scale < 100  # calibrated on this clip: a meaningful absolute tolerance
    assert diff.max() < TOLERANCE, diff


def test_comparison_can_fail(exported, clip):
    """Dropping the carried states moves the logits far beyond the tolerance."""
    carried = tflite_logits(exported, clip)
    reset = tflite_logits(exported, clip, reset_states=True)
    assert np.abs(carried[-1] - reset[-1]).max() > 100 * TOLERANCE
