import pytest
import torch

import vidnets


@pytest.fixture(scope="module")
def base():
    return vidnets.create_model("movinet_a0_base")


@pytest.fixture(scope="module")
def stream():
    return vidnets.create_model("movinet_a0_stream")


@pytest.mark.parametrize(
    ("clip", "message"),
    [
        (torch.rand(3, 8, 64, 64), r"\[B, 3, T, H, W\].*4-D tensor"),
        (torch.rand(1, 8, 3, 64, 64), r"3 RGB channels.*\(1, 8, 3, 64, 64\)"),
        (torch.rand(1, 8, 64, 64, 3), "channels-last"),
        (torch.randint(0, 255, (1, 3, 8, 64, 64), dtype=torch.uint8), "floating-point.*uint8"),
        (torch.rand(1, 3, 2, 64, 64), r"at least 5 frames.*\(1, 3, 2, 64, 64\)"),
        (torch.rand(1, 3, 8, 16, 64), r"height and width must be >= 32"),
    ],
)
def test_base_rejects_bad_clips(base, clip, message):
    with pytest.raises(ValueError, match=message):
        base(clip)


def test_stream_accepts_one_frame_but_checks_state(stream):
    state = stream.init_state(1, 64, 64)
    logits, _ = stream.stream_step(torch.rand(1, 3, 1, 64, 64), state)
    assert logits.shape == (1, 600)
    with pytest.raises(ValueError, match=r"init_state\(batch_size=1, height=96, width=64\)"):
        stream.stream_step(torch.rand(1, 3, 1, 96, 64), state)
    with pytest.raises(ValueError, match="batch_size=2"):
        stream.stream_step(torch.rand(2, 3, 1, 64, 64), state)
    with pytest.raises(ValueError, match="missing"):
        stream.stream_step(torch.rand(1, 3, 1, 64, 64), {})


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="did you mean movinet_a0_stream"):
        vidnets.create_model("movinet_a0_streem")
