"""X3D: equal to pytorchvideo 0.1.5, PySlowFast names, the paper's figures, streaming init.

The reference is pytorchvideo's ``create_x3d`` (``pip install --no-deps pytorchvideo==0.1.5
fvcore iopath`` + their small pure-Python deps, as ``scripts/test.sh``), built with random
weights and randomised BN statistics; its logits must equal vidnets' after loading its
state dict as a hub-style ``{"model_state": ...}`` checkpoint. Without pytorchvideo those
tests skip, unless ``VIDNETS_REQUIRE_REFERENCE=1`` makes that a failure.

PySlowFast is not installed: its checkpoints are synthesised by renaming pytorchvideo's
keys with a table written here from PySlowFast's module names, plus the stage-1 shortcut
BN that PySlowFast has and pytorchvideo lacks.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
import warnings

import pytest
import torch
from torch import nn

import vidnets
from tests.conftest import missing_reference, randomize
from vidnets.flops import count_bn_statistics, count_macs, count_params
from vidnets.weights.x3d import PYTORCHVIDEO, official_name

# vidnets name -> pytorchvideo create_x3d arguments and the compared input (B, T, size).
# The canonical presets (the hub's), except XL (no preset; the paper's width 2.9) at a
# reduced size: pytorchvideo's head pools with a fixed window sized from these arguments.
CASES = {
    "x3d_xs": (dict(input_clip_length=4, input_crop_size=160), (2, 4, 160)),
    "x3d_s": (dict(input_clip_length=13, input_crop_size=160), (1, 13, 160)),
    "x3d_m": (dict(input_clip_length=16, input_crop_size=224), (1, 16, 224)),
    "x3d_l": (dict(input_clip_length=16, input_crop_size=312, depth_factor=5.0), (1, 16, 312)),
    "x3d_xl": (dict(input_clip_length=8, input_crop_size=128, depth_factor=5.0,
                    width_factor=2.9), (1, 8, 128)),
}
# Counted by the issue author with pytorchvideo 0.1.5, 400 classes.
PYTORCHVIDEO_PARAMS = {"x3d_xs": 3_794_274, "x3d_s": 3_794_274, "x3d_m": 3_794_274,
                       "x3d_l": 6_153_384}
# pytorchvideo key -> PySlowFast key, applied in order (from PySlowFast's X3D, X3DStem,
# X3DTransform, ResBlock, SE and X3DHead module names).
TO_PYSLOWFAST = [
    (r"^blocks\.0\.conv\.conv_t\.", "s1.pathway0_stem.conv_xy."),
    (r"^blocks\.0\.conv\.conv_xy\.", "s1.pathway0_stem.conv."),
    (r"^blocks\.0\.norm\.", "s1.pathway0_stem.bn."),
    (r"^blocks\.5\.pool\.pre_conv\.", "head.conv_5."),
    (r"^blocks\.5\.pool\.pre_norm\.", "head.conv_5_bn."),
    (r"^blocks\.5\.pool\.post_conv\.", "head.lin_5."),
    (r"^blocks\.5\.proj\.", "head.projection."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.", lambda m: f"s{int(m[1]) + 1}.pathway0_res{m[2]}."),
    (r"\.branch2\.conv_([abc])\.", r".branch2.\1."),
    (r"\.branch2\.norm_([ac])\.", r".branch2.\1_bn."),
    (r"\.branch2\.norm_b\.0\.", ".branch2.b_bn."),
    (r"\.branch2\.norm_b\.1\.block\.0\.", ".branch2.se.fc1."),
    (r"\.branch2\.norm_b\.1\.block\.2\.", ".branch2.se.fc2."),
    (r"\.branch1_conv\.", ".branch1."),
    (r"\.branch1_norm\.", ".branch1_bn."),
]


@pytest.fixture(scope="module")
def create_x3d():
    """pytorchvideo's builder. Its package imports ``torchvision.ops.RoIAlign`` (unused by
    X3D); without torchvision a stand-in module provides that one name during the import."""
    missing = [m for m in ("pytorchvideo", "fvcore", "iopath")
               if importlib.util.find_spec(m) is None]
    message = (f"pytorchvideo reference needs {missing}: pip install --no-deps "
               "pytorchvideo==0.1.5 fvcore iopath (see scripts/test.sh)")
    if not missing:
        with pytest.MonkeyPatch.context() as mp:
            if importlib.util.find_spec("torchvision") is None:
                ops = types.ModuleType("torchvision.ops")
                ops.RoIAlign = type("RoIAlign", (nn.Module,), {})
                mp.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
                mp.setitem(sys.modules, "torchvision.ops", ops)
            try:
                with warnings.catch_warnings():  # fvcore's torch.jit.script use
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return importlib.import_module("pytorchvideo.models.x3d").create_x3d
            except ImportError as exc:
                message = f"pytorchvideo does not import: {exc}"
    missing_reference(message)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDNETS_CACHE", str(tmp_path / "cache"))


def reference(create_x3d, name: str, seed: int = 0) -> nn.Module:
    """pytorchvideo's X3D with random weights, BN statistics and biases; logits out."""
    torch.manual_seed(seed)
    return randomize(create_x3d(**CASES[name][0], head_activation=None), seed)


def compare(model: nn.Module, ref: nn.Module, name: str) -> float:
    batch, frames, size = CASES[name][1]
    clip = torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = ref(clip), model(clip)
    assert got.shape == expected.shape == (batch, 400)
    return (got - expected).abs().max().item()


def save_checkpoint(state_dict: dict, path) -> str:
    torch.save({"model_state": state_dict}, path)
    return str(path)


def pytorchvideo_state(model: nn.Module) -> dict:
    """A vidnets X3D's state dict under pytorchvideo's names (a hub-style checkpoint)."""
    stages = len(model.stages)
    return {official_name(k, PYTORCHVIDEO, stages): v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", list(CASES))
def test_param_counts_equal_pytorchvideo(create_x3d, name):
    with torch.device("meta"):
        ref = create_x3d(**CASES[name][0])
        model = vidnets.create_model(name)
    assert count_params(model) == count_params(ref) == vidnets.model_config(name).params
    assert count_bn_statistics(model) == count_bn_statistics(ref)
    if name in PYTORCHVIDEO_PARAMS:
        assert count_params(model) == PYTORCHVIDEO_PARAMS[name]


@pytest.mark.parametrize("name", list(CASES))
def test_pytorchvideo_checkpoint_gives_equal_logits(create_x3d, name, tmp_path, cache):
    ref = reference(create_x3d, name)
    path = save_checkpoint(ref.state_dict(), tmp_path / f"{name}.pyth")
    model = vidnets.create_model(name, weights=path)
    assert compare(model, ref, name) < 1e-5


def test_pyslowfast_checkpoint_gives_equal_logits(create_x3d, tmp_path, cache):
    """PySlowFast's X3D = pytorchvideo's plus a BN on stage 1's first shortcut."""
    ref = reference(create_x3d, "x3d_xs")
    first = ref.blocks[1].res_blocks[0]
    assert first.branch1_conv is not None and first.branch1_norm is None
    first.branch1_norm = randomize(nn.BatchNorm3d(first.branch1_conv.out_channels), seed=3)
    renamed = {}
    for key, value in ref.state_dict().items():
        for pattern, replacement in TO_PYSLOWFAST:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    assert "s2.pathway0_res0.branch1_bn.running_var" in renamed
    assert "s5.pathway0_res6.branch2.c_bn.weight" in renamed
    assert not [k for k in renamed if k.startswith("blocks.")]
    path = save_checkpoint(renamed, tmp_path / "x3d_xs_pyslowfast.pyth")
    model = vidnets.create_model("x3d_xs", weights=path)
    assert compare(model, ref, "x3d_xs") < 1e-5


def test_xl_matches_the_paper():
    with torch.device("meta"):
        model = vidnets.create_model("x3d_xl")
    assert count_params(model) == pytest.approx(11.0e6, rel=0.02)
    assert count_macs(model, (1, 3, 16, 356, 356)) / 1e9 == pytest.approx(48.4, rel=0.05)


# The paper's GFLOPs: Table 3 (at the training crop) for every variant, and the registry's
# figure at its own input (Table 4 for M/L/XL).
@pytest.mark.parametrize(("name", "size", "gflops"), [
    ("x3d_xs", 160, 0.60), ("x3d_s", 160, 1.96), ("x3d_m", 224, 4.73), ("x3d_l", 312, 18.37),
    ("x3d_xl", 312, 35.84), ("x3d_m", 256, 6.2), ("x3d_l", 356, 24.8),
])
def test_gflops_match_the_paper(name, size, gflops):
    cfg = vidnets.model_config(name)
    with torch.device("meta"):
        model = vidnets.create_model(name)
    assert count_macs(model, (1, 3, cfg.frames, size, size)) / 1e9 == pytest.approx(
        gflops, rel=0.02)


def test_stream_initialises_from_a_base_checkpoint(tmp_path, cache):
    torch.manual_seed(0)
    base = randomize(vidnets.create_model("x3d_m"))
    path = save_checkpoint(pytorchvideo_state(base), tmp_path / "X3D_M.pyth")
    stream = vidnets.create_model("x3d_m_stream", weights=path)
    assert stream.causal
    expected = base.state_dict()
    got = stream.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    clip = torch.rand(1, 3, 3, 64, 64)
    state = stream.init_state(1, 64, 64)
    with torch.no_grad():
        logits, state = stream.stream_step(clip, state)
        torch.testing.assert_close(logits, stream(clip), atol=1e-5, rtol=1e-5)


def test_checkpoint_of_another_variant_is_refused_with_names(tmp_path, cache):
    torch.manual_seed(0)
    small = save_checkpoint(pytorchvideo_state(vidnets.create_model("x3d_s")),
                            tmp_path / "X3D_S.pyth")
    with pytest.raises(ValueError, match=r"(?s)not in the checkpoint \(\d+\): "
                                         r"stages\.0\.3\..*<- blocks\.1\.res_blocks\.3\."):
        vidnets.create_model("x3d_l", weights=small)
    large = save_checkpoint(pytorchvideo_state(vidnets.create_model("x3d_l")),
                            tmp_path / "X3D_L.pyth")
    with pytest.raises(ValueError, match=r"(?s)checkpoint tensors not used.*"
                                         r"blocks\.1\.res_blocks\.3\."):
        vidnets.create_model("x3d_m", weights=large)
    wider = r"stem\.conv\.conv\.weight: checkpoint \(24, 3, 1, 3, 3\), model \(32, 3, 1, 3, 3\)"
    with pytest.raises(ValueError, match=r"shape mismatches \(\d+\): " + wider):
        vidnets.create_model("x3d_xl", weights=large)


def test_foreign_checkpoint_is_refused(tmp_path, cache):
    path = save_checkpoint({"conv1.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(400)},
                           tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match=r"resnet\.pth: not an X3D checkpoint"):
        vidnets.create_model("x3d_s", weights=path)
