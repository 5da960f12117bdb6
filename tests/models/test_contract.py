"""Contract tests over the whole registry (timm style)."""

import dataclasses

import pytest
import torch

import vidnets
from tests.conftest import randomize
from vidnets.flops import count_bn_statistics, count_params
from vidnets.models.movinet import BLOCK_SPECS, STREAM, MoViNet

ALL = vidnets.list_models()
STREAMING = [n for n in ALL if vidnets.model_config(n).causal]

# Official counts (tf-models-official 2.20, 600 classes): trainable, BN mean + variance.
OFFICIAL_COUNTS = {
    "movinet_a0_base": (3_111_799, 14_272), "movinet_a1_base": (4_690_296, 27_616),
    "movinet_a2_base": (5_249_562, 31_360), "movinet_a3_base": (7_397_545, 45_744),
    "movinet_a4_base": (11_349_463, 73_264), "movinet_a5_base": (18_650_523, 112_832),
    "movinet_a0_stream": (3_748_031, 17_952), "movinet_a1_stream": (6_447_352, 34_208),
    "movinet_a2_stream": (7_326_962, 39_088), "movinet_a3_stream": (10_986_618, 56_528),
    "movinet_a4_stream": (18_136_182, 92_144), "movinet_a5_stream": (31_495_934, 140_800),
    # VoV3D: the official PyTorch code with its final configs, 400 / 174 classes.
    "vov3d_m": (3_667_360, 35_600), "vov3d_m_ssv2": (3_204_286, 35_600),
    "vov3d_m_stream": (3_667_360, 35_600), "vov3d_l": (6_297_168, 62_688),
    "vov3d_l_ssv2": (5_834_094, 62_688), "vov3d_l_stream": (6_297_168, 62_688),
    # X3D, 400 classes: XS/S/M/L equal pytorchvideo 0.1.5 create_x3d; XL (width 2.9, depth
    # 5.0) equals it too. Streaming variants have the same parameters.
    "x3d_xs": (3_794_274, 31_416), "x3d_s": (3_794_274, 31_416), "x3d_m": (3_794_274, 31_416),
    "x3d_l": (6_153_384, 66_264), "x3d_xl": (11_095_840, 95_580),
    "x3d_xs_stream": (3_794_274, 31_416), "x3d_s_stream": (3_794_274, 31_416),
    "x3d_m_stream": (3_794_274, 31_416), "x3d_l_stream": (6_153_384, 66_264),
    "x3d_xl_stream": (11_095_840, 95_580),
    # MoViNet-A6 ensembles: the sums of their A4 and A5 members.
    "movinet_a6": (29_999_986, 186_096), "movinet_a6_stream": (49_632_116, 232_944),
}
H, W = 40, 48  # odd feature maps on the way down: 20x24, 10x12, 5x6, 3x3


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name):
        if name not in cache:
            cache.clear()
            torch.manual_seed(0)
            cache[name] = randomize(vidnets.create_model(name))
        return cache[name]

    return get


@pytest.mark.parametrize("name", ALL)
def test_param_counts_equal_official(name):
    with torch.device("meta"):
        model = vidnets.create_model(name)
    assert (count_params(model), count_bn_statistics(model)) == OFFICIAL_COUNTS[name]
    assert vidnets.model_config(name).params == OFFICIAL_COUNTS[name][0]


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_reset(name, models):
    model = models(name)
    frames = max(model.min_frames, 5)
    x = torch.rand(2, 3, frames, H, W)
    classes = model.num_classes
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, classes) and torch.isfinite(logits).all()

    model.train()
    model.zero_grad()
    # a random projection of the logits (their logsumexp is constant for the ensembles,
    # whose outputs are log-probabilities)
    projection = torch.randn(2, classes, generator=torch.Generator().manual_seed(0))
    (model(x) * projection).sum().backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert no_grad == []
    model.eval()

    model.reset_classifier(7)
    assert model(x).shape == (2, 7)
    model.reset_classifier(classes)


@pytest.mark.parametrize("name", STREAMING)
def test_streaming_equals_whole_clip(name, models):
    model = models(name)
    torch.manual_seed(1)
    clip = torch.rand(2, 3, 10, H, W)
    with torch.no_grad():
        whole = model(clip)
        for chunks in ([1] * 10, [3, 3, 3, 1], [8, 2], [2, 5, 1, 2]):
            state = model.init_state(2, H, W)
            start = 0
            for size in chunks:
                logits, state = model.stream_step(clip[:, :, start:start + size], state)
                start += size
            assert (logits - whole).abs().max().item() < 1e-4, chunks

        # a batch of two different videos streamed together == each streamed alone
        alone = []
        for i in range(2):
            state = model.init_state(1, H, W)
            for t in range(10):
                out, state = model.stream_step(clip[i:i + 1, :, t:t + 1], state)
            alone.append(out)
        assert (torch.cat(alone) - whole).abs().max().item() < 1e-4


def test_stream_state_is_pure():
    model = randomize(vidnets.create_model("movinet_a0_stream"))
    state = model.init_state(1, H, W)
    before = {k: v.clone() for k, v in state.items()}
    frames = torch.rand(1, 3, 2, H, W)
    a, new_state = model.stream_step(frames, state)
    b, _ = model.stream_step(frames, state)
    assert torch.equal(a, b)  # same inputs, same outputs: nothing hidden
    assert all(torch.equal(before[k], state[k]) for k in state)  # input state untouched
    assert set(new_state) == set(state)


def test_streamer_wrapper_reset():
    model = randomize(vidnets.create_model("movinet_a0_stream"))
    clip = torch.rand(1, 3, 4, H, W)
    streamer = vidnets.Streamer(model)
    for t in range(4):
        first = streamer(clip[:, :, t:t + 1])
    streamer.reset()
    for t in range(4):
        second = streamer(clip[:, :, t:t + 1])
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, model(clip), atol=1e-5, rtol=1e-5)


def test_whole_model_3d_2plus1d_equals_2plus1d():
    spec = BLOCK_SPECS["a0"]
    train_opts = dataclasses.replace(STREAM, conv_type="3d_2plus1d")
    train_layout = randomize(MoViNet(spec, 600, train_opts))
    deploy_layout = MoViNet(spec, 600, STREAM).eval()
    deploy_layout.load_state_dict(train_layout.state_dict())
    clip = torch.rand(1, 3, 6, H, W)
    with torch.no_grad():
        torch.testing.assert_close(deploy_layout(clip), train_layout(clip), atol=1e-5, rtol=1e-4)


def test_base_models_do_not_stream():
    model = vidnets.create_model("movinet_a0_base")
    with pytest.raises(ValueError, match="movinet_a0_stream"):
        model.init_state(1, H, W)
    with pytest.raises(ValueError, match="cannot stream"):
        model.stream_step(torch.rand(1, 3, 1, H, W), {})
