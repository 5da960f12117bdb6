"""VoV3D: exact sizes, GFLOPs, official-checkpoint mapping, streaming from base weights.

The official code (``youngwanLEE/VoV3D`` on PySlowFast) cannot be installed here, so
:func:`official_vov3d` below re-states its module tree in a few lines, written from
``vov3d_helper.py`` (``T_OSA_2plus1_Transform``, ``D_2plus1_D_bottlenck``),
``resnet_helper.ResBlock``/``ResStage``, ``vov3d_model_builder.VoV3D`` and PySlowFast's
``stem_helper.X3DStem``, ``head_helper.X3DHead`` and ``operators.SE``: same attribute names,
shapes, registration order and forward (PyTorch-default BatchNorm, the head's fixed
average-pool window and eval-time softmax). Its parameter counts equal the issue author's
counts measured with the official code, which pins the shapes; the forward is our
reading of that code, so a misreading shared by both sides would go unseen here.
"""

from collections import OrderedDict

import pytest
import torch
from torch import nn

import vidnets
from tests.conftest import randomize
from vidnets.flops import count_macs, count_params
from vidnets.models.vov3d import StageSpec, VoV3D, VoV3DSpec
from vidnets.weights.vov3d import convert_vov3d

# (INNER_CH, blocks per stage, NUM_CONV) of the official final configs
OFFICIAL_CONFIGS = {"m": (40, (1, 2, 3, 2), 5), "l": (48, (1, 2, 5, 3), 5)}
# Parameters measured with the official code (issue), and multiply-adds at 16x224x224.
OFFICIAL_PARAMS = {("m", 400): 3_667_360, ("l", 400): 6_297_168,
                   ("m", 174): 3_204_286, ("l", 174): 5_834_094}
GMACS = {"m": 4.92, "l": 9.31}
T, S = 6, 72  # odd feature maps on the way down: 36, 18, 9, 5, 3


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


class _SE(nn.Module):
    def __init__(self, channels: int, ratio: float = 0.0625) -> None:
        super().__init__()
        width = channels * ratio
        hidden = max(8, int(width + 4) // 8 * 8)
        hidden += 8 if hidden < 0.9 * width else 0
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.fc1_act = nn.ReLU()
        self.fc2 = nn.Conv3d(hidden, channels, 1)
        self.fc2_sig = nn.Sigmoid()

    def forward(self, x):
        return x * self.fc2_sig(self.fc2(self.fc1_act(self.fc1(self.avg_pool(x)))))


class _D2plus1D(nn.Module):
    def __init__(self, dim_in: int, inner: int, stride: int, idx: int) -> None:
        super().__init__()
        out = inner // 2
        self.residual = dim_in == out and stride != 2
        self.a = nn.Sequential(nn.Conv3d(dim_in, inner, 1, bias=False), _bn(inner), nn.ReLU())
        self.b1 = nn.Conv3d(inner, inner, (1, 3, 3), (1, stride, stride), (0, 1, 1),
                            groups=inner, bias=False)
        self.b2 = nn.Conv3d(inner, inner, (3, 1, 1), 1, (1, 0, 0), groups=inner, bias=False)
        self.b_bn = _bn(inner)
        self.se = _SE(inner) if idx % 2 == 0 else nn.Identity()
        self.b_relu = nn.SiLU()
        self.c = nn.Sequential(nn.Conv3d(inner, out, 1, bias=False), _bn(out))
        self.c_relu = nn.ReLU()

    def forward(self, x):
        y = self.c(self.b_relu(self.se(self.b_bn(self.b2(self.b1(self.a(x)))))))
        return self.c_relu(x + y if self.residual else y)


class _TOSA(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, stride: int, inner: int, n: int) -> None:
        super().__init__()
        self.stride = stride
        self.layers = nn.ModuleList(
            _D2plus1D(dim_in if i == 0 else inner // 2, inner, stride if i == 0 else 1, i)
            for i in range(n))
        concat = n * (inner // 2) + (dim_in if stride == 1 else 0)
        self.c = nn.Conv3d(concat, dim_out, 1, bias=False)
        self.c_bn = _bn(dim_out)

    def forward(self, x):
        outputs = [x] if self.stride == 1 else []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return self.c_bn(self.c(torch.cat(outputs, 1)))


class _ResBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, stride: int, inner: int, n: int) -> None:
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, (1, stride, stride), bias=False)
            self.branch1_bn = _bn(dim_out)
        self.branch2 = _TOSA(dim_in, dim_out, stride, inner, n)
        self.relu = nn.ReLU()

    def forward(self, x):
        shortcut = self.branch1_bn(self.branch1(x)) if hasattr(self, "branch1") else x
        return self.relu(shortcut + self.branch2(x))


class _Stem(nn.Module):
    def __init__(self, dim_out: int) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(3, dim_out, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
        self.conv = nn.Conv3d(dim_out, dim_out, (5, 1, 1), 1, (2, 0, 0), groups=dim_out,
                              bias=False)
        self.bn = _bn(dim_out)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(self.conv_xy(x))))


class _Head(nn.Module):
    def __init__(self, dim_in: int, dim_inner: int, num_classes: int, pool) -> None:
        super().__init__()
        self.conv_5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.conv_5_bn = _bn(dim_inner)
        self.conv_5_relu = nn.ReLU()
        self.avg_pool = nn.AvgPool3d(pool, stride=1)
        self.lin_5 = nn.Conv3d(dim_inner, 2048, 1, bias=False)
        self.lin_5_relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.projection = nn.Linear(2048, num_classes)
        self.act = nn.Softmax(dim=4)

    def forward(self, x):
        x = self.avg_pool(self.conv_5_relu(self.conv_5_bn(self.conv_5(x))))
        x = self.projection(self.dropout(self.lin_5_relu(self.lin_5(x)).permute(0, 2, 3, 4, 1)))
        return (x if self.training else self.act(x).mean([1, 2, 3])).flatten(1)


def official_vov3d(variant: str, num_classes: int, pool=(16, 7, 7)) -> nn.Sequential:
    """The official module tree (``s1`` ... ``s5``, ``head``) of VoV3D-``variant``."""
    inner_ch, depths, n = OFFICIAL_CONFIGS[variant]
    modules = [("s1", nn.Sequential(OrderedDict(pathway0_stem=_Stem(inner_ch // 2))))]
    dim_in = inner_ch // 2
    for i, blocks in enumerate(depths):
        dim_out, inner = int(inner_ch * (0.5, 1, 2, 4)[i]), inner_ch * (1, 2, 4, 8)[i]
        modules.append((f"s{i + 2}", nn.Sequential(OrderedDict(
            (f"pathway0_res{j}",
             _ResBlock(dim_in if j == 0 else dim_out, dim_out, 2 if j == 0 else 1, inner, n))
            for j in range(blocks)))))
        dim_in = dim_out
    modules.append(("head", _Head(dim_in, inner_ch * 8, num_classes, pool)))
    return nn.Sequential(OrderedDict(modules))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDNETS_CACHE", str(tmp_path / "cache"))
    return tmp_path


def save_official(model: nn.Module, path):
    """A checkpoint as the official ``save_checkpoint`` writes it."""
    torch.save({"epoch": 256, "model_state": model.state_dict(), "cfg": "MODEL:\n  ARCH: vov3d"},
               path)
    return path


@pytest.mark.parametrize(("variant", "classes"), list(OFFICIAL_PARAMS))
def test_param_counts_are_the_official_ones(variant, classes):
    name = f"vov3d_{variant}" + ("_ssv2" if classes == 174 else "")
    with torch.device("meta"):
        ours = vidnets.create_model(name)
        official = official_vov3d(variant, classes)
    assert ours.num_classes == classes
    assert count_params(ours) == count_params(official) == OFFICIAL_PARAMS[variant, classes]
    assert vidnets.model_config(name).params == OFFICIAL_PARAMS[variant, classes]


@pytest.mark.parametrize("variant", ["m", "l"])
def test_gflops_at_16x224(variant):
    cfg = vidnets.model_config(f"vov3d_{variant}")
    with torch.device("meta"):
        model = vidnets.create_model(cfg.name)
    gmacs = count_macs(model, (1, *cfg.input_shape)) / 1e9
    assert cfg.input_shape == (3, 16, 224, 224)
    assert gmacs == pytest.approx(GMACS[variant], abs=0.005) == cfg.gflops


def test_seed_m_row_is_the_earlier_m_config():
    """The seed's 3.8 M / 4.4 GFLOPs VoV3D-M: INNER_CH 48, NUM_CONV 4, stages 1-1-2-2."""
    earlier = VoV3DSpec(24, (StageSpec(1, 24, 48), StageSpec(1, 48, 96), StageSpec(2, 96, 192),
                             StageSpec(2, 192, 384)), layers_per_block=4, head_channels=384)
    with torch.device("meta"):
        model = VoV3D(earlier, 400)
    assert count_params(model) == 3_800_448
    assert count_macs(model, (1, 3, 16, 224, 224)) / 1e9 == pytest.approx(4.4, abs=0.05)


@pytest.mark.parametrize("name", ["vov3d_m", "vov3d_l_ssv2", "vov3d_l_stream"])
def test_every_official_tensor_maps(name):
    cfg = vidnets.model_config(name)
    with torch.device("meta"):
        official = official_vov3d(name.split("_")[1], cfg.num_classes)
        ours = vidnets.create_model(name)
    state = convert_vov3d(official.state_dict(), ours, "official")
    assert set(state) == set(ours.state_dict())


def calibrated(model: nn.Module, clip: torch.Tensor) -> nn.Module:
    """BN statistics of ``clip``: activations stay O(1) through the depth, so any difference
    in the forward shows in the logits (random statistics let the signal fade)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(clip)
    return model.eval()


def test_official_checkpoint_loads_exactly(cache):
    torch.manual_seed(0)
    official = randomize(official_vov3d("m", 400, pool=(T, 3, 3)))
    official = calibrated(official, torch.randn(2, 3, T, S, S))
    path = save_official(official, cache / "vov3d_M_k400_weight.pth")
    model = vidnets.create_model("vov3d_m", weights=path)
    clip = torch.randn(2, 3, T, S, S)
    with torch.no_grad():
        torch.testing.assert_close(model(clip).log_softmax(1), official(clip).log(),
                                   atol=1e-4, rtol=1e-4)

    # the causal model starts from the same weights (a starting point for fine-tuning)
    stream = vidnets.create_model("vov3d_m_stream", weights=path)
    reference = model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in stream.state_dict().items())
    with torch.no_grad():
        logits, _ = stream.stream_step(clip[:, :, :2], stream.init_state(2, S, S))
    assert logits.shape == (2, 400) and torch.isfinite(logits).all()


def test_counterless_checkpoint_loads(cache):
    official = official_vov3d("m", 174)
    state = {k: v for k, v in official.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    path = cache / "vov3d_M_f16_ssv2.pth"
    torch.save({"model_state": state}, path)
    assert vidnets.create_model("vov3d_m_ssv2", weights=path).num_classes == 174


def test_wrong_variant_is_refused_with_names(cache):
    path = save_official(official_vov3d("l", 400), cache / "vov3d_L_k400_weight.pth")
    with pytest.raises(ValueError, match="vov3d_L_k400_weight.pth does not match VoV3D") as err:
        vidnets.create_model("vov3d_m", weights=path)
    message = str(err.value)
    assert "checkpoint tensors not used" in message and "s4.pathway0_res3." in message
    assert "stem.conv.conv.weight: checkpoint (24, 3, 1, 3, 3), model (20, 3, 1, 3, 3)" \
        in message

